"""Prompts of one image from its clues (paper Sec. 3.1, "Prompt Points Generation").

Sources (names of ``weaksam.proposals.sources.PROMPT_SOURCES``):
    dense       S x S grid of patch centres, class -1, score 1.0 (spatial-aware)
    cam_fine    Algorithm 1 peaks of each present class's fine CAM (semantic-aware)
    cam_coarse  Algorithm 1 peaks of each present class's coarse CAM (semantic-aware)
    cross       Algorithm 1 peaks of every (class, layer[, head]) cross-attention map of the
                image, pooled and de-duplicated by KMeans (instance-aware): ``cross_clusters``
                clusters, or max(1, P // ``cross_points_per_cluster``) as the release; each
                cluster gives its best member or (release) its centroid
Maps are upsampled from token resolution to the original image size and min-max normalised
per map before Algorithm 1. A peak at pixel (column c, row r) is reported at its centre
``(c + 0.5, r + 0.5)``; ``score`` is the normalised map value there.

Output: a dict of equal-length arrays ``x, y (P,) float32`` (pixels of the original image),
``source (P,) str``, ``class (P,) int64`` (category id; -1 for dense), ``score (P,) float32``.
"""

from __future__ import annotations

import numpy as np

from weaksam.clues.store import ImageClues
from weaksam.prompts.cluster import cluster_centroids, cluster_points, clusters_for
from weaksam.prompts.grid import grid_points
from weaksam.prompts.peaks import find_peaks, prepare_maps

COLUMNS = ("x", "y", "source", "class", "score")


def _rows(points: np.ndarray, source: str, classes: np.ndarray, scores: np.ndarray) -> dict:
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    return {
        "x": p[:, 0],
        "y": p[:, 1],
        "source": np.full(len(p), source, dtype=object),
        "class": np.asarray(classes, dtype=np.int64).reshape(-1),
        "score": np.asarray(scores, dtype=np.float32).reshape(-1),
    }


def map_peaks(
    maps: np.ndarray, width: int, height: int, kernel: int, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Algorithm 1 on token maps ``(K, n, m)`` after upsampling to ``height x width``:
    ``(points (P, 2) float32 pixel centres, map index (P,) int64, values (P,) float32)``."""
    if len(maps) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
    peaks = find_peaks(prepare_maps(maps, height, width), kernel, tau)
    pts = [p.astype(np.float32) + 0.5 for p, _ in peaks]
    idx = [np.full(len(p), k, dtype=np.int64) for k, (p, _) in enumerate(peaks)]
    vals = [v for _, v in peaks]
    return np.concatenate(pts), np.concatenate(idx), np.concatenate(vals)


def image_prompts(
    clues: ImageClues,
    *,
    grid: int,
    kernel: int,
    tau: float,
    cross_kernel: int,
    cross_tau: float,
    cross_clusters: int,
    seed: int = 0,
    cross_points_per_cluster: int = 0,
    cross_representative: str = "member",
) -> dict[str, dict[str, np.ndarray]]:
    """Prompts of every source for one image: ``{source: columns}`` (see the module doc).

    ``cross_points_per_cluster > 0`` sets the KMeans cluster count to max(1, P // it) (release:
    5) instead of ``cross_clusters``; ``cross_representative``: ``"member"`` (best peak of a
    cluster) or ``"centroid"`` (release)."""
    if cross_representative not in ("member", "centroid"):
        raise ValueError(f"cross_representative must be 'member' or 'centroid', got "
                         f"{cross_representative!r}")
    w, h = clues.width, clues.height
    out: dict[str, dict[str, np.ndarray]] = {}
    g = grid_points(w, h, grid)
    out["dense"] = _rows(g, "dense", np.full(len(g), -1), np.ones(len(g)))
    for name in ("cam_fine", "cam_coarse"):
        pts, idx, vals = map_peaks(getattr(clues, name), w, h, kernel, tau)
        out[name] = _rows(pts, name, clues.classes[idx], vals)
    k, ls = clues.cross.shape[:2]
    flat = clues.cross.reshape(k * ls, *clues.cross.shape[2:])
    pts, idx, vals = map_peaks(flat, w, h, cross_kernel, cross_tau)
    k_clusters = (clusters_for(len(pts), cross_points_per_cluster)
                  if cross_points_per_cluster > 0 else cross_clusters)
    cls = clues.classes[idx // max(ls, 1)] if len(idx) else np.zeros(0, np.int64)
    if cross_representative == "centroid":
        cents, best = cluster_centroids(pts, vals, k_clusters, seed=seed)
        out["cross"] = _rows(cents, "cross", cls[best], vals[best])
    else:
        keep = cluster_points(pts, vals, k_clusters, seed=seed)
        out["cross"] = _rows(pts[keep], "cross", cls[keep], vals[keep])
    return out
