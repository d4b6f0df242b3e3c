"""Figures 3 and 5 of the paper: per-RoI losses in the preliminary training, the number of RoIs
per (normalised) loss bin and the error rate per bin.

Shorthand: R recorded foreground RoIs (sampled RoIs matched to a PGT box; only they have a
"corresponding PGT" and a regression loss), S training steps. A RoI is an *error* when its
PGT box has IoU < ``error_iou`` (paper: 0.7) with every ground-truth box of the same class of
its image (the hidden ground truth, read for this analysis only, never in training).
Normalisation (the figures' x axis): each loss divided by (max - min) of that loss over the
RoIs of its training step (classification: all sampled RoIs; regression: the foreground ones),
the authors' "normalised" variant; values above 1 fall into the last bin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from weaksam.utils.boxes import box_iou


def normalise_per_step(values: np.ndarray, step: np.ndarray, member: np.ndarray) -> np.ndarray:
    """values (N,) / (max - min + 1e-8) over the ``member`` (N,) bool entries of each step
    (N,) -> (N,) float64 (non-members keep their raw values)."""
    v = np.asarray(values, np.float64)
    out = v.copy()
    for s in np.unique(step):
        m = (step == s) & member
        if m.any():
            out[m] = v[m] / (v[m].max() - v[m].min() + 1e-8)
    return out


def roi_errors(image_id: np.ndarray, gt_index: np.ndarray,
               pgt_boxes: Mapping[int, np.ndarray], pgt_labels: Mapping[int, np.ndarray],
               gt: Mapping[int, tuple[np.ndarray, np.ndarray]], error_iou: float = 0.7
               ) -> np.ndarray:
    """(R,) bool: the PGT box ``pgt_boxes[image_id][gt_index]`` (class ``pgt_labels[...]``) has
    IoU < ``error_iou`` with every ground-truth box of its class. ``gt[image_id]`` = (boxes
    (N, 4) xyxy px, labels (N,)) in the PGT's label space."""
    err = np.zeros(len(image_id), bool)
    best: dict[int, np.ndarray] = {}
    for iid in np.unique(image_id):
        pb, pl = pgt_boxes[int(iid)], pgt_labels[int(iid)]
        gb, gl = gt.get(int(iid), (np.zeros((0, 4)), np.zeros(0, np.int64)))
        iou = box_iou(pb, gb)
        iou = np.where(pl[:, None] == np.asarray(gl)[None, :], iou, 0.0)
        best[int(iid)] = iou.max(1) if iou.shape[1] else np.zeros(len(pb))
    for k, (iid, j) in enumerate(zip(image_id.tolist(), gt_index.tolist(), strict=True)):
        err[k] = best[int(iid)][int(j)] < error_iou
    return err


def bin_stats(values: np.ndarray, errors: np.ndarray, bins: int) -> dict[str, list[float]]:
    """Bins of width 1 / ``bins`` over [0, 1] (values above 1 in the last): ``edges``
    (bins + 1,), ``count`` (bins,), ``error_rate`` (bins,) in % (None where a bin is empty)."""
    idx = np.clip((np.asarray(values) * bins).astype(int), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    errs = np.bincount(idx, weights=np.asarray(errors, np.float64), minlength=bins)
    rate = [float(100 * e / c) if c else None for e, c in zip(errs, count, strict=True)]
    return {"edges": np.linspace(0, 1, bins + 1).round(4).tolist(),
            "count": count.astype(int).tolist(), "error_rate": rate}


def plot_loss_bins(stats: dict[str, list[float]], path: str | Path, *, xlabel: str,
                   title: str) -> None:
    """Bars: RoIs per loss bin (left axis, log scale); line: error rate per bin (right axis, %).
    Written to ``path`` (PNG); the caller makes it atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(stats["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(6.0, 3.9), dpi=120)
    ax.bar(centres, np.maximum(stats["count"], 0), width=np.diff(edges) * 0.9,
           color="#7aa6d6", label="RoIs")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of RoIs")
    ax2 = ax.twinx()
    rate = np.array([np.nan if r is None else r for r in stats["error_rate"]], float)
    ax2.plot(centres, rate, "o-", color="#c0392b", label="error rate")
    ax2.set_ylabel("error rate (%)")
    ax2.set_ylim(0, 100)
    ax.set_title(title, fontsize=8)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              fontsize=8, frameon=False)
    fig.tight_layout()
    # fixed metadata: same data => same PNG bytes
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
