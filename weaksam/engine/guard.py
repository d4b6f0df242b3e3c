"""The non-finite loss check every trainer runs before its optimiser step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from weaksam.errors import TrainingError


def nonfinite_error(total: float, *, stage: str, epoch: int, step: int,
                    losses: Mapping[str, float] | None = None,
                    checkpoint: str | Path | None = None) -> TrainingError:
    """The error of a non-finite step: it names the stage, its epoch and step, the step's loss
    ``total`` and named ``losses``, and the checkpoint left as it was."""
    named = "" if losses is None else f" ({ {k: float(v) for k, v in losses.items()} })"
    kept = "" if checkpoint is None else f"; last good checkpoint kept at {checkpoint}"
    return TrainingError(f"{stage}: non-finite loss {total} at epoch {epoch}, step {step}"
                         f"{named}{kept}")


def check_finite(total: float, *, stage: str, epoch: int, step: int,
                 losses: Mapping[str, float] | None = None,
                 checkpoint: str | Path | None = None) -> None:
    """Raise :func:`nonfinite_error` when ``total`` (the step's loss) is NaN or infinite."""
    if not math.isfinite(total):
        raise nonfinite_error(total, stage=stage, epoch=epoch, step=step, losses=losses,
                              checkpoint=checkpoint)
