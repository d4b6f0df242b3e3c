"""Multi-scale + flip inference of the CAM network (WeakTr's map generation; paper Sec. 3.1).

Shorthand: B images, C classes, Ls cross-attention layers, (n, m) the token grid at scale 1.0.
For each scale s the network input is the base square image resized to
``round(input_size * s / patch) * patch`` pixels; with ``flip`` the mirrored input is added.
Per scale and flip, CAMs go through a ReLU, every map is resized (bilinear) to (n, m),
mirrored maps are flipped back, and the maps are summed over all passes (class probabilities
are averaged). :func:`select_and_normalise` then keeps the image's classes and min-max
normalises each map to [0, 1] per class (per class and layer for cross-attention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from weaksam.clues.model import CluesViT
from weaksam.clues.train import normalize


def scaled_size(input_size: int, scale: float, patch: int) -> int:
    """Input side in pixels for ``scale``: a multiple of ``patch``, at least one patch."""
    return max(patch, int(round(input_size * scale / patch)) * patch)


@torch.no_grad()
def multiscale_maps(
    model: CluesViT,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.8, 1.2),
    flip: bool = True,
) -> dict[str, torch.Tensor]:
    """Aggregate maps of ``images (B, 3, S, S)`` uint8 at base size S.

    Returns ``probs (B, C)``, ``cam_coarse, cam_fine (B, C, n, m)`` and
    ``cross (B, Ls, C, n, m)``, all float32 and non-negative (not yet normalised).
    """
    model.eval()
    base = images.shape[-1]
    p = model.patch_size
    n = m = base // p
    x0 = normalize(images)
    acc: dict[str, torch.Tensor] = {}
    passes = 0
    for s in scales:
        size = scaled_size(base, float(s), p)
        x = x0 if size == base else F.interpolate(
            x0, size=(size, size), mode="bilinear", align_corners=False, antialias=size < base)
        for flipped in ([False, True] if flip else [False]):
            inp = x.flip(-1) if flipped else x
            out = model(inp, with_cross=True)
            maps = {
                "cam_coarse": F.relu(out["cam_coarse"]),
                "cam_fine": F.relu(out["cam_fine"]),
                "cross": out["cross"].flatten(1, 2),  # (B, Ls*C, n', m')
            }
            for k, v in maps.items():
                if v.shape[-2:] != (n, m):
                    v = F.interpolate(v, size=(n, m), mode="bilinear", align_corners=False)
                if flipped:
                    v = v.flip(-1)
                acc[k] = acc.get(k, 0) + v
            acc["probs"] = acc.get("probs", 0) + model.class_scores(out)
            passes += 1
    b, c = images.shape[0], model.num_classes
    return {
        "probs": acc["probs"] / passes,
        "cam_coarse": acc["cam_coarse"],
        "cam_fine": acc["cam_fine"],
        "cross": acc["cross"].view(b, len(model.cross_layers), c, n, m),
    }


def minmax(maps: np.ndarray) -> np.ndarray:
    """Min-max normalise over the last two axes; constant maps become 0. Same shape, float32."""
    x = np.asarray(maps, dtype=np.float32)
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    rng = hi - lo
    return np.where(rng > 0, (x - lo) / np.where(rng > 0, rng, 1.0), 0.0).astype(np.float32)


def present_classes(probs: np.ndarray, labels: np.ndarray | None, threshold: float) -> np.ndarray:
    """Indices of the classes whose maps are kept: the labelled ones when ``labels (C,)`` is
    given (trainval), else those with ``probs >= threshold``, or the top-1 class if none."""
    if labels is not None:
        return np.flatnonzero(np.asarray(labels) > 0.5)
    idx = np.flatnonzero(probs >= threshold)
    return idx if len(idx) else np.array([int(np.argmax(probs))])


def select_and_normalise(
    maps: dict[str, np.ndarray], keep: np.ndarray
) -> dict[str, np.ndarray]:
    """One image's maps (``cam_* (C, n, m)``, ``cross (Ls, C, n, m)``) restricted to the class
    indices ``keep (K,)`` (the labels multiplied in) and min-max normalised per map:
    ``cam_* (K, n, m)``, ``cross (K, Ls, n, m)``."""
    return {
        "cam_coarse": minmax(maps["cam_coarse"][keep]),
        "cam_fine": minmax(maps["cam_fine"][keep]),
        "cross": minmax(np.moveaxis(maps["cross"][:, keep], 0, 1)),
    }
