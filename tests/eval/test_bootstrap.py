"""Paired bootstrap over images (weaksam/eval/bootstrap.py): point estimates equal the project's
evaluators, known answers (identical sides, a one-sided case), weighted resamples equal the
evaluators on literally duplicated images, seeding, and order."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.conftest import coco_gt, det, random_case
from weaksam.eval.bootstrap import (
    Interval,
    corloc_stats,
    interval,
    paired_difference,
    pgt_recall_stats,
    point,
    recall_stats,
    resample_weights,
    voc_ap_stats,
    voc_mask_ap_stats,
)
from weaksam.eval.corloc import corloc
from weaksam.eval.mask_ap import encode_mask, evaluate_voc_masks
from weaksam.eval.recall import proposal_recall
from weaksam.eval.voc import evaluate_voc
from weaksam.pgt.metrics import pgt_quality
from weaksam.proposals.store import ImageProposals, ProposalSet


def _duplicate(gt: dict, results: list[dict], counts: np.ndarray) -> tuple[dict, list[dict]]:
    """The split in which image i appears ``counts[i]`` times (new ids), literally."""
    images, anns, dets = [], [], []
    ids = [int(im["id"]) for im in gt["images"]]
    for i, iid in enumerate(ids):
        for k in range(int(counts[i])):
            new = 1000 * (k + 1) + iid
            images.append({**next(im for im in gt["images"] if im["id"] == iid), "id": new})
            anns += [{**a, "id": len(anns) + 1, "image_id": new}
                     for a in gt["annotations"] if a["image_id"] == iid]
            dets += [{**r, "image_id": new} for r in results if r["image_id"] == iid]
    return {**gt, "images": images, "annotations": anns}, dets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_07", [True, False])
def test_point_estimate_is_the_evaluators_ap_exactly(seed, use_07):
    gt, dets = random_case(seed, n_images=8)
    stats = voc_ap_stats(gt, dets, use_07_metric=use_07)
    ref = evaluate_voc(gt, dets, use_07_metric=use_07)["map"]
    assert point(stats) == ref
    if use_07:  # the vectorised path, all weights 1, is the same arithmetic
        assert stats.value(np.ones((1, 8)))[0] == ref


@pytest.mark.parametrize("seed", range(4))
def test_weighted_resample_equals_the_evaluator_on_duplicated_images(seed):
    gt, dets = random_case(seed, n_images=7)
    # distinct scores: with ties across images the literal copy's order among them is arbitrary
    dets = [{**r, "score": r["score"] + 1e-6 * k} for k, r in enumerate(dets)]
    counts = np.random.default_rng(seed).integers(0, 3, size=7)
    counts[0] = max(counts[0], 1)
    dgt, ddets = _duplicate(gt, dets, counts)
    for use_07 in (True, False):
        got = voc_ap_stats(gt, dets, use_07_metric=use_07).value(counts[None].astype(float))[0]
        ref = evaluate_voc(dgt, ddets, use_07_metric=use_07)["map"]
        assert got == pytest.approx(ref, abs=1e-9)
    got = corloc_stats(gt, dets).value(counts[None].astype(float))[0]
    assert got == pytest.approx(corloc(dgt, ddets)["mean"], abs=1e-9)


def test_identical_detections_give_a_zero_width_interval_at_zero():
    gt, dets = random_case(1, n_images=8)
    a, b = voc_ap_stats(gt, dets), voc_ap_stats(gt, list(dets))
    d = paired_difference(a, b, resample_weights(8, 1000, seed=0))
    assert d == Interval(0.0, 0.0, 0.0)


def _one_sided_case(n_images: int = 40, n_cats: int = 3):
    """Every image has one object; the good side finds each (score 0.9) and adds a low false
    positive, the bad side's top box misses it and its hit has a lower score."""
    rng = np.random.default_rng(0)
    cats = {c: f"c{c}" for c in range(1, n_cats + 1)}
    images, good, bad = {}, [], []
    for iid in range(1, n_images + 1):
        cid = int(rng.integers(1, n_cats + 1))
        x, y = (float(v) for v in rng.uniform(0, 50, size=2))
        box = (x, y, x + 30, y + 30)
        images[iid] = [(cid, box, 0)]
        far = (x + 35, y + 35, x + 45, y + 45) if x < 50 else (0, 0, 5, 5)
        good += [det(iid, cid, box, 0.9), det(iid, cid, far, 0.1)]
        bad += [det(iid, cid, far, 0.9), det(iid, cid, box, 0.1 + 0.001 * iid)]
    return coco_gt(images, cats), good, bad


def test_one_sided_case_gives_an_interval_above_zero():
    gt, good, bad = _one_sided_case()
    w = resample_weights(40, 1000, seed=3)
    d = paired_difference(voc_ap_stats(gt, good), voc_ap_stats(gt, bad), w)
    assert d.point > 0 and d.low > 0
    c = paired_difference(corloc_stats(gt, good), corloc_stats(gt, bad), w)
    assert c == Interval(100.0, 100.0, 100.0)  # every top box right against every one wrong
    r = paired_difference(voc_ap_stats(gt, bad), voc_ap_stats(gt, good), w)
    assert r.high < 0  # the other way round: reversed


def test_seeded_intervals_repeat_and_seeds_differ():
    gt, dets = random_case(2, n_images=10)
    s = voc_ap_stats(gt, dets)
    a = interval(s, resample_weights(10, 500, seed=7))
    assert a == interval(s, resample_weights(10, 500, seed=7))
    assert a != interval(s, resample_weights(10, 500, seed=8))
    assert a.low <= a.point <= a.high


def test_resample_weights_draw_n_images_each():
    w = resample_weights(13, 50, seed=0)
    assert w.shape == (50, 13) and (w.sum(axis=1) == 13).all()


def test_sides_on_other_images_are_refused():
    gt, dets = random_case(0, n_images=5)
    gt2, dets2 = random_case(0, n_images=6)
    with pytest.raises(ValueError, match="same images"):
        paired_difference(voc_ap_stats(gt, dets), voc_ap_stats(gt2, dets2),
                          resample_weights(5, 10))


def test_corloc_recall_and_pgt_points_equal_their_evaluators():
    gt, dets = random_case(4, n_images=9)
    assert point(corloc_stats(gt, dets)) == corloc(gt, dets)["mean"]
    props = ProposalSet(["ss"])
    by_img: dict[int, list] = {}
    for r in dets:
        x, y, w, h = r["bbox"]
        by_img.setdefault(r["image_id"], []).append([x, y, x + w, y + h])
    for im in gt["images"]:
        b = np.asarray(by_img.get(im["id"], []), dtype=np.float32).reshape(-1, 4)
        props.images[im["id"]] = ImageProposals(b, np.ones(len(b), np.float32),
                                                np.zeros(len(b), np.uint8))
    rec, num = recall_stats(gt, lambda i: props.images[i].boxes, (0.5, 0.75))
    ref = proposal_recall(gt, props, (0.5, 0.75))
    assert point(rec[0.5]) == pytest.approx(ref["recall@0.5"], abs=1e-12)
    assert point(rec[0.75]) == pytest.approx(ref["recall@0.75"], abs=1e-12)
    assert point(num) == pytest.approx(ref["num_per_image"], abs=1e-12)
    pgt = {"annotations": [{**r, "id": k} for k, r in enumerate(dets)]}
    assert point(pgt_recall_stats(gt, pgt)) == pytest.approx(pgt_quality(pgt, gt)["recall"],
                                                             abs=1e-12)


def test_mask_ap_point_equals_the_voc_mask_evaluator():
    rng = np.random.default_rng(0)
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    images, anns, preds = [], [], []
    for iid in range(1, 6):
        images.append({"id": iid, "width": 24, "height": 20})
        for cid in (1, 2):
            m = np.zeros((20, 24), bool)
            y, x = rng.integers(0, 10), rng.integers(0, 12)
            m[y:y + 8, x:x + 10] = True
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cid,
                         "segmentation": encode_mask(m), "iscrowd": 0, "difficult": 0})
            p = np.roll(m, int(rng.integers(-4, 5)), axis=1)
            preds.append({"image_id": iid, "category_id": cid, "segmentation": encode_mask(p),
                          "score": float(rng.random())})
    gt = {"images": images, "categories": cats, "annotations": anns}
    thrs = (0.25, 0.5, 0.7)
    ref = evaluate_voc_masks(gt, preds, thrs)
    stats = voc_mask_ap_stats(gt, preds, thrs)
    for t, key in zip(thrs, ("ap25", "ap50", "ap70"), strict=True):
        assert point(stats[t]) == ref[key]
        assert stats[t].value(np.ones((1, 5)))[0] == pytest.approx(ref[key], abs=1e-9)


def test_1000_resamples_of_200_images_and_10_classes_see_no_order():
    rng = np.random.default_rng(0)
    cats = {c: f"c{c}" for c in range(1, 11)}
    images, dets = {}, []
    for iid in range(1, 201):
        objs = []
        for _ in range(3):
            cid = int(rng.integers(1, 11))
            x, y = (float(v) for v in rng.uniform(0, 60, 2))
            objs.append((cid, (x, y, x + 30, y + 30), 0))
        images[iid] = objs
        for _ in range(100):  # max_det-like: 100 detections per image
            cid = int(rng.integers(1, 11))
            x, y = (float(v) for v in rng.uniform(0, 60, 2))
            dets.append(det(iid, cid, (x, y, x + 30, y + 30), float(rng.random())))
    gt = coco_gt(images, cats)
    stats = voc_ap_stats(gt, dets)
    d = paired_difference(stats, voc_ap_stats(gt, dets[::-1]), resample_weights(200, 1000, 0))
    # the same detections in another order (distinct scores): zero on every resampled set
    assert d is not None and (d.point, d.low, d.high) == (0.0, 0.0, 0.0)
