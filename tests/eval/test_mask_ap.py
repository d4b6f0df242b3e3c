"""Mask AP (weaksam/eval/mask_ap.py): mask IoU against pycocotools, hand-worked VOC-protocol
cases at the four Table 2 thresholds, and COCO segm AP on perfect predictions."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from weaksam.errors import InputError
from weaksam.eval.mask_ap import (
    coco_mask_ap,
    decode_segmentation,
    encode_mask,
    evaluate_voc_masks,
    mask_iou,
    match_by_iou,
    threshold_key,
)

H, W = 40, 50


def _rect(y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def _gt(objs: dict[int, list[tuple[int, np.ndarray, int]]]) -> dict:
    gt = {"images": [{"id": i, "file_name": f"{i}.png", "width": W, "height": H} for i in objs],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
          "annotations": []}
    for iid, items in objs.items():
        for cid, m, diff in items:
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": iid, "category_id": cid,
                "segmentation": encode_mask(m), "area": float(m.sum()), "iscrowd": 0,
                "bbox": [float(v) for v in mask_utils.toBbox(
                    mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))],
                "difficult": diff})
    return gt


def _pred(iid: int, cid: int, m: np.ndarray, score: float) -> dict:
    return {"image_id": iid, "category_id": cid, "segmentation": encode_mask(m), "score": score}


def test_mask_iou_matches_pycocotools_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((7, 23, 31)) < rng.random((7, 1, 1))
    b = rng.random((5, 23, 31)) < rng.random((5, 1, 1))
    a[0] = False  # an empty mask on each side: IoU 0, as pycocotools
    b[1] = False
    ra = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in a]
    rb = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in b]
    ref = mask_utils.iou(ra, rb, [0] * len(rb))
    np.testing.assert_allclose(mask_iou(a, b), ref, atol=1e-12)
    assert mask_iou(a[:0], b).shape == (0, 5)


def test_rle_round_trip_and_polygons() -> None:
    m = _rect(3, 9, 4, 20)
    seg = encode_mask(m)
    assert isinstance(seg["counts"], str) and seg["size"] == [H, W]
    assert (decode_segmentation(seg, H, W) == m).all()
    poly = [[4.0, 3.0, 20.0, 3.0, 20.0, 9.0, 4.0, 9.0]]
    assert decode_segmentation(poly, H, W).sum() > 0
    with pytest.raises(ValueError):
        decode_segmentation(seg, H + 1, W)


def test_threshold_keys() -> None:
    assert [threshold_key(t) for t in (0.25, 0.5, 0.7, 0.75)] == ["ap25", "ap50", "ap70", "ap75"]


def test_voc_mask_ap_hand_case() -> None:
    a1, a2 = _rect(0, 10, 0, 10), _rect(0, 10, 20, 30)
    gt = _gt({1: [(1, a1, 0), (2, _rect(20, 30, 20, 30), 0)], 2: [(1, a2, 0)]})
    preds = [
        _pred(1, 1, a1, 0.9),                 # TP at every threshold
        _pred(1, 1, _rect(0, 10, 1, 11), 0.8),  # IoU 90/110 with a1, already taken: FP
        _pred(2, 1, _rect(0, 10, 20, 36), 0.7),  # IoU 100/160 = 0.625 with a2
    ]
    r = evaluate_voc_masks(gt, preds)
    # class a at 0.25 / 0.5: flags 1 0 1 -> recall .5 .5 1, precision 1 .5 2/3 -> AP 5/6
    # at 0.7 / 0.75: flags 1 0 0 -> AP 0.5; class b: no prediction -> 0; class c: no GT -> None
    assert r["per_class"]["ap50"]["a"] == pytest.approx(100 * 5 / 6)
    assert r["per_class"]["ap25"]["a"] == pytest.approx(100 * 5 / 6)
    assert r["per_class"]["ap70"]["a"] == pytest.approx(50.0)
    assert r["per_class"]["ap75"]["b"] == 0.0
    assert r["per_class"]["ap50"]["c"] is None
    assert r["ap50"] == pytest.approx(100 * 5 / 12)
    assert r["ap75"] == pytest.approx(25.0)


def test_voc_mask_ap_difficult_rule() -> None:
    a1 = _rect(0, 10, 0, 10)
    gt = _gt({1: [(1, a1, 1), (1, _rect(20, 30, 0, 10), 0)]})
    preds = [_pred(1, 1, a1, 0.9), _pred(1, 1, _rect(20, 30, 0, 10), 0.5)]
    # chainercv protocol: the difficult instance counts like any other -> both TP, AP 100
    assert evaluate_voc_masks(gt, preds)["ap50"] == pytest.approx(100.0)
    # devkit rule: the first prediction is ignored, the second is the only TP -> AP 100 too,
    # but a miss of the normal instance gives 0 (the difficult one is not counted)
    only_difficult = [_pred(1, 1, a1, 0.9)]
    assert evaluate_voc_masks(gt, only_difficult, ignore_difficult=True)["ap50"] == 0.0
    assert evaluate_voc_masks(gt, only_difficult)["ap50"] == pytest.approx(50.0)


def test_match_by_iou_duplicates_and_ties() -> None:
    iou = np.array([[0.8, 0.8], [0.9, 0.1], [0.2, 0.3], [0.3, 0.2]])
    # first prediction takes instance 0 (first on the tie); the second also wants 0 -> FP; the
    # third takes 1 at 0.25; the fourth wants the taken 0 and does not fall back to 1 -> FP
    assert match_by_iou(iou, np.zeros(2, bool), 0.5).tolist() == [1, 0, 0, 0]
    assert match_by_iou(iou, np.zeros(2, bool), 0.25).tolist() == [1, 0, 1, 0]


def test_unknown_image_raises() -> None:
    gt = _gt({1: [(1, _rect(0, 10, 0, 10), 0)]})
    with pytest.raises(InputError):
        evaluate_voc_masks(gt, [_pred(9, 1, _rect(0, 10, 0, 10), 0.5)])


def test_coco_mask_ap_perfect_and_empty() -> None:
    gt = _gt({1: [(1, _rect(0, 10, 0, 10), 0), (2, _rect(20, 35, 5, 30), 0)],
              2: [(1, _rect(5, 25, 10, 40), 0)]})
    preds = [_pred(a["image_id"], a["category_id"], decode_segmentation(a["segmentation"], H, W),
                   0.9) for a in gt["annotations"]]
    r = coco_mask_ap(gt, preds)
    assert r == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0})
    assert coco_mask_ap(gt, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    # the same masks scored against shifted ground truth: below 100
    shifted = [_pred(1, 1, _rect(0, 10, 3, 13), 0.9)]
    assert coco_mask_ap(gt, shifted)["AP"] < 100.0
