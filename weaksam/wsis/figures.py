"""Figures of the WSIS part: instance masks drawn over images (paper Fig. 9, predicted
instances on test images; paper Fig. 7, right half: pseudo instance labels, here beside the
ground truth they are scored against).

Each panel is an image with its instances as translucent coloured masks, their boxes and
"class score" labels. Colours are fixed per category, so panels of one image compare at a
glance and same inputs give the same PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from weaksam.eval.mask_ap import decode_segmentation  # noqa: E402
from weaksam.utils.atomic import atomic_path  # noqa: E402

_COLORS = plt.get_cmap("tab10").colors


def _color(ann: Mapping[str, Any]) -> tuple[float, float, float]:
    return _COLORS[int(ann["category_id"]) % len(_COLORS)]


def overlay(image: np.ndarray, anns: Sequence[Mapping[str, Any]], alpha: float = 0.5
            ) -> np.ndarray:
    """``image (H, W, 3)`` uint8 with every annotation's mask blended in its colour -> a copy
    ``(H, W, 3)`` uint8."""
    h, w = image.shape[:2]
    out = image.astype(np.float32).copy()
    for a in anns:
        m = decode_segmentation(a["segmentation"], h, w)
        col = np.array(_color(a), np.float32) * 255
        out[m] = (1 - alpha) * out[m] + alpha * col
    return out.clip(0, 255).astype(np.uint8)


def _panel(ax, image: np.ndarray, anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
           title: str) -> None:
    ax.imshow(overlay(image, anns))
    for a in anns:
        x, y, bw, bh = a["bbox"]
        col = _color(a)
        ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, ec=col, lw=1))
        label = names.get(int(a["category_id"]), "?")
        if "score" in a:
            label += f" {float(a['score']):.2f}"
        ax.text(x, y, label, fontsize=6, color="w", va="bottom",
                bbox={"fc": col, "ec": "none", "pad": 0.5})
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def draw_instance_grid(
    path: str | Path,
    rows: Sequence[tuple[np.ndarray, Sequence[tuple[str, Sequence[Mapping[str, Any]]]]]],
    names: Mapping[int, str],
) -> None:
    """Write a PNG with one row per ``(image (H, W, 3) uint8, [(panel title, annotations)])``:
    one panel per annotation list (e.g. ground truth | pseudo masks, or ground truth | Mask
    R-CNN | Mask2Former). Annotations: COCO dicts with ``segmentation`` RLE, ``bbox`` xywh,
    ``category_id`` and optional ``score``."""
    n = max(1, len(rows))
    cols = max([len(p) for _, p in rows] or [1])
    fig, axes = plt.subplots(n, cols, figsize=(2.6 * cols, 2.6 * n), squeeze=False)
    for r, (img, panels) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c < len(panels):
                _panel(ax, img, panels[c][1], names, panels[c][0])
            else:
                ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png", metadata={"Software": None})
    plt.close(fig)
