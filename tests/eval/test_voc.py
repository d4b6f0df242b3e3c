"""VOC AP (weaksam/eval/voc.py): hand-worked cases and an independent, loop-only
re-implementation of the devkit's Python port (detectron2 ``voc_eval``, wetectron)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.conftest import coco_gt, det, random_case
from weaksam.errors import InputError
from weaksam.eval.voc import evaluate_voc, voc_ap

CATS = {1: "a", 2: "b", 3: "c"}


def _hand_case():
    # Class a: 3 non-difficult GT over 2 images. Class b: one difficult + one normal GT.
    # Class c: no GT at all.
    gt = coco_gt({
        1: [(1, (0, 0, 10, 10), 0), (2, (0, 0, 10, 10), 1), (2, (30, 30, 40, 40), 0)],
        2: [(1, (0, 0, 10, 10), 0), (1, (20, 0, 30, 10), 0)],
    }, CATS)
    dets = [
        det(1, 1, (0, 0, 10, 10), 0.9),    # TP on image 1's a
        det(1, 1, (1, 0, 11, 10), 0.8),    # IoU 90/110 with the same box: duplicate -> FP
        det(2, 1, (20, 0, 30, 10), 0.7),   # TP
        det(2, 1, (40, 40, 50, 50), 0.6),  # no overlap -> FP
        det(1, 2, (0, 0, 10, 10), 0.9),    # matches the difficult b: ignored
        det(1, 2, (30, 30, 40, 40), 0.5),  # TP
    ]
    return gt, dets


def test_voc_ap_by_hand():
    # Class a: rec 1/3, 1/3, 2/3, 2/3; prec 1, 1/2, 2/3, 1/2.
    rec = np.array([1, 1, 2, 2]) / 3
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2])
    # 11-point: t in {0, .1, .2, .3} -> 1; t in {.4, .5, .6} -> 2/3; t >= .7 -> 0.
    assert voc_ap(rec, prec, True) == pytest.approx((4 * 1 + 3 * 2 / 3) / 11)
    # Area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0 beyond -> 1/3 + 2/9.
    assert voc_ap(rec, prec, False) == pytest.approx(1 / 3 + 2 / 9)
    assert voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


@pytest.mark.parametrize(("hits", "ap"), [
    # The ports' thresholds np.arange(0.0, 1.1, 0.1) are 0, .1, .2, .30000000000000004, .4, .5,
    # .6000000000000001, .7000000000000001, .8, .9, 1. A PR curve at precision 1 that stops at
    # recall hits/10 (computed as hits / 10, like the ports' tp / float(npos)) reaches:
    (3, 3 / 11),   # 0, .1, .2 (3/10 = 0.29999999999999998890 < .30000000000000004)
    (6, 6 / 11),   # 0 ... .5 (6/10 misses .6000000000000001)
    (7, 7 / 11),   # 0 ... .6000000000000001 (7/10 misses .7000000000000001)
    (8, 9 / 11),   # 0 ... .8 (8/10 equals 0.8: reached)
    (10, 11 / 11),
])
def test_voc07_thresholds_are_the_ports(hits, ap):
    rec = np.arange(1, hits + 1) / 10
    assert voc_ap(rec, np.ones(hits), True) == pytest.approx(ap, abs=1e-12)


def test_issue_case_ten_positives_recall_three_tenths():
    # 10 positives, 3 detections that hit 3 of them at precision 1, nothing after: the ports
    # give 3/11 (the old 1e-12 tolerance gave 4/11).
    gt = coco_gt({i: [(1, (0, 0, 10, 10), 0)] for i in range(1, 11)}, {1: "a"})
    dets = [det(i, 1, (0, 0, 10, 10), 1.0 - i / 100) for i in (1, 2, 3)]
    out = evaluate_voc(gt, dets)
    assert out["ap_per_class"]["a"] == pytest.approx(100 * 3 / 11)
    assert out["map"] == pytest.approx(27.272727, abs=1e-5)


def test_evaluate_voc_by_hand():
    gt, dets = _hand_case()
    out = evaluate_voc(gt, dets, use_07_metric=True)
    assert out["ap_per_class"]["a"] == pytest.approx(100 * 6 / 11)
    # b: the difficult match is neither TP nor FP -> rec 0, 1; prec 0, 1 -> AP 1.
    assert out["ap_per_class"]["b"] == pytest.approx(100.0)
    assert out["ap_per_class"]["c"] is None  # no positives: undefined, left out of the mean
    assert out["map"] == pytest.approx((100 * 6 / 11 + 100) / 2)
    area = evaluate_voc(gt, dets, use_07_metric=False)
    assert area["ap_per_class"]["a"] == pytest.approx(100 * 5 / 9)


def test_difficult_counts_if_treated_as_normal():
    gt, dets = _hand_case()
    for a in gt["annotations"]:
        a["difficult"] = 0
    # b now has 2 positives, both found, the first at rank 1: AP 100 as well, but via TP+TP.
    assert evaluate_voc(gt, dets)["ap_per_class"]["b"] == pytest.approx(100.0)
    # Dropping the second b detection leaves recall 1/2: 11-point AP 6/11.
    out = evaluate_voc(gt, dets[:-1])
    assert out["ap_per_class"]["b"] == pytest.approx(100 * 6 / 11)


def test_iou_threshold_strict_and_no_detections():
    gt = coco_gt({1: [(1, (0, 0, 10, 10), 0)]}, {1: "a"})
    # IoU exactly 0.5: 50 / 100 (det inside the GT box, half its area) -> no match (the ports:
    # ovmax > ovthresh); IoU 0.51 -> match.
    assert evaluate_voc(gt, [det(1, 1, (0, 0, 10, 5), 1.0)])["map"] == 0.0
    assert evaluate_voc(gt, [det(1, 1, (0, 0, 10, 5.1), 1.0)])["map"] == pytest.approx(100.0)
    assert evaluate_voc(gt, [])["map"] == 0.0


def test_bad_results_raise():
    gt = coco_gt({1: [(1, (0, 0, 10, 10), 0)]}, {1: "a"})
    with pytest.raises(InputError, match="image 7"):
        evaluate_voc(gt, [det(7, 1, (0, 0, 1, 1), 1.0)])
    with pytest.raises(InputError, match="category 5"):
        evaluate_voc(gt, [det(1, 5, (0, 0, 1, 1), 1.0)])


# ---- an independent, loop-only version of the devkit's Python port (detectron2 voc_eval) ----

def _iou(a, b):
    """The port's "+1 pixel" IoU on its 1-based boxes: ours (x1, y1, x2, y2) exclusive is its
    (x1 + 1, y1 + 1, x2, y2) inclusive (what detectron2's evaluator writes)."""
    a = (a[0] + 1, a[1] + 1, a[2], a[3])
    b = (b[0] + 1, b[1] + 1, b[2], b[3])
    iw = max(min(a[2], b[2]) - max(a[0], b[0]) + 1.0, 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]) + 1.0, 0.0)
    inter = iw * ih
    return inter / ((a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0)
                    + (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0) - inter)


def _xyxy(bbox):
    return (bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3])


def _devkit_loop(gt, dets, use07, thr=0.5):
    aps = {}
    for c in gt["categories"]:
        cid = c["id"]
        objs = {}
        npos = 0
        for a in gt["annotations"]:
            if a["category_id"] == cid:
                objs.setdefault(a["image_id"], []).append(
                    {"box": _xyxy(a["bbox"]), "diff": bool(a["difficult"]), "det": False})
                npos += 0 if a["difficult"] else 1
        if npos == 0:
            aps[c["name"]] = None
            continue
        mine = sorted((d for d in dets if d["category_id"] == cid), key=lambda d: -d["score"])
        tp, fp = [], []
        for d in mine:
            ovmax, jmax = -1.0, None
            for j, g in enumerate(objs.get(d["image_id"], [])):
                ov = _iou(_xyxy(d["bbox"]), g["box"])
                if ov > ovmax:
                    ovmax, jmax = ov, j
            t = f = 0
            if jmax is not None and ovmax > thr:
                g = objs[d["image_id"]][jmax]
                if not g["diff"]:
                    if not g["det"]:
                        t, g["det"] = 1, True
                    else:
                        f = 1
            else:
                f = 1
            tp.append(t)
            fp.append(f)
        rec, prec, ct, cf = [], [], 0, 0
        for t, f in zip(tp, fp, strict=True):
            ct, cf = ct + t, cf + f
            rec.append(ct / npos)
            prec.append(ct / (ct + cf) if ct + cf else 0.0)
        if use07:
            ap = sum(max([p for r, p in zip(rec, prec, strict=True) if r >= t], default=0.0)
                     for t in np.arange(0.0, 1.1, 0.1)) / 11
        else:
            ap, prev_r = 0.0, 0.0
            for i, r in enumerate(rec):  # precision envelope: best precision at recall >= r
                if r > prev_r:
                    ap += (r - prev_r) * max(prec[i:])
                    prev_r = r
        aps[c["name"]] = 100 * ap
    valid = [v for v in aps.values() if v is not None]
    return (sum(valid) / len(valid) if valid else None), aps


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("use07", [True, False])
def test_matches_independent_loop_version(seed, use07):
    gt, dets = random_case(seed)
    ref_map, ref = _devkit_loop(gt, dets, use07)
    out = evaluate_voc(gt, dets, use_07_metric=use07)
    for name, v in ref.items():
        if v is None:
            assert out["ap_per_class"][name] is None
        else:
            assert out["ap_per_class"][name] == pytest.approx(v, abs=1e-6)
    assert (out["map"] is None) == (ref_map is None)
    if ref_map is not None:
        assert out["map"] == pytest.approx(ref_map, abs=1e-6)
