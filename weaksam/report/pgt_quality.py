"""PGT quality (this workspace's own table; the paper prints no PGT quality numbers, only the
retraining AP of Table 5 and the qualitative Figure 7): top-1 against adaptive PGT (Algorithm 2)
of each WSOD run, measured against the hidden trainval ground truth.

This run: ``metrics/pgt_{run}_{mode}.json`` (stage ``pgt@{run}-{mode}``, ``weaksam.pgt.metrics``):
boxes per image, precision and recall (%) at IoU ``pgt.match_iou`` (one-to-one greedy matching by
score per class, VOC style; difficult ground truth ignored), and the labelled (image, class)
pairs left without any PGT box (count and %).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric

COLUMNS = ("PGT [WSOD run]", "Boxes / image", "Precision", "Recall",
           "Labelled classes without a box", "Without a box (%)")
RUNS: tuple[tuple[str, str], ...] = (("WeakSAM (OICR)", "oicr_weaksam"),
                                     ("WeakSAM (MIST)", "mist_weaksam"))
MODES: tuple[tuple[str, str], ...] = (("Top-1", "top1"), ("Adaptive", "adaptive"))


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of the PGT quality table from ``metrics_dir``."""
    rows = []
    for run_label, run in RUNS:
        for mode_label, mode in MODES:
            file, stage = f"pgt_{run}_{mode}.json", f"pgt@{run}-{mode}"
            rows.append(Row(f"{mode_label} [{run_label}]", [
                metric(metrics_dir, file, "boxes_per_image", stage, "{:.2f}"),
                metric(metrics_dir, file, "precision", stage),
                metric(metrics_dir, file, "recall", stage, evidence=evidence),
                metric(metrics_dir, file, "labelled_classes_without_box", stage, "{:.0f}"),
                metric(metrics_dir, file, "labelled_classes_without_box_pct", stage),
            ]))
    return Table(
        name="PGT quality",
        caption=("Pseudo ground truth of this run's WSOD detectors on the trainval split (paper "
                 "Sec. 3.2: top-1 PGT vs adaptive PGT, Algorithm 2 with tau_s and tau_o of "
                 "params `pgt`), against the hidden ground truth (analysis only): boxes per "
                 "image, box precision and recall (%) at IoU `pgt.match_iou`, and labelled "
                 "(image, class) pairs without any PGT box."),
        columns=COLUMNS,
        rows=rows,
        notes=("The paper prints no PGT quality figures (Figure 7 shows examples); every row "
               "is this run's.",),
    ).to_markdown()
