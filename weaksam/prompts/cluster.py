"""De-duplication of instance-aware (cross-attention) prompts by KMeans (paper Sec. 3.1,
"WeakSAM Proposals Generation": the cross-attention prompts "have some redundancy, we cluster
them to filter the duplicated ones").

    points (P, 2) float (x, y) pixels, scores (P,) -> kept indices (K,) int64, K <= clusters

Each cluster is represented by its highest-scoring member (a real peak of a real map, so its
class and score stay defined), ties broken by the lower index. With at most ``clusters``
distinct locations every location is kept (one point per location: the best-scoring).
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
