"""Paper Table 2: WSIS on PASCAL VOC 2012 val, mask AP at IoU 0.25 / 0.5 / 0.7 / 0.75 (VOC
protocol of the WSIS papers, ``weaksam.eval.mask_ap.evaluate_voc_masks``).

This run: ``metrics/wsis_{model}.json`` on the test split of the `data` stage: Mask R-CNN and
Mask2Former trained on the pseudo masks (stage ``pseudo_masks``; ``wsis`` matrix stage), and
the upper reference, the same Mask R-CNN trained on the ground-truth masks (stage ``wsis_gt``;
the paper's upper row is a fully supervised Mask R-CNN R101).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, paper

COLUMNS = ("Method [backbone, supervision, retrain]", "AP25", "AP50", "AP70", "AP75")
KEYS = ("ap25", "ap50", "ap70", "ap75")

# (method, backbone, supervision, retrain, AP25, AP50, AP70, AP75) as printed ("-": not
# reported). Sup.: M masks, I image-level labels, S saliency, A SAM.
PAPER_ROWS: tuple[tuple[str, str, str, str, str, str, str, str], ...] = (
    ("Mask R-CNN (He et al., 2017)", "ResNet-101", "M", "-", "76.7", "67.9", "52.5", "44.9"),
    ("WISE (Laradji et al., 2019)", "ResNet-50", "I", "Mask R-CNN", "49.2", "41.7", "-", "23.7"),
    ("IRNet (Ahn et al., 2019)", "ResNet-50", "I", "Mask R-CNN", "-", "46.7", "23.5", "-"),
    ("LIID (Liu et al., 2020)", "ResNet-50", "I + S", "Mask R-CNN", "-", "48.4", "-", "24.9"),
    ("Arun et al. (2020)", "ResNet-50", "I", "Mask R-CNN", "59.7", "50.9", "30.2", "28.5"),
    ("WS-RCNN (Ou et al., 2021)", "VGG-16", "I", "Mask R-CNN", "62.2", "47.3", "-", "19.8"),
    ("BESTIE (Kim et al., 2022)", "HRNet-W48", "I", "Mask R-CNN", "61.2", "51.0", "31.9", "26.6"),
    ("CIM (Li et al., 2023)", "ResNet-50", "I", "Mask R-CNN", "68.7", "55.9", "37.1", "30.9"),
    ("WeakSAM", "ResNet-50", "I + A", "Mask R-CNN", "70.3", "59.6", "43.1", "36.2"),
    ("WeakSAM", "ResNet-50", "I + A", "Mask2Former", "73.4", "64.4", "49.7", "45.3"),
)

# (label, supervision, retrain, model) of this run's rows.
RUN_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Mask R-CNN on ground-truth masks (upper reference)", "M", "-", "mask_rcnn_gt"),
    ("WeakSAM", "I + A", "Mask R-CNN", "mask_rcnn"),
    ("WeakSAM", "I + A", "Mask2Former", "mask2former"),
)

BACKBONE = "small CNN (backbone_pretrain, frozen)"


def stage_of(model: str) -> str:
    """The DVC stage that writes ``metrics/wsis_{model}.json``."""
    return "wsis_gt" if model == "mask_rcnn_gt" else f"wsis@{model}"


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 2: the paper's rows, then this run's from ``metrics_dir``."""
    rows = []
    for method, backbone, sup, retrain, *aps in PAPER_ROWS:
        rows.append(Row(f"{method} [{backbone}, {sup}, {retrain}]", [paper(a) for a in aps]))
    for label, sup, retrain, model in RUN_ROWS:
        file, stage = f"wsis_{model}.json", stage_of(model)
        rows.append(Row(f"{label} [{BACKBONE}, {sup}, {retrain}], this run",
                        [metric(metrics_dir, file, k, stage, evidence=evidence)
                         for k in KEYS]))
    return Table(
        name="Table 2",
        caption=("WSIS on PASCAL VOC 2012 val (paper Table 2): mask AP (%) at IoU 0.25, 0.5, "
                 "0.7 and 0.75, VOC protocol (area AP per class, every instance counted, as "
                 "BESTIE and CIM evaluate with chainercv). Paper: VOC 2012 trainaug -> val, "
                 "ResNet-50. This run: the `data` stage's trainval -> test split; pseudo masks "
                 "of stage `pseudo_masks` (SAM prompted by the MIST adaptive PGT)."),
        columns=COLUMNS,
        rows=rows,
        notes=(
            "Supervision: M masks, I image-level labels, S saliency maps, A SAM; '-' in a "
            "paper cell: not reported.",
            "Pseudo-mask quality against the hidden trainval masks: table "
            "`wsis_pseudo_masks.md`.",
        ),
    ).to_markdown()
