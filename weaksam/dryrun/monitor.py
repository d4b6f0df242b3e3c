"""Per-stage wall time and peak memory of a running ``dvc repro``, measured from outside.

A thread polls the process tree under the ``dvc`` process (:mod:`psutil`) every ``interval``
seconds. Each process is attributed to the stage whose command it runs (a stage's command line
with the interpreter left out, as :func:`command_key` normalises it) or to the stage of its
nearest such ancestor (worker processes, torchrun ranks). A stage's seconds run from the first
poll that saw it to the last; its peak RSS is the largest sum, over one poll, of the resident
memory of its processes (so two data-parallel ranks count twice). Stages shorter than one
interval may be missed; the runner reports them as such.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field

import psutil


def command_key(argv: list[str]) -> tuple[str, ...] | None:
    """The arguments after the interpreter of a ``python ...`` command line (``argv`` as
    :meth:`psutil.Process.cmdline` gives it), looking through ``sh -c "..."``; ``None`` for
    other commands."""
    if len(argv) >= 3 and argv[0].endswith("sh") and argv[1] == "-c":
        try:
            argv = shlex.split(argv[2])
        except ValueError:
            return None
    if not argv or "python" not in argv[0].rsplit("/", 1)[-1]:
        return None
    return tuple(argv[1:])


def stage_keys(commands: dict[str, str]) -> dict[tuple[str, ...], str]:
    """``{command_key: stage}`` for ``{stage: cmd}`` (resolved ``dvc.yaml`` commands)."""
    out: dict[tuple[str, ...], str] = {}
    for stage, cmd in commands.items():
        key = command_key(shlex.split(cmd))
        if key is not None:
            out[key] = stage
    return out


@dataclass
class StageUsage:
    """What the monitor saw of one stage."""

    first: float
    last: float
    peak_rss_mib: float = 0.0
    pids: set[int] = field(default_factory=set)

    @property
    def seconds(self) -> float:
        return self.last - self.first


class TreeMonitor:
    """Poll the process tree of ``root_pid`` in a background thread (``with`` block)."""

    def __init__(self, root_pid: int, commands: dict[str, str], interval: float = 0.2) -> None:
        self.root = psutil.Process(root_pid)
        self.keys = stage_keys(commands)
        self.interval = interval
        self.usage: dict[str, StageUsage] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._stage_of: dict[tuple[int, float], str] = {}

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _classify(self, pid: int, procs: dict[int, psutil.Process],
                  parents: dict[int, int]) -> str | None:
        """The stage of process ``pid``: its own command's, else its nearest ancestor's."""
        try:
            ident = (pid, procs[pid].create_time())
        except (KeyError, psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        if ident in self._stage_of:
            return self._stage_of[ident]
        stage = None
        try:
            key = command_key(procs[pid].cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            key = None
        if key is not None:
            stage = self.keys.get(key)
        parent = parents.get(pid)
        if stage is None and parent is not None and parent in procs:
            stage = self._classify(parent, procs, parents)
        if stage is not None:  # an unknown process may still exec a stage's command
            self._stage_of[ident] = stage
        return stage

    def poll(self) -> None:
        """One look at the tree (also called by the loop)."""
        now = time.monotonic()
        try:
            procs = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        parents: dict[int, int] = {}
        for p in procs:
            try:
                parents[p.pid] = p.ppid()
            except psutil.NoSuchProcess:
                continue
        by_pid = {p.pid: p for p in procs}
        rss: dict[str, float] = {}
        for p in procs:
            stage = self._classify(p.pid, by_pid, parents)
            if stage is None:
                continue
            try:
                mem = p.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rss[stage] = rss.get(stage, 0.0) + mem
            use = self.usage.setdefault(stage, StageUsage(first=now, last=now))
            use.last = now
            use.pids.add(p.pid)
        for stage, total in rss.items():
            self.usage[stage].peak_rss_mib = max(self.usage[stage].peak_rss_mib, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)
