"""Adaptive pseudo ground truth: paper Algorithm 2 (Sec. 3.2; appendix H: tau_s 0.3, tau_o 0.85).

Shorthand: N detections of one image, D of one class. ``boxes: (N, 4)`` float xyxy in pixels,
``scores: (N,)`` WSOD scores in [0, 1] (any finite real works), ``cats: (N,)`` int category ids.

Algorithm 2, per image, for each class y of the image-level label set Y:
1. B_y, S_y = the detections of class y (detections of classes outside Y are never used);
2. S_norm = (S_y - min S_y) / (max S_y - min S_y)                     (lines 5-7);
3. keep the boxes with S_norm > tau_s (strictly)                     (lines 8-11);
4. among the kept boxes, keep box j only when |b_j ∩ b_k| / |b_j| < tau_o for EVERY other kept
   box k != j of the class (lines 13-17). The overlaps are taken against all kept boxes,
   including boxes that this same step drops (the algorithm has no order: every box is tested
   against the same set), so two near-identical boxes drop each other.

Where the paper is undefined, and what we do (docs/fidelity.md, "Pseudo ground truth"):
- max S_y == min S_y (one box, or all scores equal): 0 / 0. We give every box of the class the
  normalised score 1, so all are kept at step 3 and the class is never lost there. The authors'
  release (hustvl/WeakSAM ``retraining/SoS-WSOD/tools/adaptive_pgt.py``, function ``pgt``)
  divides by ``max - min + 1e-8`` without subtracting the minimum, which also keeps all such
  boxes (score / 1e-8 > tau_s for any positive score), and it always keeps the first box of a
  class (SoS-WSOD's ``pgf``); so "keep all" is what the release does.
- a zero-area box: |b_j ∩ b_k| / |b_j| is 0 / 0; we use 0 (the box is not dropped for
  containment), as ``weaksam.utils.boxes.box_intersection_over_self`` and the release's
  ``area_c / (area_a + 1e-6)`` do.
Step 4 can drop every kept box of a class (mutually contained near-duplicates); the paper's
algorithm does that, so we do too, and :mod:`weaksam.pgt.metrics` counts such labelled classes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from weaksam.utils.boxes import box_intersection_over_self

TAU_S = 0.3   # appendix H: score threshold
TAU_O = 0.85  # appendix H: overlap (containment) threshold


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Min-max normalised ``scores (D,)`` -> ``(D,)`` float64 in [0, 1] (Algorithm 2, line 7).

    max == min (one box, or all scores equal; 0 / 0 in the paper): every box gets 1.0.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) == 0:
        return s
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.ones_like(s)
    return (s - lo) / (hi - lo)


def adaptive_class(
    boxes: np.ndarray, scores: np.ndarray, tau_s: float = TAU_S, tau_o: float = TAU_O
) -> np.ndarray:
    """Algorithm 2 on the detections of ONE labelled class of one image.

    ``boxes (D, 4)`` xyxy px, ``scores (D,)`` -> ``(K,)`` int64 indices into the D boxes, in
    ascending (input) order, of the boxes kept as pseudo ground truth.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    keep = np.flatnonzero(normalise_scores(s) > tau_s)
    if len(keep) <= 1:
        return keep.astype(np.int64)
    overlaps = box_intersection_over_self(b[keep], b[keep])  # (K, K): row j = |b_j ∩ b_k| / |b_j|
    np.fill_diagonal(overlaps, -np.inf)  # k != j
    contained = (overlaps >= tau_o).any(axis=1)
    return keep[~contained].astype(np.int64)


def adaptive_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    cats: np.ndarray,
    labels: Iterable[int],
    tau_s: float = TAU_S,
    tau_o: float = TAU_O,
) -> np.ndarray:
    """Algorithm 2 on one image: ``boxes (N, 4)``, ``scores (N,)``, ``cats (N,)`` and the
    image-level label set ``labels`` (category ids) -> ``(K,)`` int64 indices into the N
    detections, grouped by label in ascending id order, input order inside a label.

    Detections of classes outside ``labels`` are removed first; a labelled class without any
    detection contributes nothing.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(cats).reshape(-1)
    out = []
    for y in sorted({int(v) for v in labels}):
        idx = np.flatnonzero(c == y)
        if len(idx):
            out.append(idx[adaptive_class(b[idx], s[idx], tau_s, tau_o)])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
