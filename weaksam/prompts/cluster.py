"""De-duplication of instance-aware (cross-attention) prompts by KMeans (paper Sec. 3.1,
"WeakSAM Proposals Generation": the cross-attention prompts "have some redundancy, we cluster
them to filter the duplicated ones").

    points (P, 2) float (x, y) pixels, scores (P,) -> kept indices (K,) int64, K <= clusters

Two representatives of a cluster:
- :func:`cluster_points` (``"member"``): its highest-scoring member (a real peak of a real map,
  so its class and score stay defined), ties broken by the lower index. With at most
  ``clusters`` distinct locations every location is kept (one point per location: the best).
- :func:`cluster_centroids` (``"centroid"``, the authors' release,
  ``roi_generation/WeakTr/clustering_generation.py``): ``KMeans(n_clusters=max(1, P // 5),
  random_state=0, n_init="auto")`` on all P peaks of an image (every class, layer and head
  pooled) and its ``cluster_centers_`` written as integer pixel indices (``%d``, so truncated).
  Here a centroid is reported at the centre of that pixel; its class and score are those of
  the cluster's best member (the release writes class 0 and score 1.0, which nothing reads).

    clusters_for(P, per_cluster): the release's cluster count max(1, P // per_cluster)
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits


def _best_per_group(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    keep = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        keep.append(members[np.argmax(scores[members])])  # argmax: first of ties
    return np.sort(np.asarray(keep, dtype=np.int64))


def cluster_points(
    points: np.ndarray, scores: np.ndarray, clusters: int, seed: int = 0, n_init: int = 4
) -> np.ndarray:
    """Indices of the points kept after KMeans with ``clusters`` clusters
    (``random_state=seed``, ``n_init`` restarts). Sorted ascending."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(pts) != len(sc):
        raise ValueError("points and scores differ in length")
    if clusters < 1:
        raise ValueError(f"clusters must be >= 1, got {clusters}")
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    _, loc = np.unique(pts, axis=0, return_inverse=True)
    loc = loc.reshape(-1)
    if loc.max() + 1 <= clusters:
        return _best_per_group(loc, sc)
    with threadpool_limits(1):  # tiny problems: thread start-up costs more than it saves
        km = KMeans(n_clusters=clusters, random_state=seed, n_init=n_init)
        labels = km.fit_predict(pts)
    return _best_per_group(labels, sc)


def clusters_for(num_points: int, per_cluster: int) -> int:
    """The release's cluster count: ``max(1, P // per_cluster)`` (P // 5 in
    ``clustering_generation.py``)."""
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    return max(1, num_points // per_cluster)


def cluster_centroids(
    points: np.ndarray, scores: np.ndarray, clusters: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """KMeans centroids of ``points (P, 2)`` (x, y) pixel centres, as the release keeps them.

    ``KMeans(clusters, random_state=seed, n_init=1)`` (sklearn's ``n_init="auto"`` with
    k-means++ is one run); ``clusters`` is capped at the number of distinct locations. Each
    centroid is truncated to its integer pixel index (the release's ``%d``) and reported at that
    pixel's centre ``floor(c - 0.5) + 0.5``. Returns ``(centroids (K, 2) float32, best (K,)
    int64)``, ``best[k]`` the index of cluster k's highest-scoring member (first of ties);
    clusters ordered by their best member's index."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(pts) != len(sc):
        raise ValueError("points and scores differ in length")
    if clusters < 1:
        raise ValueError(f"clusters must be >= 1, got {clusters}")
    if len(pts) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    k = min(clusters, len(np.unique(pts, axis=0)))
    with threadpool_limits(1):
        km = KMeans(n_clusters=k, random_state=seed, n_init=1).fit(pts)
    labels = km.labels_
    cents, best = [], []
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        best.append(members[np.argmax(sc[members])])
        cents.append(np.floor(km.cluster_centers_[g] - 0.5) + 0.5)
    order = np.argsort(best, kind="stable")
    return (np.asarray(cents, np.float32).reshape(-1, 2)[order],
            np.asarray(best, np.int64)[order])
