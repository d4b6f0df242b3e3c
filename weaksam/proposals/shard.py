"""Sharded WeakSAM proposal generation: images split across processes by rank, merged
deterministically (the issue's item 6; the authors ran SAM per GPU on their own splits).

Image ``i`` of a split (in the split's order) belongs to rank ``i % world``. Each rank loads SAM
itself, prompts its images with ONE torch thread (process-level parallelism replaces
thread-level parallelism, and every image is computed the same way whatever the number of
ranks), and the merge puts the images back in split order: the output is the same, byte for
byte, with 1, 2 or N workers.

Two launchers: :func:`generate` (a process pool keyed by rank, ``runtime.workers`` processes,
spawned) and :func:`generate_distributed` (``torch.distributed`` ranks when the stage is
launched with ``torchrun``; results gathered on rank 0, over NCCL when SAM runs on CUDA and gloo
on the CPU, ``weaksam.utils.device.ddp_backend``).

Devices: each worker resolves its device with ``resolve_device`` (``"cuda"`` becomes the
``LOCAL_RANK`` card under torchrun, so ``CUDA_VISIBLE_DEVICES`` decides the cards). The process
pool never puts two SAM copies on one card (:func:`worker_devices`): on CUDA it starts at most
one process per visible GPU, process ``r`` on ``cuda:r``, and a single process when the device
names one card (``cuda:N``) or one GPU is visible; the CPU gets ``workers`` processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from weaksam.data.index import read_image
from weaksam.proposals.sam import PromptingConfig, SamPromptProposer
from weaksam.proposals.sources import PROMPT_SOURCES
from weaksam.proposals.store import ImageProposals, ProposalSet
from weaksam.utils.device import ddp_backend, resolve_device

log = logging.getLogger(__name__)


@dataclass
class ImageTask:
    """One image to prompt: ``points (N, 2)`` xy pixels, ``sources (N,)`` uint8 index into
    ``PROMPT_SOURCES``, ``classes (N,)`` int64 category id (-1 for dense points)."""

    image_id: int
    path: str
    points: np.ndarray
    sources: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class SamSpec:
    """Where a worker gets SAM from: ``model`` in vit_h | vit_l | vit_b | small."""

    model: str
    checkpoint: str
    device: str = "cpu"


def shard(n: int, rank: int, world: int) -> list[int]:
    """Indices ``0..n-1`` owned by ``rank`` of ``world`` (round robin: i % world == rank)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    return list(range(rank, n, world))


def run_shard(tasks: list[ImageTask], rank: int, world: int, spec: SamSpec,
              config: PromptingConfig, progress: bool = True) -> dict[int, ImageProposals]:
    """Prompt SAM on this rank's share of ``tasks`` -> ``{image_id: ImageProposals}``."""
    from weaksam.sam.checkpoint import load_sam  # heavy import, only where SAM is needed

    torch.set_num_threads(1)
    device = resolve_device(spec.device)
    proposer = SamPromptProposer(load_sam(spec.model, spec.checkpoint, device), config)
    out: dict[int, ImageProposals] = {}
    mine = shard(len(tasks), rank, world)
    for i in tqdm(mine, desc=f"sam prompts rank {rank}", position=rank,
                  disable=None if progress else True):
        t = tasks[i]
        out[t.image_id] = proposer.propose(read_image(t.path), t.points, t.sources, t.classes)
    return out


def merge(parts: list[dict[int, ImageProposals]], order: list[int]) -> ProposalSet:
    """Merge per-rank results into one ``ProposalSet`` in split ``order`` (missing -> error)."""
    allp: dict[int, ImageProposals] = {}
    for p in parts:
        allp.update(p)
    missing = [i for i in order if i not in allp]
    if missing:
        raise RuntimeError(f"{len(missing)} images have no proposals (first: {missing[:5]})")
    return ProposalSet(list(PROMPT_SOURCES), {i: allp[i] for i in order})


def worker_devices(device: str, workers: int) -> list[str]:
    """The device of each SAM worker process for ``workers`` requested on ``device``
    (``cpu``, ``cuda`` or ``cuda:N``): the list's length is the number of processes.

    CPU: ``workers`` processes (at least 1). ``cuda``: one process per visible GPU up to
    ``workers`` (``torch.cuda.device_count()``), process ``r`` on ``cuda:r``; with one GPU (or
    none: ``resolve_device`` then fails naming the device) a single process on ``cuda``.
    ``cuda:N``: a single process on that card. Fewer processes than asked is logged.
    """
    workers = max(1, int(workers))
    name = str(device or "cpu").strip().lower()
    if not name.startswith("cuda"):
        return [device] * workers
    gpus = torch.cuda.device_count()
    n = 1 if name != "cuda" else max(1, min(workers, gpus))
    if n < workers:
        why = (f"{device} names one card" if name != "cuda"
               else f"{gpus} CUDA device(s) visible")
        log.info("SAM workers: %d process(es) instead of runtime.workers %d (%s; one SAM copy "
                 "per card)", n, workers, why)
    return [device] if n == 1 else [f"cuda:{r}" for r in range(n)]


def generate(tasks: list[ImageTask], spec: SamSpec, config: PromptingConfig, workers: int = 1
             ) -> ProposalSet:
    """Proposals of every task with ``workers`` processes (1: in this process); on CUDA at
    most one process per visible GPU, each on its own card (:func:`worker_devices`)."""
    order = [t.image_id for t in tasks]
    devices = worker_devices(spec.device, workers)
    workers = max(1, min(len(devices), len(tasks))) if tasks else 1
    if workers == 1:
        prev = torch.get_num_threads()
        try:
            return merge([run_shard(tasks, 0, 1, replace(spec, device=devices[0]), config)],
                         order)
        finally:
            torch.set_num_threads(prev)
    ctx = mp.get_context("spawn")  # fork after torch's thread pools start can deadlock
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        futs = [ex.submit(run_shard, tasks, r, workers, replace(spec, device=devices[r]),
                          config) for r in range(workers)]
        parts = [f.result() for f in futs]
    return merge(parts, order)


def generate_distributed(tasks: list[ImageTask], spec: SamSpec, config: PromptingConfig
                         ) -> ProposalSet | None:
    """Proposals over ``torch.distributed`` ranks (launched by ``torchrun``): each rank runs
    its shard, rank 0 gathers and merges and gets the set; other ranks get ``None``."""
    import torch.distributed as dist

    own_group = not dist.is_initialized()
    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    if own_group:
        dist.init_process_group(ddp_backend(device))
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        part = run_shard(tasks, rank, world, spec, config)
        parts: list[dict[int, ImageProposals]] | None = [{} for _ in range(world)] if rank == 0 \
            else None
        dist.gather_object(part, parts, dst=0)
        return merge(parts, [t.image_id for t in tasks]) if rank == 0 else None
    finally:
        if own_group:
            dist.destroy_process_group()
