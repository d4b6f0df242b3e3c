"""Adaptive PGT (paper Algorithm 2): hand-built cases with known answers, and a literal loop
transcription of the algorithm on random inputs."""

from __future__ import annotations

import numpy as np

from weaksam.pgt.adaptive import adaptive_class, adaptive_image, normalise_scores


def _literal(boxes, scores, cats, labels, tau_s=0.3, tau_o=0.85):
    """Algorithm 2 line by line (python loops), our 0/0 rule: max == min -> all scores 1."""
    kept = []
    for y in sorted(set(labels)):
        idx = [i for i in range(len(cats)) if cats[i] == y]
        if not idx:
            continue
        s = [scores[i] for i in idx]
        lo, hi = min(s), max(s)
        norm = [1.0 if hi == lo else (v - lo) / (hi - lo) for v in s]
        keep = [i for i, v in zip(idx, norm, strict=True) if v > tau_s]
        for j in keep:
            bj = boxes[j]
            area = max(0.0, bj[2] - bj[0]) * max(0.0, bj[3] - bj[1])
            ok = True
            for k in keep:
                if k == j:
                    continue
                bk = boxes[k]
                iw = max(0.0, min(bj[2], bk[2]) - max(bj[0], bk[0]))
                ih = max(0.0, min(bj[3], bk[3]) - max(bj[1], bk[1]))
                ov = iw * ih / area if area > 0 else 0.0
                if ov >= tau_o:
                    ok = False
            if ok:
                kept.append(j)
    return kept


def test_normalise_scores_min_max_and_equal_scores():
    np.testing.assert_allclose(normalise_scores([0.2, 0.6, 1.0]), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(normalise_scores([0.4]), [1.0])          # one box: 0/0 -> 1
    np.testing.assert_array_equal(normalise_scores([0.1, 0.1, 0.1]), [1.0, 1.0, 1.0])
    assert normalise_scores([]).shape == (0,)


def test_score_threshold_is_strict_and_relative():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], float)
    # normalised: 0, 0.3 (not > 0.3: dropped), 0.31, 1
    scores = np.array([0.10, 0.13, 0.131, 0.20])
    assert adaptive_class(boxes, scores).tolist() == [2, 3]
    # low absolute scores keep the class (the paper's point): same ranks, 100x smaller
    assert adaptive_class(boxes, scores / 100).tolist() == [2, 3]


def test_contained_box_dropped_container_kept():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [50, 50, 150, 150]], float)
    scores = np.array([1.0, 0.9, 0.8])
    # box 1 lies inside box 0 (ratio 1 >= 0.85); box 2 overlaps box 0 by 2500/10000 of itself
    assert adaptive_class(boxes, scores, tau_s=-1.0).tolist() == [0, 2]


def test_overlap_threshold_is_inclusive():
    # box 1 (area 100) has 85 px^2 inside box 0: exactly tau_o -> dropped
    boxes = np.array([[0, 0, 100, 100], [91.5, 0, 101.5, 10]], float)
    assert adaptive_class(boxes, np.array([1.0, 0.9]), tau_s=-1.0).tolist() == [0]
    boxes[1] = [91.6, 0, 101.6, 10]  # 84 / 100 < 0.85 -> kept
    assert adaptive_class(boxes, np.array([1.0, 0.9]), tau_s=-1.0).tolist() == [0, 1]


def test_overlaps_use_all_kept_boxes_even_dropped_ones():
    # A lies inside B only; B has 85 % of itself inside E; E is large. B is dropped (E), and A is
    # dropped too although its only container B is dropped itself (literal Algorithm 2: every
    # box is tested against all kept boxes); a sequential variant would have kept A.
    boxes = np.array([[0, 0, 1.6, 10], [0, 0, 10, 10], [1.5, 0, 30, 10]], float)
    assert adaptive_class(boxes, np.ones(3)).tolist() == [2]
    # two identical boxes drop each other: the class is lost (literal Algorithm 2)
    twins = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    assert adaptive_class(twins, np.array([0.9, 0.9])).tolist() == []


def test_one_box_and_all_equal_scores_are_kept():
    one = np.array([[5, 5, 20, 20]], float)
    assert adaptive_class(one, np.array([0.01])).tolist() == [0]
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]], float)
    assert adaptive_class(boxes, np.full(3, 0.2)).tolist() == [0, 1, 2]


def test_image_filters_unlabelled_classes_and_groups_by_label():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 5, 5]], float)
    scores = np.array([0.9, 0.95, 0.5, 0.2])
    cats = np.array([3, 7, 1, 3])  # class 7 is not labelled; class 5 is labelled, no detection
    out = adaptive_image(boxes, scores, cats, labels=[5, 3, 1])
    # class 1: its only box; class 3: box 3 has normalised score 0 -> dropped
    assert out.tolist() == [2, 0]
    assert adaptive_image(boxes, scores, cats, labels=[]).tolist() == []
    assert adaptive_image(np.zeros((0, 4)), [], [], labels=[1, 2]).tolist() == []


def test_matches_literal_algorithm_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 40, (n, 2))
        wh = rng.uniform(0, 30, (n, 2)) * (rng.random((n, 1)) > 0.05)  # a few zero-area boxes
        boxes = np.concatenate([xy, xy + wh], axis=1).round(rng.integers(0, 2))
        scores = rng.choice([0.1, 0.2, 0.5, 0.9], n) if rng.random() < 0.3 else rng.random(n)
        cats = rng.integers(1, 4, n)
        labels = [int(c) for c in rng.choice([1, 2, 3, 4], int(rng.integers(0, 4)), False)]
        tau_s, tau_o = (0.3, 0.85) if rng.random() < 0.5 else (rng.random(), rng.random())
        ours = adaptive_image(boxes, scores, cats, labels, tau_s, tau_o)
        assert ours.tolist() == _literal(boxes.tolist(), scores.tolist(), cats.tolist(), labels,
                                         tau_s, tau_o)
