"""Algorithm 1 against a literal transcription of the paper's pseudo-code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weaksam.prompts.peaks import find_peaks, local_maxima, prepare_maps, suppress


def literal_algorithm1(m: np.ndarray, k: int, tau: float) -> list[tuple[int, int, float]]:
    """Paper Algorithm 1, line by line, with plain Python loops (one map).

    Line 4 "P, V = Maxpool(M)": pixels equal to the max of the k x k window around them,
    window = (k-1)//2 before and k//2 after, clipped at the border.
    """
    h, w = m.shape
    b, a = (k - 1) // 2, k // 2
    P, V = [], []  # noqa: N806 - the paper's names
    for y in range(h):
        for x in range(w):
            win = m[max(0, y - b) : y + a + 1, max(0, x - b) : x + a + 1]
            if m[y, x] == win.max():
                P.append((x, y))
                V.append(float(m[y, x]))
    # line 5: sort V descending, rearrange P (Python's sort is stable: raster order on ties)
    order = sorted(range(len(V)), key=lambda i: -V[i])
    P = [P[i] for i in order]  # noqa: N806
    V = [V[i] for i in order]  # noqa: N806
    P_delete = []  # noqa: N806
    for i in range(len(P)):
        if P[i] in P_delete:
            continue
        if V[i] < tau:
            P_delete.append(P[i])
            continue
        for j in range(i + 1, len(P)):
            if math.dist(P[j], P[i]) <= k / 2:
                P_delete.append(P[j])
    return [(p[0], p[1], v) for p, v in zip(P, V, strict=True) if p not in P_delete]


def _ours(m: np.ndarray, k: int, tau: float) -> list[tuple[int, int, float]]:
    pts, vals = find_peaks(torch.from_numpy(m)[None], k, tau)[0]
    return [(int(x), int(y), float(v)) for (x, y), v in zip(pts, vals, strict=True)]


def test_hand_built_example():
    # two bumps 6 px apart and a third far away; k=5 -> radius 2.5: all three survive
    m = np.zeros((10, 12), np.float32)
    m[2, 2], m[2, 8], m[8, 10] = 1.0, 0.95, 0.5
    assert _ours(m, 5, 0.9) == [(2, 2, 1.0), (8, 2, pytest.approx(0.95))]
    # k=13 -> radius 6.5: (8,2) is within 6 of (2,2) -> suppressed; (10,8) below tau anyway
    assert _ours(m, 13, 0.4) == [(2, 2, 1.0)]
    # with a big window (8,2) is not even a local max of its window... k=3: all three peaks
    assert [p[:2] for p in _ours(m, 3, 0.4)] == [(2, 2), (8, 2), (10, 8)]


def test_deleted_points_do_not_suppress():
    # A (1.0) at x=0, B (0.99) at x=3, C (0.98) at x=6; radius 3 (k=7 on a 1-row map with
    # local maxima forced by k=1 peaks). A deletes B (distance 3); B is deleted, so it must
    # NOT delete C (distance 3 from B, 6 from A): C survives.
    m = np.zeros((1, 7), np.float32)
    m[0, 0], m[0, 3], m[0, 6] = 1.0, 0.99, 0.98
    pts = torch.tensor([[0, 0], [3, 0], [6, 0]])
    assert suppress(pts, 3.0).tolist() == [True, False, True]
    assert literal_algorithm1(m, 1, 0.5) == _ours(m, 1, 0.5)  # k=1: radius 0.5, all kept


def test_tau_inclusive_and_empty():
    m = np.zeros((6, 6), np.float32)
    m[3, 3] = 0.9
    assert _ours(m, 3, 0.9) == [(3, 3, pytest.approx(0.9))]  # v == tau is kept
    assert _ours(np.zeros((6, 6), np.float32), 3, 0.9) == []
    z = prepare_maps(np.zeros((2, 4, 4), np.float32), 8, 8)
    assert float(z.abs().sum()) == 0.0
    assert all(len(p) == 0 for p, _ in find_peaks(z, 3, 0.9))
    assert find_peaks(torch.zeros((0, 5, 5)), 3, 0.9) == []


def test_ties_are_raster_ordered_and_plateau():
    m = np.zeros((5, 9), np.float32)
    m[1, 6] = m[3, 1] = 1.0  # equal values: (6,1) comes first in raster order
    assert [p[:2] for p in _ours(m, 3, 0.5)] == [(6, 1), (1, 3)]
    plateau = np.zeros((4, 4), np.float32)
    plateau[1:3, 1:3] = 1.0  # 4 equal maxima; first (1,1) suppresses the rest at k=3
    assert [p[:2] for p in _ours(plateau, 3, 0.5)] == [(1, 1)]
    assert literal_algorithm1(plateau, 3, 0.5) == _ours(plateau, 3, 0.5)


def test_local_maxima_even_kernel_window():
    m = torch.zeros((1, 1, 6))
    m[0, 0, 2], m[0, 0, 4] = 1.0, 0.8
    # k=4: window of x=4 spans [3, 6) -> 4 is a max; window of x=2 spans [1, 4] (after=2) -> max
    assert local_maxima(m, 4)[0, 0].nonzero().flatten().tolist() == [2, 4]
    # k=3 at x=4: window [3, 5] -> also a max; k=5 at x=4: window [2, 6] holds 1.0 -> not
    assert local_maxima(m, 5)[0, 0].nonzero().flatten().tolist() == [2]


def test_prepare_maps_minmax_and_upsample():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]]])
    out = prepare_maps(maps, 2, 2)
    assert torch.allclose(out, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    up = prepare_maps(maps, 6, 4)
    assert up.shape == (1, 6, 4) and float(up.min()) == 0.0 and float(up.max()) == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_matches_literal_on_random_maps(k):
    rng = np.random.default_rng(1234 + k)
    for trial in range(40):
        h, w = rng.integers(3, 16, size=2)
        if trial % 4 == 0:  # many ties: quantised values
            m = rng.integers(0, 4, size=(h, w)).astype(np.float32) / 3.0
        elif trial % 4 == 1:  # smooth maps: upsampled then min-max normalised
            m = prepare_maps(rng.random((1, 3, 3)).astype(np.float32), int(h), int(w))[0].numpy()
        elif trial % 4 == 2:
            m = np.zeros((h, w), np.float32)  # empty
        else:
            m = rng.random((h, w)).astype(np.float32)
        tau = float(rng.choice([0.0, 0.3, 0.5, 0.9, 1.0]))
        assert _ours(m, k, tau) == literal_algorithm1(m, k, tau), (trial, k, tau)


def _dense_suppress(pts: np.ndarray, radius: float) -> np.ndarray:
    """Lines 7-23 with the full P x P distance matrix (the implementation before the grid)."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(pts), dtype=bool)
    near = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1) <= radius * radius
    for i in range(len(pts)):
        if keep[i]:
            keep[i + 1 :] &= ~near[i, i + 1 :]
    return keep


@pytest.mark.parametrize("radius", [0.0, 0.5, 1.0, 1.5, 2.0, 3.5, 6.5, 20.0])
def test_suppress_equals_the_dense_distance_matrix(radius):
    rng = np.random.default_rng(int(radius * 10))
    for trial in range(30):
        n = int(rng.integers(0, 300))
        if trial % 3 == 0:  # integer pixels, many duplicates and exact-radius pairs
            pts = rng.integers(-5, 25, size=(n, 2)).astype(np.int64)
        elif trial % 3 == 1:  # non-integer coordinates, boundaries of cells
            pts = rng.random((n, 2)) * 40 - 10
        else:  # exact multiples of the radius along a line and a lattice
            pts = np.stack([np.arange(n) * radius, (np.arange(n) % 3) * radius], 1)
        assert suppress(pts, radius).tolist() == _dense_suppress(pts, radius).tolist(), trial


def test_plateau_of_a_full_resolution_map_needs_no_pairwise_matrix():
    # the paper_voc07 full dry run: one 375 x 500 map whose every pixel but one is its
    # maximum (a saturated random-weight map) -> 187,499 plateau peaks; the P x P matrix of
    # the old suppression needed 444 GiB. Kept points: the plateau thinned on a lattice.
    m = torch.ones(1, 375, 500)
    m[0, 0, 0] = 0.0
    pts, vals = find_peaks(m, kernel=7, tau=0.5)[0]
    assert len(pts) > 1000 and (vals == 1.0).all()
    d2 = ((pts[:200, None, :] - pts[None, :200, :]) ** 2).sum(-1)
    assert (d2[~np.eye(200, dtype=bool)] > 3.5 ** 2).all()  # no two kept within k / 2
