"""PGT quality against hidden ground truth: precision, recall, missing labelled classes."""

from __future__ import annotations

import pytest

from weaksam.pgt.metrics import pgt_quality

GT = {
    "images": [{"id": 1}, {"id": 2}, {"id": 3}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10]},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [40, 40, 10, 10], "difficult": 1},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10]},
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]},
    ],
}


def _ann(i, img, cat, bbox, score):
    return {"id": i, "image_id": img, "category_id": cat, "bbox": bbox, "score": score}


def test_precision_recall_and_missing_classes():
    pgt = {"annotations": [
        # image 1, class 1: the lower-scoring box comes first in the file; the higher one takes
        # GT 1, the other is a duplicate on GT 1 -> FP (greedy by score, one-to-one)
        _ann(1, 1, 1, [1, 0, 10, 10], 0.5),
        _ann(2, 1, 1, [0, 0, 10, 10], 0.9),
        # image 1, class 2: matches the difficult box -> ignored
        _ann(3, 1, 2, [40, 40, 10, 10], 0.7),
        # image 2, class 2: IoU 25/175 < 0.5 -> FP; image 3: no box for labelled class 1
        _ann(4, 2, 2, [5, 5, 10, 10], 0.6),
    ]}
    m = pgt_quality(pgt, GT)
    assert (m["num_tp"], m["num_fp"], m["num_ignored"], m["num_gt"]) == (1, 2, 1, 4)
    assert m["precision"] == pytest.approx(100 / 3)
    assert m["recall"] == pytest.approx(25.0)
    assert m["num_boxes"] == 4 and m["boxes_per_image"] == pytest.approx(4 / 3)
    # labelled (image, class) pairs: (1, a), (1, b), (2, b), (3, a); (3, a) has no box
    assert (m["labelled_classes"], m["labelled_classes_without_box"]) == (4, 1)
    assert m["labelled_classes_without_box_pct"] == pytest.approx(25.0)
    assert m["images_without_box"] == 1
    assert m["per_class"]["a"] == {"boxes": 2, "precision": 50.0, "recall": 100 / 3,
                                   "labelled": 2, "without_box": 1}
    assert m["per_class"]["b"] == {"boxes": 2, "precision": 0.0, "recall": 0.0,
                                   "labelled": 2, "without_box": 0}


def test_empty_pgt():
    m = pgt_quality({"annotations": []}, GT)
    assert m["precision"] is None and m["recall"] == 0.0
    assert m["labelled_classes_without_box"] == 4 and m["images_without_box"] == 3


def test_unknown_image_raises():
    with pytest.raises(ValueError, match="image 9"):
        pgt_quality({"annotations": [_ann(1, 9, 1, [0, 0, 1, 1], 1.0)]}, GT)
