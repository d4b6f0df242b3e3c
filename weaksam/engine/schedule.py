"""Learning-rate rules of the trainers, each a pure function of the 0-based global step (so a
resumed run continues exactly). Each keeps the float expression its trainer has always used:
reordering a product changes the last bit of the rate, and with it every weight.

- :func:`warmup_multistep_lr` (retraining): detectron2's ``WarmupMultiStepLR`` with milestones
  as fractions of the schedule, warm-up from ``warmup_factor``.
- :func:`warmup_multistep_factor` (WSOD): the same rule as a factor, milestones in steps.
- :func:`warmup_cosine_factor` (WSIS): warm-up from 1 / ``warmup``, then cosine to 0, or
  multistep at absolute steps.
- :func:`warmup_cosine_floor_lr` (CAM network): warm-up, then cosine to 1 % of the base rate.
- :func:`warmup_cosine_floor_factor` (small SAM): warm-up, then cosine to 5 % of the base rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr`` times its ``lr_factor`` (1 when the
    group has none): the backbone groups of :func:`weaksam.retrain.train.param_groups` (mmdet
    ``custom_keys`` lr_mult 0.1) and of the WSIS trainer (detectron2 ``BACKBONE_MULTIPLIER``)."""
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_factor"] if "lr_factor" in group else lr


def warmup_multistep_lr(step: int, total: int, base_lr: float, warmup_iters: int,
                        warmup_factor: float, lr_steps: Sequence[float], gamma: float) -> float:
    """Learning rate at ``step`` of ``total``: ``base_lr`` x ``gamma`` per milestone
    ``round(f * total)`` (f in ``lr_steps``) reached, times a linear warm-up from
    ``warmup_factor`` to 1 over ``warmup_iters`` steps."""
    lr = base_lr * gamma ** sum(step >= round(f * total) for f in lr_steps)
    if step < warmup_iters:
        alpha = step / warmup_iters
        lr *= warmup_factor * (1 - alpha) + alpha
    return lr


def warmup_multistep_factor(it: int, steps: Sequence[int], gamma: float, warmup_iters: int,
                            warmup_factor: float) -> float:
    """Factor of the base rate at step ``it``: linear warm-up from ``warmup_factor`` to 1 over
    ``warmup_iters`` steps, times ``gamma`` per milestone of ``steps`` passed (wetectron's
    ``WarmupMultiStepLR``; OICR's Caffe ``step`` policy is ``warmup_iters`` 0)."""
    warm = 1.0
    if it < warmup_iters:
        a = it / warmup_iters
        warm = warmup_factor * (1 - a) + a
    return warm * gamma ** bisect.bisect_right(list(steps), it)


def warmup_cosine_factor(step: int, total: int, warmup: int, lr_steps: Sequence[int] = (),
                         gamma: float = 0.1) -> float:
    """Factor of the base rate at ``step``: linear warm-up ``(step + 1) / warmup``, then cosine
    to 0 over ``total`` steps, or, with ``lr_steps``, ``gamma`` ** (number of lr_steps <= step)
    (detectron2 ``WarmupMultiStepLR``: the rate drops at iteration ``s`` itself)."""
    warm = (step + 1) / warmup if step < warmup else 1.0
    if lr_steps:
        return warm * gamma ** sum(1 for s in lr_steps if step >= s)
    if step < warmup:
        return warm
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def warmup_cosine_floor_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Learning rate at ``step``: linear warm-up for ``warmup`` steps, then cosine decay to 1 %
    of ``base_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def warmup_cosine_floor_factor(step: int, total: int, warmup: int) -> float:
    """Factor of the base rate at ``step`` (small SAM pre-training): linear warm-up
    ``(step + 1) / warmup``, then cosine decay from 1 to 0.05 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))
