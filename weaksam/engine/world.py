"""The data-parallel world of a trainer (torch.distributed when a process group is initialised,
one process otherwise). Shorthand: W processes, rank r in [0, W).

Collectives run in rank order on every process, so every rank gets the same result; outside a
process group every function is the one-process identity.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from weaksam.utils.device import ddp_backend


def world() -> tuple[int, int]:
    """``(rank, W)`` of this process: ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def join_process_group(device: torch.device) -> int:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group with the backend of the
    stage's device (gloo on the CPU, NCCL on CUDA, after selecting the rank's card); returns
    this process's rank (0 outside torchrun, or the rank of a group already joined)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(ddp_backend(device))
    return dist.get_rank()


def data_parallel(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (gradients averaged over the W processes in
    backward; parameters some forwards leave unused allowed) when W > 1, else ``model``. A CUDA
    ``device`` is the wrapper's single device (``device_ids``); None or a CPU device: none."""
    if world()[1] > 1:
        ids = [device.index] if device is not None and device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=True)
    return model


def sum_gradients(params: Sequence[nn.Parameter]) -> None:
    """Sum every parameter's gradient over the processes in one all-reduce of the flattened
    gradients (a missing gradient counts as zeros); each ``p.grad`` becomes the sum."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, torch.split(flat, [g.numel() for g in grads]), strict=True):
        p.grad = g.view_as(p).clone()


def sum_gradients_flagged(params: Sequence[nn.Parameter], extra: torch.Tensor
                          ) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """One all-reduce (sum over processes) of every parameter's gradient (missing: zeros), one
    has-gradient flag per parameter and ``extra`` (1-D, for example loss sums and counts).
    Returns the summed gradients, None for a parameter no process had a gradient for (as a
    one-process ``backward`` leaves it), and the summed ``extra``. The gradients are not
    written to ``p.grad``."""
    dev = extra.device
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params]
                     + [torch.tensor([float(p.grad is not None) for p in params], device=dev),
                        extra])
    dist.all_reduce(flat)
    n = len(extra)
    grads: list[torch.Tensor | None] = []
    i = 0
    for p, f in zip(params, flat[-n - len(params):-n].tolist(), strict=True):
        grads.append(flat[i:i + p.numel()].view_as(p) if f > 0 else None)
        i += p.numel()
    return grads, flat[-n:]


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any process (every process must call it)."""
    t = torch.tensor([1.0 if flag else 0.0])
    if world()[1] > 1:
        dist.all_reduce(t)
    return t.item() > 0


def sum_over_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """``{name: sum over processes}`` of each process's named sums (names missing on a process
    count as 0), added in rank order, names sorted; W = 1: a copy of ``values`` in its order.
    The names of ``values`` are returned as the same string objects (a pickled history of them
    keeps its bytes)."""
    if world()[1] == 1:
        return dict(values)
    parts: list[dict[str, float]] = [{} for _ in range(world()[1])]
    dist.all_gather_object(parts, dict(values))
    own = {k: k for k in values}
    return {own.get(k, k): sum(p.get(k, 0.0) for p in parts)
            for k in sorted(set().union(*parts))}
