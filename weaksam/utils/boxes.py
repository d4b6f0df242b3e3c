"""Box and mask helpers. Everything in the workspace imports these.

Conventions: ``boxes: (N, 4)`` float, xyxy in pixels, x2/y2 exclusive (a box covering pixel
columns 3..5 is ``[3, y1, 6, y2]``); COCO ``bbox`` is xywh in pixels; ``masks: (N, H, W)`` bool.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou as _tv_box_iou


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xywh -> (N, 4) xyxy."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2] += b[:, 0]
    b[:, 3] += b[:, 1]
    return b


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) xywh."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2] -= b[:, 0]
    b[:, 3] -= b[:, 1]
    return b


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) areas in pixels^2 (0 for degenerate boxes)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M) float64 (torchvision.ops.box_iou)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iou = _tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return np.nan_to_num(iou, nan=0.0)


def box_intersection_over_self(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i ∩ b_j| / |a_i| for (N, 4) and (M, 4) xyxy boxes -> (N, M) (Algorithm 2, line 14)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = box_area(a)[:, None]
    return np.where(area > 0, inter / np.maximum(area, 1e-12), 0.0)


def masks_to_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) bool masks -> ((N, 4) float32 xyxy boxes, (N,) bool non-empty).

    Empty masks get a zero box and ``False`` in the second output.
    """
    m = np.asarray(masks, dtype=bool)
    n = m.shape[0]
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes, np.zeros(0, dtype=bool)
    rows = m.any(axis=2)
    cols = m.any(axis=1)
    valid = rows.any(axis=1)
    h, w = m.shape[1:]
    y1 = np.argmax(rows, axis=1)
    y2 = h - np.argmax(rows[:, ::-1], axis=1)
    x1 = np.argmax(cols, axis=1)
    x2 = w - np.argmax(cols[:, ::-1], axis=1)
    boxes[:] = np.stack([x1, y1, x2, y2], axis=1)
    boxes[~valid] = 0
    return boxes, valid


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to the image ``[0, width] x [0, height]``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b
