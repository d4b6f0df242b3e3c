"""Multi-scale + flip inference of the CAM network (WeakTr's map generation; paper Sec. 3.1).

Shorthand: B images, C classes, Ls cross-attention layers, Hc heads kept per layer (Hd, or 1
when heads are averaged), Lc = Ls * Hc cross-attention maps per class, (n, m) the token grid of
an image at scale 1.0 (its base size divided by the patch).

Base size (:func:`base_size`): ``"square"`` squashes the image to ``input_size`` squared (aspect
lost); ``"area"`` keeps the aspect ratio at about ``input_size**2`` pixels (same token count,
same cost); ``"original"`` keeps the image's own pixels (WeakTr / the authors' release:
``VOC07DatasetMS`` resizes the original image by each scale). Sides are rounded to a multiple
of the patch. For each scale s the network input is the base image resized to
``round(side * s / patch) * patch`` per side (positional embeddings are resampled to that grid);
with ``flip`` the mirrored input is added. Per scale and flip, CAMs go through a ReLU, every map
is resized (bilinear) to (n, m), mirrored maps are flipped back, and the maps are summed over all
passes (class probabilities are averaged). :func:`select_and_normalise` then keeps the image's
classes and min-max normalises each map to [0, 1] per class (per class, layer and head for
cross-attention, as the release normalises each of its per-head maps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from weaksam.clues.model import CluesViT
from weaksam.clues.train import autocast, normalize

RESIZE_MODES = ("square", "area", "original")


def scaled_size(input_size: int, scale: float, patch: int) -> int:
    """Input side in pixels for ``scale``: a multiple of ``patch``, at least one patch."""
    return max(patch, int(round(input_size * scale / patch)) * patch)


def base_size(height: int, width: int, mode: str, input_size: int, patch: int
              ) -> tuple[int, int]:
    """Network input ``(h, w)`` in pixels at scale 1.0 for an image of ``height x width``
    (see the module docstring for ``mode``); both multiples of ``patch``."""
    if mode == "square":
        return scaled_size(input_size, 1.0, patch), scaled_size(input_size, 1.0, patch)
    if mode == "area":
        f = input_size / float(np.sqrt(height * width))
    elif mode == "original":
        f = 1.0
    else:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    return scaled_size(height, f, patch), scaled_size(width, f, patch)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8, ``size = (h, w)`` (area when shrinking, else
    bilinear)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_LINEAR
    return cv2.resize(image, (size[1], size[0]), interpolation=interp)


def cross_map_index(cross_layers: Sequence[int], num_heads: int, cross_heads: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Layer and head of each of the Lc cross-attention maps, layer-major:
    ``(layers (Lc,), heads (Lc,))``; head -1 means the layer's heads averaged."""
    hs = list(range(num_heads)) if cross_heads == "each" else [-1]
    layers = np.array([li for li in cross_layers for _ in hs], dtype=np.int64)
    heads = np.array([h for _ in cross_layers for h in hs], dtype=np.int64)
    return layers, heads


@torch.no_grad()
def multiscale_maps(
    model: CluesViT,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.8, 1.2),
    flip: bool = True,
    cross_heads: str = "mean",
    device: torch.device | str = "cpu",
    amp: bool = False,
) -> dict[str, torch.Tensor]:
    """Aggregate maps of ``images (B, 3, H, W)`` uint8 at their base size (H, W multiples of
    the patch), computed on ``device`` (the model must be there; ``amp``: float16 autocast on
    CUDA, as WeakTr's map generation; ignored on the CPU).

    Returns CPU float32 tensors, non-negative, not yet normalised: ``probs (B, C)``,
    ``cam_coarse, cam_fine (B, C, n, m)`` and ``cross (B, Lc, C, n, m)`` (maps ordered as
    :func:`cross_map_index`).
    """
    model.eval()
    device = torch.device(device)
    h0, w0 = images.shape[-2:]
    p = model.patch_size
    n, m = h0 // p, w0 // p
    x0 = normalize(images.to(device))
    acc: dict[str, torch.Tensor] = {}
    passes = 0
    for s in scales:
        size = (scaled_size(h0, float(s), p), scaled_size(w0, float(s), p))
        x = x0 if size == (h0, w0) else F.interpolate(
            x0, size=size, mode="bilinear", align_corners=False,
            antialias=size[0] * size[1] < h0 * w0)
        for flipped in ([False, True] if flip else [False]):
            inp = x.flip(-1) if flipped else x
            with autocast(device, amp):
                out = model(inp, with_cross=True, cross_heads=cross_heads)
            maps = {
                "cam_coarse": F.relu(out["cam_coarse"].float()),
                "cam_fine": F.relu(out["cam_fine"].float()),
                "cross": out["cross"].float().flatten(1, 3),  # (B, Ls*Hc*C, n', m')
            }
            for k, v in maps.items():
                if v.shape[-2:] != (n, m):
                    v = F.interpolate(v, size=(n, m), mode="bilinear", align_corners=False)
                if flipped:
                    v = v.flip(-1)
                acc[k] = acc.get(k, 0) + v
            hc = out["cross"].shape[2]
            acc["probs"] = acc.get("probs", 0) + model.class_scores(
                {k: v.float() for k, v in out.items()})
            passes += 1
    b, c = images.shape[0], model.num_classes
    return {
        "probs": (acc["probs"] / passes).cpu(),
        "cam_coarse": acc["cam_coarse"].cpu(),
        "cam_fine": acc["cam_fine"].cpu(),
        "cross": acc["cross"].view(b, len(model.cross_layers) * hc, c, n, m).cpu(),
    }


def group_by_size(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices of images with equal base size, in batches of at most ``batch_size``; batches
    ordered by their first image (so the work order is a pure function of the sizes)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, s in enumerate(sizes):
        groups[tuple(s)].append(i)
    batches = [g[k : k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]
    return sorted(batches, key=lambda b: b[0])


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
    """One image's maps (``cam_* (C, n, m)``, ``cross (Lc, C, n, m)``) restricted to the class
    indices ``keep (K,)`` (the labels multiplied in) and min-max normalised per map:
    ``cam_* (K, n, m)``, ``cross (K, Lc, n, m)``."""
    return {
        "cam_coarse": minmax(maps["cam_coarse"][keep]),
        "cam_fine": minmax(maps["cam_fine"][keep]),
        "cross": minmax(np.moveaxis(maps["cross"][:, keep], 0, 1)),
    }
