"""Dense grid, KMeans de-duplication, per-image extraction and pointing accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from weaksam.clues.store import ImageClues
from weaksam.prompts.cluster import cluster_points
from weaksam.prompts.evaluate import annotation_masks, pointing_hits
from weaksam.prompts.extract import image_prompts, map_peaks
from weaksam.prompts.grid import grid_points


def test_grid_points():
    g = grid_points(40, 20, 2)
    np.testing.assert_allclose(g, [[10, 5], [30, 5], [10, 15], [30, 15]])
    assert grid_points(7, 9, 3).shape == (9, 2)
    with pytest.raises(ValueError):
        grid_points(7, 9, 0)


def test_cluster_keeps_best_member_per_cluster():
    pts = np.array([[0, 0], [1, 0], [0, 1], [50, 50], [51, 50], [100, 0]], float)
    scores = np.array([0.5, 0.9, 0.7, 0.95, 0.96, 0.1])
    assert cluster_points(pts, scores, 3, seed=0).tolist() == [1, 4, 5]
    # fewer distinct locations than clusters: keep all (duplicates -> best one)
    dup = np.array([[3, 3], [3, 3], [9, 9]], float)
    assert cluster_points(dup, np.array([0.2, 0.8, 0.5]), 5).tolist() == [1, 2]
    assert cluster_points(np.zeros((0, 2)), np.zeros(0), 4).tolist() == []
    # deterministic
    rng = np.random.default_rng(0)
    p, s = rng.random((40, 2)) * 100, rng.random(40)
    assert cluster_points(p, s, 6, seed=1).tolist() == cluster_points(p, s, 6, seed=1).tolist()
    assert len(cluster_points(p, s, 6, seed=1)) == 6


def _clues() -> ImageClues:
    # 4 x 4 token maps of a 40 x 40 image, class 3: fine CAM peak at token (row 1, col 2)
    fine = np.zeros((1, 4, 4), np.float32)
    fine[0, 1, 2] = 1.0
    coarse = np.zeros((1, 4, 4), np.float32)
    coarse[0, 3, 0] = 1.0
    cross = np.zeros((1, 2, 4, 4), np.float32)
    cross[0, 0, 0, 0] = 1.0
    cross[0, 1, 0, 0] = 1.0  # same peak in both layers -> one point after de-duplication
    return ImageClues(image_id=5, width=40, height=40, classes=np.array([3]),
                      class_scores=np.array([0.9], np.float32), cam_coarse=coarse,
                      cam_fine=fine, cross=cross)


def test_map_peaks_upsampled_position():
    pts, idx, vals = map_peaks(_clues().cam_fine, 40, 40, kernel=9, tau=0.9)
    # token (row 1, col 2) covers pixels x in [20, 30), y in [10, 20): bilinear peak in there
    assert len(pts) >= 1 and idx.tolist() == [0] * len(pts)
    assert 20 <= pts[0, 0] <= 30 and 10 <= pts[0, 1] <= 20 and vals[0] == pytest.approx(1.0)


def test_image_prompts_all_sources():
    out = image_prompts(_clues(), grid=2, kernel=15, tau=0.9, cross_kernel=15, cross_tau=0.9,
                        cross_clusters=4)
    assert set(out) == {"dense", "cam_fine", "cam_coarse", "cross"}
    assert len(out["dense"]["x"]) == 4 and set(out["dense"]["class"]) == {-1}
    assert out["cam_fine"]["class"].tolist() == [3]
    assert out["cam_coarse"]["x"][0] < 10 and out["cam_coarse"]["y"][0] > 30
    assert len(out["cross"]["x"]) == 1 and out["cross"]["class"].tolist() == [3]
    empty = _clues()
    empty.cam_fine[:] = 0
    assert len(image_prompts(empty, grid=1, kernel=15, tau=0.9, cross_kernel=15, cross_tau=0.9,
                             cross_clusters=4)["cam_fine"]["x"]) == 0


def test_pointing_hits_and_masks():
    anns = [
        {"category_id": 1, "bbox": [0, 0, 4, 4],
         "segmentation": {"size": [10, 10], "counts": "0<h2"}},  # RLE: 0 off, 12 on, 88 off
        {"category_id": 2, "bbox": [5, 5, 3, 3], "segmentation": []},  # no mask -> box
    ]
    masks = annotation_masks(anns, 10, 10)
    # RLE is column-major: 12 pixels = column 0 (10 px) + column 1 rows 0-1
    assert masks[0].sum() == 12 and masks[0][1, 1] and not masks[0][2, 1]
    assert masks[1].sum() == 9 and masks[1][6, 6]
    pts = np.array([[1.5, 1.5], [1.5, 2.5], [6.2, 6.9], [6.2, 6.9]])
    cls = np.array([1, 1, 2, 1])
    assert pointing_hits(pts, cls, masks, np.array([1, 2])).tolist() == [True, False, True, False]


def test_release_kmeans_p_over_5_keeps_centroids():
    """clustering_generation.py: KMeans(n_clusters=max(1, P // 5), random_state=0) on all the
    image's peaks; the centroids (truncated to integer pixels by %d) are the prompts."""
    from weaksam.prompts.cluster import cluster_centroids, clusters_for

    assert clusters_for(4, 5) == 1 and clusters_for(10, 5) == 2 and clusters_for(14, 5) == 2
    # two groups of 5 peaks at pixel centres; group A's pixel indices average to (11.4, 20.0)
    a = np.array([[10, 20], [11, 20], [12, 20], [13, 20], [11, 20]], float) + 0.5
    b = np.array([[60, 60], [61, 61], [62, 62], [60, 62], [62, 60]], float) + 0.5
    pts = np.concatenate([a, b])
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.95, 0.2, 0.3, 0.1])
    cents, best = cluster_centroids(pts, scores, clusters_for(len(pts), 5), seed=0)
    np.testing.assert_allclose(cents, [[11.5, 20.5], [61.5, 61.5]])  # int(11.4)=11, int(61)=61
    assert best.tolist() == [2, 6]  # each cluster's best peak gives its class and score
    assert cluster_centroids(np.zeros((0, 2)), np.zeros(0), 3)[0].shape == (0, 2)
    # more clusters than distinct locations: capped
    dup = np.array([[3.5, 3.5]] * 4)
    assert len(cluster_centroids(dup, np.ones(4), 3)[0]) == 1


def test_image_prompts_release_cross_options():
    """P // 5 clusters and centroids through image_prompts; maps of every (layer, head) pooled."""
    clue = _clues()
    out = image_prompts(clue, grid=1, kernel=15, tau=0.9, cross_kernel=15, cross_tau=0.9,
                        cross_clusters=4, cross_points_per_cluster=5,
                        cross_representative="centroid")
    # 2 maps x 1 peak each at the same place -> P = 2 -> 1 cluster at that pixel
    assert len(out["cross"]["x"]) == 1 and out["cross"]["class"].tolist() == [3]
    assert out["cross"]["x"][0] % 1 == 0.5  # a pixel centre
    with pytest.raises(ValueError):
        image_prompts(clue, grid=1, kernel=15, tau=0.9, cross_kernel=15, cross_tau=0.9,
                      cross_clusters=4, cross_representative="mean")
