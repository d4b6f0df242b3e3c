"""Paper Figures 4, 6 and 8 from this run's outputs (PNG, written by the ``figures`` stage).

- Figure 4 (appendix C): cosine similarity among the RoI-pooled features of proposals of ONE
  image, Selective Search (left) against WeakSAM (right); the paper samples 200 proposals of
  each and pools VGG16 conv5 features; here the WSOD run's backbone and RoI op.
  :func:`roi_features` -> ``(R, D)``, :func:`cosine_matrix` -> ``(R, R)`` in [-1, 1].
- Figure 6 (appendix G): the proposals of a few images, Selective Search against WeakSAM.
- Figure 8 (appendix G): detections of WeakSAM (MIST) on test images, above a score.

Shorthand: R proposals, D = C_f * s * s pooled feature length (C_f backbone channels, s the
RoI grid). Images are ``(H, W, 3)`` uint8 RGB, boxes ``(R, 4)`` xyxy in pixels.
Rendering is deterministic (Agg backend, no metadata): same inputs, same PNG bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.ops import roi_align, roi_pool  # noqa: E402

from weaksam.utils.atomic import atomic_path  # noqa: E402
from weaksam.vision.imaging import rescale, scale_factor, to_tensor, transform_boxes  # noqa: E402

PNG_METADATA = {"Software": None}


@torch.no_grad()
def roi_features(backbone: nn.Module, pixels: np.ndarray, boxes: np.ndarray, *,
                 short_side: int, max_size: int, roi_op: str = "roi_align",
                 roi_size: int = 7, roi_sampling: int = 2) -> np.ndarray:
    """Flattened RoI-pooled backbone features ``(R, D)`` float32 of ``boxes`` on ``pixels``
    (the image rescaled as in WSOD testing: short side ``short_side``, long side <=
    ``max_size``). ``backbone``: ``forward_features`` and ``stride`` (weaksam.vision.backbones);
    ``roi_op``: ``roi_align`` (aligned, ``roi_sampling`` points per bin) or ``roi_pool``."""
    backbone.eval()
    if len(boxes) == 0:
        return np.zeros((0, 0), np.float32)
    h, w = pixels.shape[:2]
    f = scale_factor(h, w, short_side, max_size)
    x = rescale(to_tensor(pixels), f)
    fmap = backbone.forward_features(x[None])
    b = transform_boxes(torch.as_tensor(np.asarray(boxes, np.float32)), f, False, x.shape[2])
    scale = 1.0 / float(backbone.stride)
    if roi_op == "roi_align":
        pooled = roi_align(fmap, [b], roi_size, spatial_scale=scale, sampling_ratio=roi_sampling,
                           aligned=True)
    elif roi_op == "roi_pool":
        pooled = roi_pool(fmap, [b], roi_size, spatial_scale=scale)
    else:
        raise ValueError(f"roi_op must be roi_align or roi_pool, got {roi_op!r}")
    return pooled.flatten(1).numpy().astype(np.float32)


def cosine_matrix(features: np.ndarray) -> np.ndarray:
    """``(R, D)`` -> ``(R, R)`` cosine similarities (a zero vector has similarity 0)."""
    f = np.asarray(features, np.float64)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)
    return np.clip(f @ f.T, -1.0, 1.0)


def mean_off_diagonal(sim: np.ndarray) -> float | None:
    """Mean of the off-diagonal entries of a square matrix (None below 2 x 2)."""
    n = len(sim)
    if n < 2:
        return None
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


def sample(n: int, k: int, seed: int) -> np.ndarray:
    """``min(n, k)`` distinct indices of ``range(n)``, drawn with ``seed``, in ascending order
    (the paper "randomly sampled 200 proposal features")."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, k), replace=False)) if n else np.zeros(0, int)


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def plot_similarity(sims: Mapping[str, np.ndarray], path: str | Path, title: str) -> None:
    """Figure 4: one heat map per proposal set (``name -> (R, R)``), side by side, with the
    mean off-diagonal similarity in each panel's title."""
    fig, axes = plt.subplots(1, len(sims), figsize=(4.2 * len(sims), 4.0), squeeze=False)
    im = None
    for ax, (name, sim) in zip(axes[0], sims.items(), strict=True):
        im = ax.imshow(sim, vmin=-1.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        m = mean_off_diagonal(sim)
        ax.set_title(f"{name}: {len(sim)} proposals\nmean cosine "
                     f"{'n/a' if m is None else f'{m:.3f}'}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def _draw_boxes(ax: plt.Axes, boxes: np.ndarray, colour: str, width: float, alpha: float,
                labels: Sequence[str] | None = None) -> None:
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, float)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=width, alpha=alpha))
        if labels is not None:
            ax.text(x1, y1, labels[i], fontsize=6, color="white", va="bottom",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "linewidth": 0})


def plot_proposals(images: Sequence[tuple[str, np.ndarray, Mapping[str, np.ndarray]]],
                   path: str | Path, title: str) -> None:
    """Figure 6: rows = images (``(caption, pixels, {set name: boxes})``), columns = proposal
    sets, every box drawn (thin, translucent: redundancy shows as clutter)."""
    names = list(images[0][2]) if images else []
    fig, axes = plt.subplots(max(1, len(images)), max(1, len(names)),
                             figsize=(3.2 * max(1, len(names)), 3.0 * max(1, len(images))),
                             squeeze=False)
    colours = ("tab:orange", "tab:cyan", "tab:green", "tab:red")
    for r, (caption, pixels, sets) in enumerate(images):
        for c, name in enumerate(names):
            ax = axes[r][c]
            ax.imshow(pixels)
            _draw_boxes(ax, sets[name], colours[c % len(colours)], 0.6, 0.6)
            ax.set_title(f"{caption}: {name}, {len(sets[name])} boxes", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_detections(images: Sequence[tuple[str, np.ndarray, np.ndarray, Sequence[str]]],
                    path: str | Path, title: str, columns: int = 3) -> None:
    """Figure 8: detections per image (``(caption, pixels, boxes (M, 4), labels)``)."""
    n = max(1, len(images))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (caption, pixels, boxes, labels) in enumerate(images):
        ax = axes[i // cols][i % cols]
        ax.imshow(pixels)
        _draw_boxes(ax, boxes, "tab:red", 1.2, 0.9, labels)
        ax.set_title(f"{caption}: {len(boxes)} detections", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
