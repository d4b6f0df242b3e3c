"""The resumable epoch loop (the shape of detectron2's ``TrainerBase`` with hooks, by epoch).

A trainer gives the epochs still to run (after the checkpoint it resumed from), a function
training one epoch and returning its named means, and hooks called in order after each epoch
(append to the history, save the checkpoint, log to DVCLive, ...). The loop draws no random
number: each trainer seeds its own generators per epoch, so resumed and unbroken runs agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Hook = Callable[[int, dict[str, float]], None]


@dataclass
class LoopTiming:
    """What :func:`run_epochs` measured: epochs run, wall and process CPU seconds."""

    epochs_run: int
    seconds: float
    cpu_seconds: float


def run_epochs(epochs: Iterable[int], train_epoch: Callable[[int], dict[str, float]],
               hooks: Sequence[Hook | None] = (),
               stop: Callable[[int], bool] | None = None) -> LoopTiming:
    """For each epoch of ``epochs``: ``means = train_epoch(epoch)``, then every hook (None
    skipped) ``hook(epoch, means)`` in order; after the hooks, ``stop(epoch)`` true ends the
    loop. Returns the epochs run and their wall / CPU time."""
    t0, c0 = time.time(), time.process_time()
    done = 0
    for epoch in epochs:
        means = train_epoch(epoch)
        for hook in hooks:
            if hook is not None:
                hook(epoch, means)
        done += 1
        if stop is not None and stop(epoch):
            break
    return LoopTiming(done, time.time() - t0, time.process_time() - c0)
