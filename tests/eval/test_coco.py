"""COCO AP through pycocotools (weaksam/eval/coco.py)."""

from __future__ import annotations

import pytest

from tests.eval.conftest import coco_gt, det
from weaksam.eval.coco import coco_ap

GT = coco_gt({1: [(1, (0, 0, 10, 10), 0)], 2: [(1, (20, 20, 40, 40), 0)]}, {1: "a"})


def test_perfect_and_empty():
    perfect = [det(1, 1, (0, 0, 10, 10), 0.9), det(2, 1, (20, 20, 40, 40), 0.8)]
    assert coco_ap(GT, perfect) == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0})
    assert coco_ap(GT, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    assert coco_ap(dict(GT, annotations=[]), perfect) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}


def test_iou_062_counts_at_three_of_ten_thresholds():
    gt = coco_gt({1: [(1, (0, 0, 10, 10), 0)]}, {1: "a"})
    # IoU 62/100 = 0.62: matched at 0.50, 0.55, 0.60 only; precision 1 there -> AP = 3/10.
    out = coco_ap(gt, [det(1, 1, (0, 0, 10, 6.2), 0.9)])
    assert out == pytest.approx({"AP": 30.0, "AP50": 100.0, "AP75": 0.0})
