"""The device a stage runs on, and the torch.distributed backend that goes with it.

Stages never pick a device themselves: params ``runtime.device`` (or a per-stage override)
names it, ``resolve_device`` checks it, and every tensor and module of the stage goes there.
Under torchrun each process takes the CUDA device of its ``LOCAL_RANK`` (so ``CUDA_VISIBLE_DEVICES``
decides which cards are used, never a hard-coded device 0). A rank is never mapped onto a card
another rank already uses (NCCL refuses two ranks on one GPU, and a second copy of the model
would only compete for the card): asking for more CUDA ranks than visible GPUs is an error that
says so, raised before any process starts where the stage spawns them
(:func:`data_parallel_devices`) and in the rank itself otherwise (:func:`resolve_device`).
"""

from __future__ import annotations

import os

import torch


def resolve_device(name: str | None) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`.

    ``"cuda"`` without an index becomes ``cuda:<LOCAL_RANK>`` (0 outside torchrun). A CUDA device
    on a machine without CUDA, an index (given or from ``LOCAL_RANK``) at or past the number of
    visible devices, or an unknown name, raises ``ValueError`` naming the value: a stage never
    falls back to another device silently.
    """
    name = (name or "cpu").strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ValueError(f"runtime.device: unknown device {name!r} (expected cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise ValueError(f"runtime.device: {name!r} asked for, but this machine has no CUDA device")
    if name == "cuda":
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        if rank >= torch.cuda.device_count():
            raise ValueError(
                f"runtime.device: 'cuda' for local rank {rank} (LOCAL_RANK) asks for cuda:{rank}, "
                f"but only {torch.cuda.device_count()} CUDA device(s) are visible: run at most "
                "one process per GPU")
        return torch.device("cuda", rank)
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"runtime.device: {name!r} but only {torch.cuda.device_count()} "
                         "CUDA devices are visible")
    return dev


def data_parallel_devices(name: str | None, world: int, what: str = "processes"
                          ) -> list[torch.device]:
    """The device of each of ``world`` data-parallel ranks (rank ``r`` with ``LOCAL_RANK=r``)
    on device ``name``, checked before any rank starts.

    CPU: every rank on the CPU. ``"cuda"``: rank ``r`` on ``cuda:r``, so ``world`` must not
    exceed the visible GPUs. ``"cuda:N"`` names one card: only one rank. Otherwise a
    ``ValueError`` names ``what`` (the setting that chose ``world``), the device and the count.
    """
    world = int(world)
    if world < 1:
        raise ValueError(f"{what}: {world} (expected at least 1)")
    dev = resolve_device(name)  # the name, CUDA present, a named index in range
    if dev.type != "cuda" or world == 1:
        return [dev] * world
    explicit = (name or "").strip().lower() != "cuda"
    gpus = torch.cuda.device_count()
    if explicit or world > gpus:
        where = (f"{name!r} names one card" if explicit
                 else f"{gpus} CUDA device(s) are visible")
        raise ValueError(f"{what}: {world} data-parallel processes on {name!r}, but {where}; "
                         f"one process per GPU (set {what} to at most "
                         f"{1 if explicit else gpus})")
    return [torch.device("cuda", r) for r in range(world)]


def sam_device(sam: str | None, runtime: str) -> str:
    """The device of every stage that runs SAM (``proposals``, ``pseudo_masks``,
    ``sam_pretrain``): ``sam`` (params ``sam.device``) when set (not null / empty), else
    ``runtime`` (params ``runtime.device``), checked by :func:`resolve_device` so a bad name
    fails early."""
    name = sam or runtime
    resolve_device(name)
    return str(name)


def ddp_backend(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"
