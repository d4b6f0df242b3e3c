"""The one-process world (no torch.distributed process group)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from tests.distributed import gloo_group
from weaksam.engine.world import (
    any_rank,
    data_parallel,
    sum_gradients_flagged,
    sum_over_ranks,
    world,
)


def test_world_without_a_process_group_is_one_process():
    assert not (dist.is_available() and dist.is_initialized())
    assert world() == (0, 1)


def test_one_process_collectives_are_identities():
    model = nn.Linear(2, 1)
    assert data_parallel(model) is model and data_parallel(model, torch.device("cpu")) is model
    assert any_rank(True) and not any_rank(False)
    key = "".join(["loss_", "mask"])  # a name object: the result keeps it (pickle memo)
    out = sum_over_ranks({key: 2.0, "a": 1.0})
    assert out == {"loss_mask": 2.0, "a": 1.0} and list(out) == ["loss_mask", "a"]
    assert next(iter(out)) is key


def test_sum_gradients_flagged_keeps_missing_gradients_none(tmp_path):
    a, b = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(3))
    a.grad = torch.arange(4.0).view(2, 2)
    with gloo_group(tmp_path / "init"):
        grads, extra = sum_gradients_flagged([a, b], torch.tensor([5.0, 7.0]))
    assert torch.equal(grads[0], a.grad) and grads[1] is None
    assert extra.tolist() == [5.0, 7.0]
    assert b.grad is None  # the sums are returned, not written
