"""Pseudo-mask quality (this workspace's own table; the paper shows pseudo instance labels only
qualitatively, Fig. 7): SAM masks of the adaptive PGT boxes against the hidden trainval masks.

This run: ``metrics/pseudo_masks.json`` (stage ``pseudo_masks``, ``weaksam.wsis.quality``):
mean mask IoU of one-to-one matched instances, the share of them with IoU >= 0.5, mask
precision / recall at 0.5, and the mean IoU when the prompt box itself is right (box IoU >= 0.5
with the instance's box: SAM's own share of the error); per class, plus the counts of boxes
clipped or skipped and masks dropped as empty.
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, read_metrics

FILE, STAGE = "pseudo_masks.json", "pseudo_masks"
COLUMNS = ("Class", "Pseudo masks", "GT instances", "Mean IoU (matched)", "IoU >= 0.5 (%)",
           "Precision@0.5", "Recall@0.5", "Mean IoU, prompt box right")
KEYS = (("num_pseudo", "{:.0f}"), ("num_gt", "{:.0f}"), ("mean_iou", "{:.3f}"),
        ("share_iou50", "{:.1f}"), ("precision50", "{:.1f}"), ("recall50", "{:.1f}"),
        ("mean_iou_given_box50", "{:.3f}"))


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of the pseudo-mask quality table from ``metrics_dir``."""
    rows = [Row("all", [metric(metrics_dir, FILE, k, STAGE, fmt) for k, fmt in KEYS])]
    data = read_metrics(Path(metrics_dir) / FILE) or {}
    for name in sorted(data.get("per_class", {})):
        rows.append(Row(name, [metric(metrics_dir, FILE, f"per_class.{name}.{k}", STAGE, fmt)
                               for k, fmt in KEYS]))
    counts = Table(
        name="Pseudo-mask counts",
        caption="PGT boxes and SAM masks of stage `pseudo_masks` (degenerate input is counted).",
        columns=("Quantity", "Count"),
        rows=[Row(label, [metric(metrics_dir, FILE, k, STAGE, "{:.0f}")]) for label, k in (
            ("PGT boxes", "boxes_in"), ("boxes clipped to the image", "boxes_clipped"),
            ("boxes skipped (zero area or non-finite)", "boxes_skipped"),
            ("empty masks dropped", "masks_empty"), ("pseudo masks written", "masks_out"),
            ("images without a pseudo mask", "images_without_mask"))],
    )
    quality = Table(
        name="Pseudo-mask quality",
        caption=("Pseudo instance masks (paper Sec. 3.3: SAM prompted by the adaptive PGT "
                 "boxes) against the hidden trainval masks, analysis only. IoU as a fraction; "
                 "matching one to one per image and class by descending mask IoU."),
        columns=COLUMNS,
        rows=rows,
        notes=("The paper prints no pseudo-mask quality figures (Fig. 7 shows examples); "
               "every row is this run's.",),
    )
    return quality.to_markdown() + "\n" + counts.to_markdown()
