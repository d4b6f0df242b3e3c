"""Box helpers (weaksam/utils/boxes.py), with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from weaksam.utils.boxes import (
    box_area,
    box_intersection_over_self,
    box_iou,
    clip_boxes,
    masks_to_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_xywh_xyxy_round_trip():
    xywh = np.array([[1, 2, 3, 4], [0, 0, 0, 0]])
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[1, 2, 4, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh is not xyxy and xywh[0, 2] == 3  # input untouched
    assert xywh_to_xyxy(np.zeros((0, 4))).shape == (0, 4)
    assert xywh_to_xyxy([5, 5, 1, 1]).shape == (1, 4)


def test_area_and_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [3, 3, 3, 8]])
    np.testing.assert_array_equal(box_area(a), [100, 100, 0])
    iou = box_iou(a[:2], a)
    # overlap 5 x 5 = 25; union 175.
    np.testing.assert_allclose(iou, [[1, 25 / 175, 0], [25 / 175, 1, 0]])
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 3)
    assert box_iou(a, np.zeros((0, 4))).shape == (3, 0)
    degenerate = box_iou([[2, 2, 2, 2]], [[2, 2, 2, 2]])
    assert degenerate.tolist() == [[0.0]]  # 0 / 0 becomes 0, not NaN


def test_intersection_over_self():
    small, big = [[0, 0, 4, 4]], [[0, 0, 8, 8]]
    assert box_intersection_over_self(small, big)[0, 0] == pytest.approx(1.0)
    assert box_intersection_over_self(big, small)[0, 0] == pytest.approx(16 / 64)
    assert box_intersection_over_self([[1, 1, 1, 5]], big)[0, 0] == 0.0  # zero area
    assert box_intersection_over_self(small, [[10, 10, 12, 12]])[0, 0] == 0.0


def test_masks_to_boxes_exclusive_corners():
    m = np.zeros((3, 6, 7), bool)
    m[0, 1:3, 2:5] = True  # rows 1..2, cols 2..4 -> [2, 1, 5, 3]
    m[1, 5, 6] = True      # single bottom-right pixel -> [6, 5, 7, 6]
    boxes, valid = masks_to_boxes(m)
    np.testing.assert_array_equal(boxes, [[2, 1, 5, 3], [6, 5, 7, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(valid, [True, True, False])
    assert boxes.dtype == np.float32
    b0, v0 = masks_to_boxes(np.zeros((0, 4, 4), bool))
    assert b0.shape == (0, 4) and v0.shape == (0,)


def test_clip():
    out = clip_boxes([[-3, 2, 12, 20], [1, 1, 2, 2]], width=10, height=8)
    np.testing.assert_array_equal(out, [[0, 2, 10, 8], [1, 1, 2, 2]])
