"""Query drop mask (paper Eq. 3, appendix C) on hand-built per-query losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weaksam.retrain.query_drop import normalise_groups, per_query_bce, query_drop_mask


def test_things_drops_matched_queries_above_the_percentile() -> None:
    # 10 matched queries with losses 0.1 .. 1.0: 90th percentile (linear) = 0.91 -> only 1.0 drops
    loss = torch.tensor([0.1 * (i + 1) for i in range(10)] + [5.0, 9.0])
    fg = torch.tensor([True] * 10 + [False, False])
    keep = query_drop_mask(loss, fg, 90.0, "things")
    assert keep.tolist() == [True] * 9 + [False] + [True, True]  # background never drops


def test_all_ranks_every_query() -> None:
    loss = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    fg = torch.tensor([True, False, True, False, False])
    # 80th percentile of [0, 1, 2, 3, 4] = 3.2 -> the query with loss 4 (background) drops
    assert query_drop_mask(loss, fg, 80.0, "all").tolist() == [True, True, True, True, False]
    # things: candidates [0, 2], 80th percentile 1.6 -> the matched query with loss 2 drops
    assert query_drop_mask(loss, fg, 80.0, "things").tolist() == [True, True, False, True, True]


def test_percentile_100_keeps_all_and_0_keeps_the_minimum() -> None:
    loss = torch.tensor([0.3, 0.2, 0.9, 0.2])
    fg = torch.ones(4, dtype=torch.bool)
    assert query_drop_mask(loss, fg, 100.0).all()
    assert query_drop_mask(loss, fg, 0.0).tolist() == [False, True, False, True]  # ties kept


def test_no_candidates_keeps_everything() -> None:
    loss = torch.tensor([3.0, 1.0])
    assert query_drop_mask(loss, torch.zeros(2, dtype=torch.bool), 50.0, "things").all()
    empty = torch.zeros(0, dtype=torch.bool)
    assert query_drop_mask(torch.zeros(0), empty, 90.0, "all").numel() == 0


@pytest.mark.parametrize("queries", ["things", "all"])
@pytest.mark.parametrize("tau", [0.0, 37.5, 80.0, 90.0, 100.0])
def test_matches_numpy_linear_percentile(queries: str, tau: float) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        loss = rng.gamma(2.0, size=n).astype(np.float32)
        fg = rng.random(n) < 0.3
        cand = fg if queries == "things" else np.ones(n, bool)
        expect = np.ones(n, bool)
        if cand.any():
            thr = np.percentile(loss[cand].astype(np.float64), tau)  # linear interpolation
            expect[cand] = loss[cand] <= thr
        got = query_drop_mask(torch.from_numpy(loss), torch.from_numpy(fg), tau, queries)
        assert got.numpy().tolist() == expect.tolist()


def test_nan_loss_and_bad_arguments_raise() -> None:
    fg = torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="NaN"):
        query_drop_mask(torch.tensor([0.1, float("nan"), 0.3]), fg, 90.0)
    with pytest.raises(ValueError, match="percentile"):
        query_drop_mask(torch.tensor([0.1, 0.2, 0.3]), fg, 101.0)
    with pytest.raises(ValueError, match="queries"):
        query_drop_mask(torch.tensor([0.1, 0.2, 0.3]), fg, 90.0, "bkg")


def test_normalise_groups_min_max_per_group() -> None:
    loss = torch.tensor([2.0, 4.0, 3.0, 10.0, 30.0, 7.0])
    fg = torch.tensor([True, True, True, False, False, False])
    out = normalise_groups(loss, fg)
    assert torch.allclose(out, torch.tensor([0.0, 1.0, 0.5, 3 / 23, 1.0, 0.0]))
    # a constant group maps to 0
    assert normalise_groups(torch.tensor([5.0, 5.0]), torch.tensor([True, True])).tolist() == [0, 0]


def test_per_query_bce_is_unweighted_focal() -> None:
    # logit 0 everywhere: BCE log 2 per class whatever the target; C = 3 -> 3 log 2
    logits = torch.zeros(1, 2, 3)
    target = torch.tensor([[1, 3]])  # class 1, background
    assert torch.allclose(per_query_bce(logits, target), torch.full((1, 2), 3 * math.log(2)))
    # a confident correct foreground query has a lower loss than a confident wrong one
    logits = torch.tensor([[[-9.0, 9.0, -9.0], [9.0, -9.0, -9.0]]])
    loss = per_query_bce(logits, torch.tensor([[1, 1]]))
    assert loss[0, 0] < 1e-3 < 17.0 < loss[0, 1]
