"""The optimiser factory the trainers share and one optimiser step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def make_optimizer(params: Sequence[nn.Parameter] | Sequence[dict[str, Any]], optimizer: str,
                   lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``, detectron2's) or ``adamw`` (decoupled ``weight_decay``) over
    ``params`` (parameters, or torch parameter-group dicts) in their order; anything else is a
    ValueError."""
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd or adamw, got {optimizer!r}")


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor,
                   params: Sequence[nn.Parameter] = (), grad_clip: float = 0.0,
                   scaler: torch.amp.GradScaler | None = None,
                   reduce: Callable[[], None] | None = None) -> None:
    """Zero the gradients, backpropagate ``loss``, call ``reduce`` (for example a gradient sum
    over processes), clip the norm of ``params``' gradients at ``grad_clip`` (0: no clipping)
    and step; with a ``scaler`` (CUDA mixed precision) scale, step and update through it."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return
    loss.backward()
    if reduce is not None:
        reduce()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
