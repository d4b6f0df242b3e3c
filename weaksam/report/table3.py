"""Paper Table 3: WSIS on COCO 2017, COCO mask AP (AP50:95, AP50, AP75) on val2017 and
test-dev (pycocotools ``iouType="segm"``, ``weaksam.eval.mask_ap.coco_mask_ap``).

This run: key ``coco`` of ``metrics/wsis_{model}.json`` (stage ``wsis``), COCO-style mask AP
on the test split of the `data` stage, in the "val" columns; there is no test-dev server here.
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, not_run, paper
from weaksam.report.table2 import BACKBONE, RUN_ROWS, stage_of

COLUMNS = ("Method [backbone, supervision, retrain]", "val AP50:95", "val AP50", "val AP75",
           "test-dev AP50:95", "test-dev AP50", "test-dev AP75")

# (method, backbone, supervision, retrain, val AP, AP50, AP75, test-dev AP, AP50, AP75)
PAPER_ROWS: tuple[tuple[str, ...], ...] = (
    ("Mask R-CNN (He et al., 2017)", "ResNet-50", "M", "-",
     "34.4", "55.1", "36.7", "33.6", "55.2", "35.3"),
    ("WS-JDS (Shen et al., 2019)", "VGG-16", "I", "-", "6.1", "11.7", "5.5", "-", "-", "-"),
    ("PDSL (Shen et al., 2021)", "ResNet18-WS", "I", "-", "6.3", "13.1", "5.0", "-", "-", "-"),
    ("Fan et al. (2018a)", "ResNet-101", "I + S", "Mask R-CNN",
     "-", "-", "-", "13.7", "25.5", "13.5"),
    ("LIID (Liu et al., 2020)", "ResNet-50", "I + S", "Mask R-CNN",
     "-", "-", "-", "16.0", "27.1", "16.5"),
    ("BESTIE (Kim et al., 2022)", "HRNet-W48", "I", "Mask R-CNN",
     "14.3", "28.0", "13.2", "14.4", "28.0", "13.5"),
    ("CIM (Li et al., 2023)", "ResNet-50", "I", "Mask R-CNN",
     "17.0", "29.4", "17.0", "17.2", "29.7", "17.3"),
    ("WeakSAM", "ResNet-50", "I + A", "Mask R-CNN", "20.6", "33.9", "22.0", "21.0", "34.5", "22.2"),
    ("WeakSAM", "ResNet-50", "I + A", "Mask2Former",
     "25.2", "38.4", "27.0", "25.9", "39.9", "27.9"),
)


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 3: the paper's rows, then this run's from ``metrics_dir``."""
    rows = []
    for method, backbone, sup, retrain, *aps in PAPER_ROWS:
        rows.append(Row(f"{method} [{backbone}, {sup}, {retrain}]", [paper(a) for a in aps]))
    for label, sup, retrain, model in RUN_ROWS:
        file, stage = f"wsis_{model}.json", stage_of(model)
        rows.append(Row(f"{label} [{BACKBONE}, {sup}, {retrain}], this run", [
            *(metric(metrics_dir, file, f"coco.{k}", stage, evidence=evidence)
              for k in ("AP", "AP50", "AP75")),
            not_run(), not_run(), not_run()]))
    return Table(
        name="Table 3",
        caption=("WSIS on COCO 2017 (paper Table 3): COCO mask AP (%) through pycocotools "
                 "(iouType segm). Paper: COCO 2017 train -> val2017 and test-dev, ResNet-50. "
                 "This run: COCO-style mask AP on the test split of the `data` stage (in the "
                 "val columns), same models as Table 2."),
        columns=COLUMNS,
        rows=rows,
        notes=("COCO 2017 is not part of the default profile (`configs/paper_coco17.yaml`); "
               "test-dev needs the COCO evaluation server. Supervision: M masks, I image-level "
               "labels, S saliency maps, A SAM; '-' in a paper cell: not reported.",),
    ).to_markdown()
