"""Paper Figure 7 (appendix, "Top-1 PGT" against "Adaptive PGT"): one row per trainval image,
the top-1 PGT on the left, the adaptive PGT on the right, the hidden ground truth dashed for
reference.

Shorthand: ``image: (H, W, 3)`` uint8 RGB; boxes are COCO ``bbox`` xywh in pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from weaksam.utils.atomic import atomic_path  # noqa: E402


@dataclass(frozen=True)
class FigureRow:
    """One image: pixels, its top-1 and adaptive PGT annotations and its ground-truth ones
    (COCO annotation dicts: bbox xywh, category_id, score for PGT)."""

    image_id: int
    image: np.ndarray
    top1: Sequence[Mapping[str, Any]]
    adaptive: Sequence[Mapping[str, Any]]
    gt: Sequence[Mapping[str, Any]]


def pick_images(
    top1: Mapping[int, Sequence[Mapping[str, Any]]],
    adaptive: Mapping[int, Sequence[Mapping[str, Any]]],
    image_ids: Sequence[int],
    num: int,
) -> list[int]:
    """The first ``num`` ids of ``image_ids`` (split order) whose adaptive PGT differs from the
    top-1 PGT in its number of boxes, then, if fewer, the first remaining ids. A fixed rule, so
    the figure is not hand-picked."""
    differ = [i for i in image_ids if len(top1.get(i, ())) != len(adaptive.get(i, ()))]
    rest = [i for i in image_ids if i not in set(differ)]
    return (differ + rest)[: max(0, num)]


def _draw(ax, anns, names, colors, dashed=False, label=True):
    for a in anns:
        x, y, w, h = (float(v) for v in a["bbox"])
        cid = int(a["category_id"])
        color = "white" if dashed else colors[cid]
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color,
                               linewidth=1.0 if dashed else 1.8,
                               linestyle="--" if dashed else "-"))
        if label:
            text = names.get(cid, str(cid))
            if "score" in a:
                text += f" {float(a['score']):.2f}"
            ax.text(x, y, text, fontsize=6, color="black", va="bottom",
                    bbox={"facecolor": color, "alpha": 0.8, "pad": 0.5, "linewidth": 0})


def draw_pgt_figure(path: str | Path, rows: Sequence[FigureRow], names: Mapping[int, str]) -> None:
    """Write a PNG with one row per :class:`FigureRow`: top-1 PGT | adaptive PGT, PGT boxes in
    a colour per class with name and WSOD score, ground truth dashed white."""
    n = max(1, len(rows))
    cmap = plt.get_cmap("tab10")
    colors = {cid: cmap(k % 10) for k, cid in enumerate(sorted(names))}
    fig, axes = plt.subplots(n, 2, figsize=(6.4, 3.0 * n), squeeze=False)
    for r, row in enumerate(rows):
        for c, (title, anns) in enumerate((("Top-1 PGT", row.top1),
                                            ("Adaptive PGT", row.adaptive))):
            ax = axes[r][c]
            ax.imshow(row.image)
            _draw(ax, row.gt, names, colors, dashed=True, label=False)
            _draw(ax, anns, names, colors)
            ax.set_title(f"image {row.image_id}: {title} ({len(anns)} boxes)", fontsize=8)
            ax.axis("off")
    for ax in axes.ravel()[2 * len(rows):]:
        ax.axis("off")
    fig.suptitle("Top-1 vs adaptive PGT (dashed: hidden ground truth, not used by the PGT)",
                 fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
