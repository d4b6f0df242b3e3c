"""Pointing accuracy of class-aware prompts (evaluation only: reads ground-truth masks).

A prompt point of class c is a hit when the pixel containing it lies inside the visible
ground-truth instance MASK of some class-c object of its image (instances without a
segmentation fall back to their box). Shorthand: P points, N instances, H x W pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pycocotools.mask as mask_utils


def annotation_masks(anns: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """COCO annotations -> ``(N, H, W)`` bool masks (RLE or polygons; box if neither)."""
    out = np.zeros((len(anns), height, width), dtype=bool)
    for i, a in enumerate(anns):
        seg = a.get("segmentation")
        if isinstance(seg, dict) and "counts" in seg:
            rle = dict(seg)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode()
            out[i] = mask_utils.decode(rle).astype(bool)
        elif isinstance(seg, list) and seg:
            rles = mask_utils.frPyObjects(seg, height, width)
            out[i] = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
        else:
            x, y, w, h = (float(v) for v in a["bbox"])
            out[i, int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
    return out


def pointing_hits(
    points: np.ndarray, classes: np.ndarray, masks: np.ndarray, mask_classes: np.ndarray
) -> np.ndarray:
    """``points (P, 2)`` (x, y) px with ``classes (P,)`` against ``masks (N, H, W)`` with
    ``mask_classes (N,)`` -> ``(P,)`` bool hits. Points are floored to their pixel and
    clipped into the image."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cls = np.asarray(classes).reshape(-1)
    hits = np.zeros(len(pts), dtype=bool)
    if len(pts) == 0 or len(masks) == 0:
        return hits
    h, w = masks.shape[1:]
    xs = np.clip(np.floor(pts[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.floor(pts[:, 1]).astype(int), 0, h - 1)
    inside = masks[:, ys, xs]  # (N, P)
    same = np.asarray(mask_classes).reshape(-1, 1) == cls.reshape(1, -1)
    return (inside & same).any(axis=0)
