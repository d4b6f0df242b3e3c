"""Shared WSIS test helpers: a short training schedule."""

from __future__ import annotations

from weaksam.wsis.train import InstanceTrainConfig


def schedule(**kw) -> InstanceTrainConfig:
    """A short SGD schedule (batch 3, lr 0.01, warm-up 2, clip 10, seed 0); ``kw`` overrides."""
    base = dict(epochs=1, batch_size=3, lr=0.01, weight_decay=1e-4, optimizer="sgd",
                warmup_steps=2, grad_clip=10.0, seed=0)
    return InstanceTrainConfig(**{**base, **kw})
