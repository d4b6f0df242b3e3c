"""Paper Table 4 (Sec. 4.3): ablation of the WeakSAM prompt sources on VOC 2007 trainval:
average proposals per image (Num.), recall (%) at IoU 0.50 / 0.75 / 0.90, and MIST AP50 (%)
on test when trained on those proposals.

This run: Selective Search and the four cumulative prompt-source variants of ONE WeakSAM run
(``weaksam.proposals.sources.TABLE4_VARIANTS``): recall from ``metrics/recall_{variant}.json``
(stages ``recall_ss`` and ``recall_prompts@{variant}``), AP50 from
``metrics/wsod_mist_{variant}.json`` key ``ap50`` (stage ``wsod@mist-{ss,weaksam}`` or
``wsod_table4@mist-{variant}``).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, paper

COLUMNS = ("Proposals (prompts)", "Num.", "Recall IoU=0.50", "Recall IoU=0.75",
           "Recall IoU=0.90", "AP50 (MIST)")
RECALL_KEYS = ("recall@0.5", "recall@0.75", "recall@0.9")

# (label, Num., recall 0.50, 0.75, 0.90, AP50) as printed in the paper.
PAPER_ROWS: tuple[tuple[str, int, float, float, float, float], ...] = (
    ("SS", 2001, 92.6, 57.7, 19.2, 54.9),
    ("Dense", 129, 79.6, 50.7, 24.3, 45.2),
    ("+CAM_fine", 151, 88.9, 67.0, 37.2, 63.3),
    ("+CAM_coarse", 174, 90.6, 70.1, 40.1, 65.5),
    ("+Cross", 213, 95.6, 75.0, 42.1, 67.4),
)

# (label, source name in the metrics files, recall stage, WSOD stage) of this run's rows.
RUN_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("SS", "ss", "recall_ss", "wsod@mist-ss"),
    ("Dense", "dense", "recall_prompts@dense", "wsod_table4@mist-dense"),
    ("+CAM_fine", "dense_fine", "recall_prompts@dense_fine", "wsod_table4@mist-dense_fine"),
    ("+CAM_coarse", "dense_fine_coarse", "recall_prompts@dense_fine_coarse",
     "wsod_table4@mist-dense_fine_coarse"),
    ("+Cross", "weaksam", "recall_prompts@weaksam", "wsod@mist-weaksam"),
)


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 4: the paper's rows, then this run's rows from ``metrics_dir``."""
    rows = [
        Row(f"{label} (paper)", [paper(num, "{:d}"), *(paper(v) for v in vals)])
        for label, num, *vals in PAPER_ROWS
    ]
    for label, name, rstage, wstage in RUN_ROWS:
        rfile = f"recall_{name}.json"
        cells = [metric(metrics_dir, rfile, "num_per_image", rstage, "{:.1f}",
                        evidence=evidence)]
        cells += [metric(metrics_dir, rfile, k, rstage, evidence=evidence) for k in RECALL_KEYS]
        cells.append(metric(metrics_dir, f"wsod_mist_{name}.json", "ap50", wstage,
                            evidence=evidence))
        rows.append(Row(f"{label} (this run)", cells))
    return Table(
        name="Table 4",
        caption=(
            "Ablation of WeakSAM prompts (paper Sec. 4.3): average proposals per image (Num.), "
            "proposal recall (%) on trainval at IoU 0.50 / 0.75 / 0.90, and MIST AP50 (%) on "
            "test. Rows add prompt sources cumulatively: dense grid, fine CAM peaks, coarse "
            "CAM peaks, cross-attention peaks. Paper: PASCAL VOC 2007, SAM ViT-H; this run: the "
            "`data` stage's synthetic split, the `sam.model` SAM."
        ),
        columns=COLUMNS,
        rows=rows,
        notes=(
            "This run's prompt-source rows are source filters of one `proposals` run (a box "
            "found from two sources is kept once per source), as the paper's rows are.",
            "Selective Search's Num. grows with image size: small synthetic images give far "
            "fewer boxes than the paper's 2001 on VOC.",
        ),
    ).to_markdown()
