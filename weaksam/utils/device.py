"""The device a stage runs on, and the torch.distributed backend that goes with it.

Stages never pick a device themselves: params ``runtime.device`` (or a per-stage override)
names it, ``resolve_device`` checks it, and every tensor and module of the stage goes there.
Under torchrun each process takes the CUDA device of its ``LOCAL_RANK`` (so ``CUDA_VISIBLE_DEVICES``
decides which cards are used, never a hard-coded device 0).
"""

from __future__ import annotations

import os

import torch


def resolve_device(name: str | None) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`.

    ``"cuda"`` without an index becomes ``cuda:<LOCAL_RANK>`` (0 outside torchrun). A CUDA device
    on a machine without CUDA, or an unknown name, raises ``ValueError`` naming the value: a
    stage never falls back to another device silently.
    """
    name = (name or "cpu").strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ValueError(f"runtime.device: unknown device {name!r} (expected cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise ValueError(f"runtime.device: {name!r} asked for, but this machine has no CUDA device")
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"runtime.device: {name!r} but only {torch.cuda.device_count()} "
                         "CUDA devices are visible")
    return dev


def sam_device(params: dict) -> str:
    """The device of every stage that runs SAM (``proposals``, ``pseudo_masks``; the
    ``sam_pretrain`` stage resolves the same rule): params ``sam.device`` when set (not null),
    else ``runtime.device``, checked by :func:`resolve_device` so a bad name fails early."""
    name = params["sam"].get("device") or params["runtime"]["device"]
    resolve_device(name)
    return str(name)


def ddp_backend(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"
