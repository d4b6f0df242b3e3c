"""The learning-rate rules at known steps (hand-computed), and set_lr."""

from __future__ import annotations

import math

import pytest
import torch

from weaksam.engine.schedule import (
    set_lr,
    warmup_cosine_factor,
    warmup_cosine_floor_factor,
    warmup_cosine_floor_lr,
    warmup_multistep_factor,
    warmup_multistep_lr,
)


def test_warmup_multistep_lr_milestones_are_fractions_of_the_schedule():
    kw = dict(total=100, base_lr=0.02, warmup_iters=10, warmup_factor=0.001, lr_steps=(0.5, 0.8),
              gamma=0.1)
    assert warmup_multistep_lr(0, **kw) == pytest.approx(0.02 * 0.001)
    assert warmup_multistep_lr(5, **kw) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert warmup_multistep_lr(10, **kw) == 0.02
    assert warmup_multistep_lr(49, **kw) == 0.02
    assert warmup_multistep_lr(50, **kw) == pytest.approx(0.002)
    assert warmup_multistep_lr(80, **kw) == pytest.approx(0.0002)


def test_warmup_multistep_factor_drops_after_each_step():
    assert warmup_multistep_factor(0, [4, 6], 0.1, 2, 0.5) == 0.5
    assert warmup_multistep_factor(1, [4, 6], 0.1, 2, 0.5) == 0.75
    assert warmup_multistep_factor(3, [4, 6], 0.1, 2, 0.5) == 1.0
    assert warmup_multistep_factor(4, [4, 6], 0.1, 2, 0.5) == pytest.approx(0.1)
    assert warmup_multistep_factor(6, [4, 6], 0.1, 0, 0.5) == pytest.approx(0.01)


def test_warmup_cosine_factor_warmup_cosine_and_steps():
    assert warmup_cosine_factor(0, 10, 2) == 0.5
    assert warmup_cosine_factor(1, 10, 2) == 1.0
    assert warmup_cosine_factor(6, 10, 2) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine_factor(10, 10, 2) == pytest.approx(0.0)
    assert warmup_cosine_factor(20, 10, 2) == pytest.approx(0.0)  # clamped
    assert warmup_cosine_factor(0, 10, 2, lr_steps=[3], gamma=0.1) == 0.5
    assert warmup_cosine_factor(3, 10, 2, lr_steps=[3], gamma=0.1) == pytest.approx(0.1)


def test_warmup_cosine_floor_lr_ends_at_one_percent():
    assert warmup_cosine_floor_lr(0, 10, 1e-3, 4) == pytest.approx(2.5e-4)
    assert warmup_cosine_floor_lr(3, 10, 1e-3, 4) == pytest.approx(1e-3)
    assert warmup_cosine_floor_lr(7, 10, 1e-3, 4) == pytest.approx(
        1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert warmup_cosine_floor_lr(10, 10, 1e-3, 4) == pytest.approx(1e-5)
    assert warmup_cosine_floor_lr(0, 10, 1e-3, 0) == pytest.approx(1e-3)  # no warm-up


def test_set_lr_sets_every_group():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


def test_warmup_cosine_floor_factor_warms_up_then_decays_to_five_percent():
    assert warmup_cosine_floor_factor(0, 10, 2) == 0.5
    assert warmup_cosine_floor_factor(1, 10, 2) == 1.0
    assert warmup_cosine_floor_factor(2, 10, 2) == 1.0  # cosine starts at 1
    assert warmup_cosine_floor_factor(6, 10, 2) == pytest.approx(0.05 + 0.95 * 0.5)
    assert warmup_cosine_floor_factor(10, 10, 2) == pytest.approx(0.05)
    assert warmup_cosine_floor_factor(0, 10, 0) == 1.0  # no warm-up


def test_set_lr_applies_each_group_s_lr_factor():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [a], "lr_factor": 1.0},
                             {"params": [b], "lr_factor": 0.1}], lr=1.0)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5 * 0.1]
