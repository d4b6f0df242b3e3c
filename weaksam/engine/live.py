"""The DVCLive hook of the training stages: named values per epoch (or per logged step) as
curves under ``<dir>/plots/metrics/<name>.tsv`` and the summary ``<dir>/metrics.json``.

Only rank 0 writes (the other ranks hold an inert hook), so a data-parallel stage calls it on
every rank. The hook is an after-epoch hook of :func:`weaksam.engine.loop.run_epochs`
(``hook(epoch, values)``) and a context manager that closes the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from dvclive import Live
from weaksam.engine.world import world


class LiveHook:
    """Log ``values`` to DVCLive on rank 0.

    Each call ``hook(step, values)`` logs every ``name: value`` as ``names[name]`` if given,
    else ``prefix + name``, at DVCLive step ``step + step_offset`` (``step_offset`` None: the
    Live's own counter), then ends the step (``next_step``: the summary is written and the
    counter advances) unless ``next_step`` is false. ``as_float`` logs ``float(value)``.
    ``resume`` continues the curves of a resumed run. :meth:`close` (or leaving the ``with``
    block) ends the run; ``summary`` false empties the summary first, so ``metrics.json``
    keeps only the step. ``rank`` defaults to this process's rank.
    """

    def __init__(self, dir: str | Path, *, resume: bool = False, prefix: str = "train/",
                 names: Mapping[str, str] | None = None, step_offset: int | None = 0,
                 next_step: bool = True, as_float: bool = False, summary: bool = True,
                 rank: int | None = None) -> None:
        own = world()[0] if rank is None else rank
        self.live = (Live(dir=str(dir), resume=resume, save_dvc_exp=False, dvcyaml=None,
                          report=None) if own == 0 else None)
        self.prefix, self.names = prefix, dict(names or {})
        self.step_offset, self.next_step = step_offset, next_step
        self.as_float, self.summary = as_float, summary

    def __call__(self, step: int, values: Mapping[str, float]) -> None:
        """Log ``values`` at ``step`` (nothing off rank 0)."""
        if self.live is None:
            return
        if self.step_offset is not None:
            self.live.step = step + self.step_offset
        for k, v in values.items():
            self.live.log_metric(self.names.get(k, self.prefix + k),
                                 float(v) if self.as_float else v)
        if self.next_step:
            self.live.next_step()

    def close(self, keep_summary: bool = False) -> None:
        """End the DVCLive run (write the summary, emptied unless ``summary`` or
        ``keep_summary``); idempotent, nothing off rank 0."""
        if self.live is None:
            return
        if not (self.summary or keep_summary):
            self.live.summary = {}
        self.live.end()
        self.live = None

    def __enter__(self) -> LiveHook:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(keep_summary=exc_type is not None)  # a failed run keeps its last values
