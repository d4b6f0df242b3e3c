"""Paper Table 8 (appendix F.1; supplement Table 5): classification methods that generate the
WeakSAM prompts, compared by the average number of proposals and their recall on VOC 2007
trainval, with Selective Search as the baseline row.

This run: Selective Search (``metrics/recall_ss.json``, stage ``recall_ss``) and WeakSAM with
this workspace's WeakTr-style CAM clues (``metrics/recall_weaksam.json``, stage
``recall_prompts@weaksam``); MCTformer and CLIP-ES clues are not reproduced.
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, paper

COLUMNS = ("CLS method", "Num.", "Recall IoU=0.50", "Recall IoU=0.75", "Recall IoU=0.90")
RECALL_KEYS = ("recall@0.5", "recall@0.75", "recall@0.9")

# (row label, Num., recall at IoU 0.50, 0.75, 0.90) as printed in the paper.
PAPER_ROWS: tuple[tuple[str, int, float, float, float], ...] = (
    ("None (Selective Search)", 2001, 92.6, 57.7, 19.2),
    ("WeakTr", 213, 95.6, 75.0, 42.1),
    ("MCTformer", 173, 93.2, 74.8, 43.7),
    ("CLIP-ES", 205, 93.8, 75.6, 44.5),
)

# (row label, metrics file, DVC stage) of this run's rows.
RUN_ROWS: tuple[tuple[str, str, str], ...] = (
    ("None (Selective Search)", "recall_ss.json", "recall_ss"),
    ("WeakSAM (WeakTr-style clues)", "recall_weaksam.json", "recall_prompts@weaksam"),
)


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 8: the paper's rows, then this run's rows from ``metrics_dir``."""
    rows = [
        Row(label, [paper(num, "{:d}"), *(paper(v) for v in recalls)])
        for label, num, *recalls in PAPER_ROWS
    ]
    for label, file, stage in RUN_ROWS:
        cells = [metric(metrics_dir, file, "num_per_image", stage, "{:.1f}", evidence=evidence)]
        cells += [metric(metrics_dir, file, k, stage, evidence=evidence) for k in RECALL_KEYS]
        rows.append(Row(label, cells))
    table = Table(
        name="Table 8",
        caption=(
            "Classification methods that generate WeakSAM prompts (paper appendix F.1; "
            "supplement Table 5): average number of proposals per image (Num.) and proposal "
            "recall (%) at IoU 0.50 / 0.75 / 0.90. Paper: PASCAL VOC 2007 trainval; this run: "
            "the trainval split of the `data` stage. Selective Search is the baseline row."
        ),
        columns=COLUMNS,
        rows=rows,
        notes=(
            "Num. of this run's Selective Search row is what OpenCV's fast mode returns "
            "(capped by params `proposals_ss.max_per_image`); it grows with image size, so "
            "small images give far fewer boxes than the paper's 2001 on VOC.",
        ),
    )
    return table.to_markdown()
