"""Selective Search proposals (Uijlings et al., 2013), the paper's baseline (Tables 4, 6, 8).

OpenCV contrib's ``cv2.ximgproc.segmentation`` implementation. Output per image:
``boxes (R, 4)`` float32 xyxy in pixels (x2, y2 exclusive), ``scores (R,)`` float32 rank scores,
``sources (R,)`` uint8 zeros (source name "ss").

Selective Search has no objectness: the score is rank based, ``(R - i) / R`` for the i-th box
(0-based) in OpenCV's output order, so the first box scores 1 and every score is in (0, 1]
(a valid probability for the detectron2 export's logit).

Determinism: OpenCV ranks regions with the C library's ``rand()`` (process-global state), so
the same image gives differently ordered boxes on each call. :func:`selective_search` seeds it
with ``srand(seed)`` right before ``process()``; with one OpenCV thread (``cv2.setNumThreads(1)``,
done in :func:`init_worker`) the output is then identical across calls and processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Literal

import cv2
import numpy as np

from weaksam.proposals.store import ImageProposals

Mode = Literal["fast", "quality", "single"]
SOURCE_NAMES = ["ss"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    for cand in (None, name, "msvcrt"):
        try:
            lib = ctypes.CDLL(cand)
            lib.srand  # noqa: B018 - probe the symbol
            return lib
        except (OSError, AttributeError, TypeError):
            continue
    return None


def _srand(seed: int) -> None:
    lib = _libc()
    if lib is not None:
        lib.srand(ctypes.c_uint(seed % (2**32)))


def init_worker() -> None:
    """Per-process setup: one OpenCV thread (deterministic, and fair on a shared machine)."""
    cv2.setNumThreads(1)


def selective_search(
    image: np.ndarray,
    mode: Mode = "fast",
    max_per_image: int = 2001,
    min_size: float = 4,
    seed: int = 0,
) -> ImageProposals:
    """Selective Search boxes of ``image (H, W, 3)`` uint8 RGB.

    ``mode``: "fast" (OpenCV's switchToSelectiveSearchFast, the usual baseline), "quality"
    (switchToSelectiveSearchQuality, more strategies, slower) or "single" (one strategy).
    Boxes with width or height below ``min_size`` pixels are dropped, exact duplicates are
    removed (first occurrence kept), and at most ``max_per_image`` boxes are kept, in OpenCV's
    rank order (paper: 2001 on VOC). ``seed`` seeds the ranking (see module docstring).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(img[:, :, ::-1]))  # OpenCV wants BGR
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    elif mode == "single":
        ss.switchToSingleStrategy()
    else:
        raise ValueError(f"unknown Selective Search mode {mode!r} (fast, quality, single)")
    _srand(seed)
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)  # (R, 4) x, y, w, h
    keep = (rects[:, 2] >= min_size) & (rects[:, 3] >= min_size)
    rects = rects[keep]
    _, first = np.unique(rects, axis=0, return_index=True)
    rects = rects[np.sort(first)][: max(int(max_per_image), 0)]
    n = len(rects)
    if n == 0:
        return ImageProposals.empty()
    boxes = rects.copy()
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy (exclusive x2, y2)
    scores = (n - np.arange(n, dtype=np.float64)) / n
    return ImageProposals(
        boxes.astype(np.float32), scores.astype(np.float32), np.zeros(n, dtype=np.uint8)
    )
