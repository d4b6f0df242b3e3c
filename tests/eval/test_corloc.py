"""CorLoc (weaksam/eval/corloc.py): a hand-worked case and an independent loop version."""

from __future__ import annotations

import pytest

from tests.eval.conftest import coco_gt, det, random_case
from weaksam.eval.corloc import corloc


def test_corloc_by_hand():
    gt = coco_gt({
        1: [(1, (0, 0, 10, 10), 0), (2, (20, 20, 30, 30), 1)],
        2: [(1, (0, 0, 10, 10), 0), (1, (20, 0, 30, 10), 0)],
        3: [(2, (0, 0, 20, 20), 0)],
    }, {1: "a", 2: "b", 3: "c"})
    dets = [
        det(1, 1, (0, 0, 10, 10), 0.9),     # a, image 1: top-1 is exact -> hit
        det(1, 1, (50, 50, 60, 60), 0.1),
        det(2, 1, (40, 40, 50, 50), 0.8),   # a, image 2: top-1 misses ...
        det(2, 1, (20, 0, 30, 10), 0.3),    # ... a lower-scored exact box does not count
        det(1, 2, (20, 20, 30, 30), 0.5),   # b, image 1: the (difficult) box counts -> hit
        det(3, 2, (0, 0, 20, 12), 0.4),     # b, image 3: IoU 240/400 = 0.6 -> hit
        det(3, 1, (0, 0, 20, 20), 0.9),     # a is absent from image 3: ignored
    ]
    out = corloc(gt, dets)
    assert out["per_class"] == {"a": pytest.approx(50.0), "b": pytest.approx(100.0), "c": None}
    assert out["mean"] == pytest.approx(75.0)
    # Error modes over the (image, present class) pairs with a top box, areas against the
    # best-IoU object of the class: a/1 1.0, a/2 (no overlap: first object) 1.0, b/1 1.0,
    # b/3 240/400 = 0.6 -> none too small or too large; median 1.0.
    assert out["too_small"] == 0.0 and out["too_large"] == 0.0
    assert out["median_area_ratio"] == pytest.approx(1.0)
    # No detection in an image containing the class is a miss.
    assert corloc(gt, dets[:4])["per_class"]["b"] == 0.0
    assert corloc(gt, dets, iou_thr=0.7)["per_class"]["b"] == pytest.approx(50.0)


def test_error_modes_count_parts_and_context_over_all_present_pairs():
    gt = coco_gt({1: [(1, (0, 0, 20, 20), 0)], 2: [(1, (0, 0, 20, 20), 0)],
                  3: [(1, (0, 0, 20, 20), 0)], 4: [(1, (0, 0, 20, 20), 0)]}, {1: "a"})
    dets = [det(1, 1, (0, 0, 10, 10), 0.9),   # a part: area 0.25 of the object
            det(2, 1, (0, 0, 40, 40), 0.9),   # context: area 4x
            det(3, 1, (0, 0, 20, 18), 0.9)]   # a hit; image 4: no detection (a miss, no mode)
    out = corloc(gt, dets)
    assert out["mean"] == pytest.approx(25.0)
    assert out["too_small"] == pytest.approx(25.0) and out["too_large"] == pytest.approx(25.0)
    assert out["median_area_ratio"] == pytest.approx(0.9)
    empty = corloc(gt, [])
    assert empty["mean"] == 0.0 and empty["too_small"] is None
    assert empty["median_area_ratio"] is None


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)


def _xyxy(b):
    return (b[0], b[1], b[0] + b[2], b[1] + b[3])


def _corloc_loop(gt, dets, thr=0.5):
    per = {}
    for c in gt["categories"]:
        hits = n = 0
        for im in gt["images"]:
            boxes = [_xyxy(a["bbox"]) for a in gt["annotations"]
                     if a["image_id"] == im["id"] and a["category_id"] == c["id"]]
            if not boxes:
                continue
            n += 1
            best = None
            for d in dets:  # first highest score wins
                if d["image_id"] == im["id"] and d["category_id"] == c["id"]:
                    if best is None or d["score"] > best["score"]:
                        best = d
            if best is not None and max(_iou(_xyxy(best["bbox"]), b) for b in boxes) >= thr:
                hits += 1
        per[c["name"]] = 100 * hits / n if n else None
    valid = [v for v in per.values() if v is not None]
    return (sum(valid) / len(valid) if valid else None), per


@pytest.mark.parametrize("seed", range(10))
def test_matches_independent_loop_version(seed):
    gt, dets = random_case(seed, n_images=8)
    ref_mean, ref = _corloc_loop(gt, dets)
    out = corloc(gt, dets)
    for name, v in ref.items():
        got = out["per_class"][name]
        assert got == pytest.approx(v, abs=1e-6) if v is not None else got is None
    assert out["mean"] == pytest.approx(ref_mean, abs=1e-6)
