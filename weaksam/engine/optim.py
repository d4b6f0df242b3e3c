"""The optimiser factory the trainers share and one optimiser step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def lr_factor_groups(model: nn.Module, factor: float, in_group: Callable[[str], bool]
                     ) -> list[nn.Parameter] | list[dict[str, Any]]:
    """The trainable parameters of ``model`` in their order; with ``factor`` != 1, two optimiser
    groups: the parameters whose name satisfies ``in_group`` (a backbone) with ``lr_factor`` =
    ``factor`` and the rest with 1 (:func:`weaksam.engine.schedule.set_lr` applies them; an
    empty group is left out). With 1, the plain list: the optimiser state of the default
    profile stays as it was."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if factor == 1.0:
        return [p for _, p in named]
    groups = [{"params": [p for n, p in named if not in_group(n)], "lr_factor": 1.0},
              {"params": [p for n, p in named if in_group(n)], "lr_factor": float(factor)}]
    return [g for g in groups if g["params"]]


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
    and step; with a ``scaler`` (CUDA mixed precision) the loss is scaled, the gradients
    unscaled before clipping (torch.amp's documented order), the step and update go through it."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if reduce is not None:
            reduce()
        if grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(opt)
        scaler.update()
        return
    loss.backward()
    if reduce is not None:
        reduce()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


def autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision when ``enabled``: float16 autocast on a CUDA ``device`` (to be used with
    a ``torch.amp.GradScaler``), bfloat16 autocast on the CPU (no loss scaling needed, so a dry
    run of a paper profile executes the ``amp`` path here). A no-op when not enabled."""
    if not enabled:
        return contextlib.nullcontext()
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
