"""The optimiser factory and one optimiser step."""

from __future__ import annotations

import pytest
import torch

from weaksam.engine.optim import make_optimizer, optimizer_step


def test_factory_builds_sgd_and_adamw_and_rejects_others():
    p = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(p, "sgd", 0.1, 0.9, 1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = make_optimizer(p, "adamw", 0.1, 0.9, 0.05)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="sgd or adamw"):
        make_optimizer(p, "adam", 0.1, 0.9, 0.0)


def test_step_clips_the_gradient_norm_then_steps():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    loss = (w * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4), norm 5
    calls = []
    optimizer_step(opt, loss, [w], grad_clip=1.0, reduce=lambda: calls.append(1))
    assert calls == [1]
    assert torch.allclose(w.detach(), torch.tensor([-0.6, -0.8]))
