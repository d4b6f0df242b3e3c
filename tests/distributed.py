"""The one helper of the distributed tests: W CPU processes in one gloo group, each running the
same function, and what every rank returned.

The group is joined through a file (``init_method="file://..."``) in a fresh temporary folder,
so no port is needed and no two runs share a rendezvous. The function and its arguments cross
the process boundary by pickling (``torch.multiprocessing.spawn``): a module-level function of
an importable test module; its return value comes back through ``torch.save`` (any picklable
object: dicts of tensors, lists of floats, None).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@contextmanager
def gloo_group(init_file: str | Path, rank: int = 0, world: int = 1) -> Iterator[None]:
    """Join the gloo group of ``world`` processes rendezvousing at ``init_file`` as ``rank``;
    leave it on exit."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _rank_main(rank: int, world: int, folder: str, fn: Callable[..., Any],
               args: tuple[Any, ...]) -> None:
    with gloo_group(Path(folder) / "init", rank, world):
        out = fn(*args)
    torch.save(out, Path(folder) / f"rank{rank}.pt")


def run_gloo(fn: Callable[..., Any], *args: Any, world: int = 2,
             tmp: str | Path | None = None) -> list[Any]:
    """``[fn(*args) on rank r for r in range(world)]``, each rank a spawned process of one gloo
    group (one OpenMP thread each unless ``OMP_NUM_THREADS`` says otherwise). A rank that
    raises fails the call. ``tmp``: where the rendezvous folder goes (default: the system's)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        mp.spawn(_rank_main, args=(world, folder, fn, args), nprocs=world, join=True)
        return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=False)
                for r in range(world)]
