"""Errors raised on bad input. Every message names the offending file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data: a corrupt image, a missing annotation file, an unknown class, ..."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self) -> tuple[type, tuple[str | None, str]]:
        # pickled by its two arguments: an error raised in a worker process (proposals' SAM
        # workers, proposals_ss' pool) reaches the parent as itself, not as a broken pool
        return (type(self), (self.path, self.problem))


class TrainingError(RuntimeError):
    """Training cannot go on (for example a NaN loss); the last good checkpoint is kept."""
