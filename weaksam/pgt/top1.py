"""Top-1 pseudo ground truth: the top-scoring detection of each labelled class (paper Table 5,
first row: "uses the predicted boxes with the top-1 score as PGT"; Sec. 4.3).

Shorthand: N detections of one image; ``scores: (N,)``, ``cats: (N,)`` int category ids.

Ties (several detections of a class with the same highest score): the first in input (file)
order, as ``np.argmax`` and the authors' release (``pgt_topk`` with topk 1: a stable sort by
descending score, then the first of each class) do. The release also skips boxes whose score is
not > 0; a WSOD run's detections here are all above its ``score_thresh`` (> 0), so we keep the
top box whatever its score.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def top1_image(scores: np.ndarray, cats: np.ndarray, labels: Iterable[int]) -> np.ndarray:
    """``scores (N,)``, ``cats (N,)`` and the image-level label set ``labels`` (category ids)
    -> ``(K,)`` int64 indices into the N detections: for each labelled class with at least one
    detection (ascending class id), its highest-scoring one (first in input order on ties)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(cats).reshape(-1)
    if len(s) != len(c):
        raise ValueError(f"{len(s)} scores but {len(c)} categories")
    out = []
    for y in sorted({int(v) for v in labels}):
        idx = np.flatnonzero(c == y)
        if len(idx):
            out.append(int(idx[np.argmax(s[idx])]))
    return np.asarray(out, dtype=np.int64)
