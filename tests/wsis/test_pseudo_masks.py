"""Pseudo masks (weaksam/wsis/pseudo_masks.py) and their quality (weaksam/wsis/quality.py):
degenerate and outside boxes, empty masks, batching, the COCO output, hand-built matching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.sam.tiny import TINY_SAM
from weaksam.eval.mask_ap import decode_segmentation, encode_mask
from weaksam.sam.model import build_small_sam
from weaksam.wsis.pseudo_masks import (
    BoxPromptMasker,
    image_pseudo_masks,
    pseudo_mask_dataset,
    sanitize_boxes,
)
from weaksam.wsis.quality import greedy_pairs, mask_quality

H, W = 30, 40


def test_sanitize_boxes_clips_and_skips() -> None:
    boxes = np.array([
        [2, 3, 10, 12],        # inside: kept as is
        [-5, 20, 50, 40],      # outside on three sides: clipped to [0, 20, 40, 30]
        [5, 5, 5, 9],          # zero width: skipped
        [45, 0, 60, 10],       # wholly right of the image: zero width once clipped, skipped
        [np.nan, 0, 4, 4],     # non-finite: skipped
    ], dtype=np.float64)
    c, keep, changed = sanitize_boxes(boxes, W, H)
    assert keep.tolist() == [True, True, False, False, False]
    assert changed.tolist() == [False, True, False, False, False]
    np.testing.assert_array_equal(c[1], [0, 20, 40, 30])


def _box_masker(empty_index: int | None = None):
    """A stand-in for SAM: the box's own pixels, except an empty mask for one call index."""
    calls = []

    def masker(image, boxes):
        calls.append(np.asarray(boxes).copy())
        h, w = image.shape[:2]
        m = np.zeros((len(boxes), h, w), bool)
        for k, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int)):
            if k != empty_index:
                m[k, y1:y2, x1:x2] = True
        return m, np.full(len(boxes), 0.5, np.float32)

    masker.calls = calls
    return masker


def _ann(iid: int, cid: int, box_xywh, score: float) -> dict:
    return {"image_id": iid, "category_id": cid, "bbox": list(box_xywh), "score": score}


def test_image_pseudo_masks_counts_and_output() -> None:
    img = np.zeros((H, W, 3), np.uint8)
    anns = [_ann(1, 2, (2, 3, 8, 9), 0.9),       # kept
            _ann(1, 1, (30, 20, 20, 20), 0.8),   # clipped to (30, 20, 10, 10)
            _ann(1, 1, (5, 5, 0, 4), 0.7),       # zero area: skipped, never prompted
            _ann(1, 3, (10, 10, 5, 5), 0.6)]     # SAM returns nothing: dropped
    masker = _box_masker(empty_index=2)  # third prompted box = the fourth annotation
    out, st = image_pseudo_masks(masker, img, anns)
    assert (st.boxes_in, st.boxes_clipped, st.boxes_skipped, st.masks_empty, st.masks_out) == \
        (4, 1, 1, 1, 2)
    assert len(masker.calls[0]) == 3
    assert [a["category_id"] for a in out] == [2, 1]
    assert [a["score"] for a in out] == [0.9, 0.8]
    assert out[1]["prompt_bbox"] == [30.0, 20.0, 10.0, 10.0]
    assert out[1]["bbox"] == [30.0, 20.0, 10.0, 10.0] and out[1]["area"] == 100.0
    m = decode_segmentation(out[0]["segmentation"], H, W)
    assert m.sum() == 8 * 9 and m[3:12, 2:10].all()


def test_dataset_keeps_images_without_boxes_and_numbers_annotations() -> None:
    pgt = {"info": {"image_root": "x"},
           "images": [{"id": i, "file_name": f"{i}.png", "width": W, "height": H}
                      for i in (1, 2, 3)],
           "categories": [{"id": 1, "name": "a"}],
           "annotations": [_ann(3, 1, (1, 1, 5, 5), 0.5), _ann(1, 1, (0, 0, 0, 0), 0.4),
                           _ann(3, 1, (10, 10, 5, 5), 0.3)]}
    read = []
    data, st = pseudo_mask_dataset(pgt, lambda i: read.append(i) or np.zeros((H, W, 3), np.uint8),
                                   _box_masker())
    assert read == [1, 3]  # image 2 has no PGT box: not read
    assert [im["id"] for im in data["images"]] == [1, 2, 3]
    assert [a["id"] for a in data["annotations"]] == [1, 2]
    assert st.boxes_skipped == 1 and st.images_without_mask == 2 and st.images == 3
    assert data["info"] == {"image_root": "x"}


@pytest.fixture(scope="module")
def tiny_sam():
    torch.manual_seed(0)
    sam = build_small_sam(TINY_SAM)
    with torch.no_grad():  # random, larger decoder weights: masks depend on the prompt
        for p in sam.mask_decoder.parameters():
            p.mul_(3.0)
    return sam


def test_sam_box_prompts_batching_invariant(tiny_sam) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    xy = rng.uniform(0, 40, (9, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (9, 2))], 1)
    m1, s1 = BoxPromptMasker(tiny_sam, batch_size=1).masks(img, boxes)
    m64, s64 = BoxPromptMasker(tiny_sam, batch_size=64).masks(img, boxes)
    assert m1.shape == (9, 50, 70) and m1.dtype == bool and s1.shape == (9,)
    assert (m1 == m64).all()
    np.testing.assert_allclose(s1, s64, rtol=1e-4, atol=1e-4)  # float sums by batch
    m0, s0 = BoxPromptMasker(tiny_sam).masks(img, np.zeros((0, 4)))
    assert m0.shape == (0, 50, 70) and s0.shape == (0,)


def test_greedy_pairs() -> None:
    iou = np.array([[0.6, 0.7], [0.65, 0.0], [0.0, 0.0]])
    # 0.7 first (0, 1), then 0.65 (1, 0); row 2 has no overlap
    assert greedy_pairs(iou) == [(0, 1), (1, 0)]
    assert greedy_pairs(np.zeros((0, 3))) == []


def test_mask_quality_hand_case() -> None:
    def rect(y1, y2, x1, x2):
        m = np.zeros((H, W), bool)
        m[y1:y2, x1:x2] = True
        return m

    g1, g2 = rect(0, 10, 0, 10), rect(10, 20, 20, 30)
    gt = {"images": [{"id": 1, "file_name": "1.png", "width": W, "height": H}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_mask(g1),
               "bbox": [0, 0, 10, 10]},
              {"id": 2, "image_id": 1, "category_id": 2, "segmentation": encode_mask(g2),
               "bbox": [20, 10, 10, 10]}]}
    pseudo = {"annotations": [
        # IoU 1 with g1, prompt box on g1
        {"image_id": 1, "category_id": 1, "segmentation": encode_mask(g1), "bbox": [0, 0, 10, 10]},
        # IoU 50/150 = 1/3 with g2; prompt box far from g2's box
        {"image_id": 1, "category_id": 2, "segmentation": encode_mask(rect(10, 20, 25, 35)),
         "bbox": [25, 10, 10, 10], "prompt_bbox": [0, 20, 5, 5]},
        # class a again: no GT left to match
        {"image_id": 1, "category_id": 1, "segmentation": encode_mask(rect(0, 5, 0, 5)),
         "bbox": [0, 0, 5, 5]}]}
    q = mask_quality(pseudo, gt)
    assert q["num_matched"] == 2 and q["num_pseudo"] == 3 and q["num_gt"] == 2
    assert q["mean_iou"] == pytest.approx((1 + 1 / 3) / 2)
    assert q["share_iou50"] == pytest.approx(50.0)
    assert q["precision50"] == pytest.approx(100 / 3)
    assert q["recall50"] == pytest.approx(50.0)
    assert q["mean_iou_given_box50"] == pytest.approx(1.0)
    assert q["per_class"]["b"]["mean_iou"] == pytest.approx(1 / 3)
