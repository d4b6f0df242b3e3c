"""The one-process world (no torch.distributed process group)."""

from __future__ import annotations

import torch.distributed as dist
from torch import nn

from weaksam.engine.world import any_rank, data_parallel, sum_over_ranks, world


def test_world_without_a_process_group_is_one_process():
    assert not (dist.is_available() and dist.is_initialized())
    assert world() == (0, 1)


def test_one_process_collectives_are_identities():
    model = nn.Linear(2, 1)
    assert data_parallel(model) is model
    assert any_rank(True) and not any_rank(False)
    key = "".join(["loss_", "mask"])  # a name object: the result keeps it (pickle memo)
    out = sum_over_ranks({key: 2.0, "a": 1.0})
    assert out == {"loss_mask": 2.0, "a": 1.0} and list(out) == ["loss_mask", "a"]
    assert next(iter(out)) is key
