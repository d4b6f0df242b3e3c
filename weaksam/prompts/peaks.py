"""Algorithm 1 of the paper (Peak Points Extraction), vectorised in torch.

Shorthand: M maps, H x W pixels of the original image, P points.
    maps:   (M, H, W) float, one class map each (CAM or cross-attention), min-max normalised
            to [0, 1] per map by :func:`prepare_maps` (upsampled from token resolution first)
    points: (P, 2) int64 (x, y) = (column, row) pixel indices, values (P,) float32

Semantics (paper Algorithm 1, lines 1-25), applied to each map on its own:
1. peaks ("P, V = Maxpool(M)"): pixels equal to the max over the k x k window centred on them
   (max_pool2d, stride 1, "same" padding with -inf; for even k the window spans
   ``(k-1)//2`` pixels before and ``k//2`` after). Plateaus give every plateau pixel.
2. sort by value, descending; ties keep raster order (row-major index y * W + x; stable sort).
3. walk the sorted list: a point already marked deleted is skipped (line 9); a point with
   ``v < tau`` is marked deleted (line 13: values equal to tau are kept); otherwise the point
   is kept and marks every LATER point within Euclidean distance ``||p_j - p_i|| <= k / 2``
   as deleted (lines 18-22). Deleted points therefore never suppress anything.
An all-zero (or constant) map normalises to zeros and gives no point when ``tau > 0``.

Note: two local maxima of different value are more than (k-1)/2 apart in each axis, so for
odd k the k/2 suppression only ever removes equal-valued peaks (plateaus, e.g. the flat
borders of bilinear upsampling); for even k also peaks exactly k/2 apart on one side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def prepare_maps(maps: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """Upsample ``(M, n, m)`` token maps to ``(M, height, width)`` (bilinear,
    align_corners=False) and min-max normalise each map to [0, 1]; constant maps become 0."""
    x = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    x = x.float()
    if x.ndim != 3:
        raise ValueError(f"maps must be (M, n, m), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        return torch.zeros((0, height, width))
    if tuple(x.shape[1:]) != (height, width):
        x = F.interpolate(x[:, None], size=(height, width), mode="bilinear", align_corners=False)
        x = x[:, 0]
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    rng = hi - lo
    return torch.where(rng > 0, (x - lo) / rng.clamp_min(1e-12), torch.zeros_like(x))


def local_maxima(maps: torch.Tensor, kernel: int) -> torch.Tensor:
    """(M, H, W) -> (M, H, W) bool: pixels equal to the max of their k x k window.

    The k x k max is computed separably (1 x k, then k x 1: the same maximum, O(k) per pixel
    instead of O(k^2))."""
    if kernel < 1:
        raise ValueError(f"kernel must be >= 1, got {kernel}")
    before, after = (kernel - 1) // 2, kernel // 2
    padded = F.pad(maps[:, None], (before, after, before, after), value=float("-inf"))
    pooled = F.max_pool2d(padded, kernel_size=(1, kernel), stride=1)
    pooled = F.max_pool2d(pooled, kernel_size=(kernel, 1), stride=1)[:, 0]
    return maps == pooled


def suppress(points: torch.Tensor | np.ndarray, radius: float) -> np.ndarray:
    """Greedy suppression of Algorithm 1 lines 7-23 on points already sorted by value
    (descending) and above tau: ``points (P, 2)`` -> keep mask ``(P,)`` bool. A kept point
    deletes every later point within ``radius`` (inclusive; squared distances are compared,
    exact for integer pixel coordinates); deleted points do not suppress.

    Equivalently, a point is kept iff no earlier KEPT point lies within ``radius``: the kept
    points are bucketed in square cells of side ``radius + 1``, so every kept point within
    ``radius`` of a point lies in the 3 x 3 cells around it. Time and memory O(P) (a P x P
    distance matrix needed 444 GiB for the 172,647 plateau peaks of one full-resolution map
    in the paper_voc07 dry run)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = len(pts)
    keep = np.ones(p, dtype=bool)
    if p < 2:
        return keep
    r2 = radius * radius
    # side > radius: |dx| <= radius spans at most one cell boundary, float rounding included
    side = max(float(radius), 0.0) + 1.0
    cells = np.floor(pts / side).astype(np.int64).tolist()
    xs, ys = pts[:, 0].tolist(), pts[:, 1].tolist()
    kept: dict[tuple[int, int], list[int]] = {}
    for j in range(p):
        x, y = xs[j], ys[j]
        gx, gy = cells[j]
        if any((x - xs[i]) ** 2 + (y - ys[i]) ** 2 <= r2
               for ox in (-1, 0, 1) for oy in (-1, 0, 1)
               for i in kept.get((gx + ox, gy + oy), ())):
            keep[j] = False
        else:
            kept.setdefault((gx, gy), []).append(j)
    return keep


def find_peaks(
    maps: torch.Tensor, kernel: int, tau: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Algorithm 1 on each of ``maps (M, H, W)`` (already prepared) -> per map
    ``(points (P, 2) int64 (x, y), values (P,) float32)`` sorted by value, descending."""
    maps = torch.as_tensor(maps).float()
    if maps.ndim != 3:
        raise ValueError(f"maps must be (M, H, W), got {tuple(maps.shape)}")
    w = maps.shape[2]
    peak = local_maxima(maps, kernel) & (maps >= tau)  # line 13: v < tau -> deleted
    out = []
    for mi in range(maps.shape[0]):
        flat = torch.nonzero(peak[mi].flatten(), as_tuple=True)[0]  # raster order
        vals = maps[mi].flatten()[flat]
        order = torch.sort(vals, descending=True, stable=True).indices
        flat, vals = flat[order], vals[order]
        pts = torch.stack([flat % w, flat // w], dim=1).numpy().astype(np.int64)
        keep = suppress(pts, kernel / 2.0)
        out.append((pts[keep], vals.numpy()[keep].astype(np.float32)))
    return out
