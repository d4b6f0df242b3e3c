"""Resumable training loop shared by the retraining detectors (Faster R-CNN with RoI drop, the
query-based detector with query drop): any model of the contract's interface
(``model(inputs, targets) -> {name: scalar loss}`` in train mode, ``drop_active`` attribute).

Shorthand: N training images (``len(source)``), B global batch (images per optimiser step over
all processes), W processes (torch.distributed world size, 1 without it), T epochs of the whole
schedule, S = ceil(N / B) steps per epoch.

- Schedule (detectron2's, which the authors' release trains with): SGD with momentum (or AdamW),
  linear warm-up over ``warmup_iters`` steps from ``warmup_factor`` x lr, then lr x gamma^k
  after each milestone (fractions ``lr_steps`` of the T x S steps). The lr is a pure function
  of the global step, so a resumed run continues exactly.
- Preliminary training and drop (paper Sec. 3.2): one schedule of T epochs; drop is active
  from epoch ``drop_start_epoch`` (``None``: never). A preliminary run stops after
  ``stop_epoch`` epochs; its checkpoint (model, optimiser, epoch) is the ``resume`` state of
  every continuation, so all variants share it.
- Determinism: epoch permutation seeded by (seed, epoch), one generator per image seeded by
  (seed, epoch, image index) for its augmentation and the detector's RoI / anchor sampling
  (``model.set_sample_generators``), so W processes (batch b split as ``b[rank::W]``) draw what
  one process draws. The loss of a process is scaled by W x b_local / B so DDP's gradient
  average is the gradient of the mean over the global batch when every image contributes
  the same number of sampled anchors / RoIs (torchvision's normalisers are per batch).
- Checkpoint ``{"model", "optimizer", "epoch", "fingerprint", "drop_active", "history"}`` rewritten
  atomically after every epoch by rank 0; a non-finite loss raises :class:`TrainingError`
  and leaves the last good checkpoint as it was.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from weaksam.errors import TrainingError
from weaksam.utils.atomic import atomic_path

log = logging.getLogger(__name__)


class Source(Protocol):
    """Training batches (see ``weaksam.retrain.data``)."""

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int], generators: Sequence[torch.Generator]
              ) -> tuple[Any, list[dict[str, torch.Tensor]]]: ...


def lr_at(step: int, total: int, base_lr: float, warmup_iters: int, warmup_factor: float,
          lr_steps: Sequence[float], gamma: float) -> float:
    """Learning rate at global ``step`` (0-based) of ``total`` steps: linear warm-up from
    ``warmup_factor * base_lr`` over ``warmup_iters`` steps, x ``gamma`` after each milestone
    ``round(f * total)`` for f in ``lr_steps`` (detectron2's WarmupMultiStepLR)."""
    lr = base_lr * gamma ** sum(step >= round(f * total) for f in lr_steps)
    if step < warmup_iters:
        alpha = step / warmup_iters
        lr *= warmup_factor * (1 - alpha) + alpha
    return lr


def image_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of training image ``index`` in ``epoch`` (augmentation and sampling)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 100_003 + index)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def to_device(inputs: Any, targets: list[dict[str, torch.Tensor]], device: torch.device
              ) -> tuple[Any, list[dict[str, torch.Tensor]]]:
    """Move a batch to ``device``: a list of tensors or an object with a ``maps`` list
    (``FeatureBatch``), and the targets' tensors."""
    if device.type == "cpu":
        return inputs, targets
    if isinstance(inputs, list):
        inputs = [x.to(device) for x in inputs]
    elif hasattr(inputs, "maps"):
        inputs.maps = [m.to(device) for m in inputs.maps]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return inputs, targets


def make_optimizer(params: list[nn.Parameter], optimizer: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """``sgd`` (momentum, detectron2's) or ``adamw``."""
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd or adamw, got {optimizer!r}")


def save_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
               fingerprint: str, drop_active: bool,
               history: list[dict[str, float]] | None = None) -> None:
    """Atomic checkpoint after ``epoch`` (0-based, completed); ``history``: the per-epoch
    means of every epoch so far (so a resumed run reports what an unbroken one does)."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "fingerprint": fingerprint, "drop_active": drop_active,
                    "history": list(history or [])}, tmp)


def train_detector(
    model: nn.Module,
    source: Source,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    lr_steps: Sequence[float] = (),
    gamma: float = 0.1,
    grad_clip: float = 0.0,
    seed: int = 0,
    drop_start_epoch: int | None = None,
    stop_epoch: int | None = None,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Train ``model`` on ``source`` for epochs [start, stop) of a T = ``epochs`` schedule.

    ``resume``: a checkpoint dict of :func:`save_state` (this run's own, or the preliminary
    run's): its model and optimiser states are loaded and training starts after its epoch.
    ``on_epoch(epoch, means)`` gets the mean of each named loss per image over the epoch (all
    processes) plus ``drop_share`` / ``drop_share_fg`` (dropped RoIs or queries / all, when
    the model counts them). Returns ``train_seconds``, ``seconds_per_epoch`` (wall),
    ``train_cpu_seconds`` (this process), ``epochs_run`` and ``history`` (the means of every
    epoch of the schedule so far, with ``epoch``, carried over from ``resume``)."""
    rank, world = _world()
    device = torch.device(device)
    model.to(device)
    n = len(source)
    if n == 0:
        raise TrainingError("no training image has a pseudo ground-truth box")
    stop = epochs if stop_epoch is None else min(int(stop_epoch), epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    start, history = 0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])  # moves its state to the parameters' device
        start = int(resume["epoch"]) + 1
        history = [dict(h) for h in resume.get("history", [])]
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    steps = -(-n // batch_size)
    total = max(1, epochs * steps)
    t_start, cpu_start = time.time(), time.process_time()
    for epoch in range(start, stop):
        model.train()
        active = drop_start_epoch is not None and epoch >= drop_start_epoch
        if hasattr(model, "drop_active"):
            model.drop_active = active
        if hasattr(model, "reset_drop_counts"):
            model.reset_drop_counts()
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
        sums: dict[str, float] = {}
        for s in tqdm(range(steps), desc=f"retrain epoch {epoch}", disable=None):
            batch = perm[s * batch_size:(s + 1) * batch_size].tolist()
            local = batch[rank::world]
            step_lr = lr_at(epoch * steps + s, total, lr, warmup_iters, warmup_factor,
                            lr_steps, gamma)
            for group in opt.param_groups:
                group["lr"] = step_lr
            # fewer images than processes (last batch): this process runs its first image with
            # weight 0, so every process takes part in DDP's forward and backward
            run = local or batch[:1]
            gens = [image_generator(seed, epoch, i) for i in run]
            inputs, targets = to_device(*source.batch(run, gens), device)
            if hasattr(model, "set_sample_generators"):
                model.set_sample_generators(gens)
            losses = net(inputs, targets)
            names = sorted(losses)
            loss = sum(losses[k] for k in names) * (world * len(local) / len(batch))
            vals = [float(losses[k].detach()) * len(local) for k in names]
            stat = torch.tensor([float(v) for v in vals], dtype=torch.float64)
            total_loss = float(stat.sum())
            if world > 1:  # every process learns whether any one diverged
                flag = torch.tensor([0.0 if math.isfinite(total_loss) else 1.0])
                dist.all_reduce(flag)
                finite = flag.item() == 0
            else:
                finite = math.isfinite(total_loss) and bool(torch.isfinite(loss.detach()))
            if not finite:
                raise TrainingError(
                    f"non-finite loss {total_loss} at epoch {epoch}, step {s} "
                    f"({dict(zip(names, vals, strict=True))}); last good checkpoint kept at "
                    f"{checkpoint}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            for k, v in zip(names, vals, strict=True):
                sums[k] = sums.get(k, 0.0) + v
        means = _epoch_means(model, sums, n, world)
        log.info("epoch %d (drop %s): %s", epoch, "on" if active else "off",
                 {k: round(v, 4) for k, v in means.items()})
        history.append({"epoch": epoch, **means})
        if checkpoint is not None and rank == 0:
            save_state(checkpoint, model, opt, epoch, fingerprint, active, history)
        if on_epoch is not None:
            on_epoch(epoch, means)
    if hasattr(model, "set_sample_generators"):
        model.set_sample_generators(None)
    done = max(stop - start, 0)
    wall = time.time() - t_start
    return {"train_seconds": wall, "seconds_per_epoch": wall / max(done, 1),
            "train_cpu_seconds": time.process_time() - cpu_start, "epochs_run": done,
            "history": history}


def _epoch_means(model: nn.Module, sums: dict[str, float], n: int, world: int
                 ) -> dict[str, float]:
    """Per-image means of the epoch's losses over all processes, their sum as ``loss``, and
    the drop shares when the model counts dropped RoIs / queries."""
    names = sorted(sums)
    vec = torch.tensor([sums[k] for k in names], dtype=torch.float64)
    counts = model.drop_counts() if hasattr(model, "drop_counts") else {}
    ckeys = sorted(counts)
    cvec = torch.tensor([float(counts[k]) for k in ckeys], dtype=torch.float64)
    if world > 1:
        # every process has the same loss names: each one runs a forward at every step
        dist.all_reduce(vec)
        dist.all_reduce(cvec)
    means = {k: float(v) / n for k, v in zip(names, vec.tolist(), strict=True)}
    means["loss"] = sum(means.values())
    c = dict(zip(ckeys, cvec.tolist(), strict=True))
    if c.get("rois"):
        means["drop_share"] = c["dropped"] / c["rois"]
    if c.get("fg_rois"):
        means["drop_share_fg"] = c["fg_dropped"] / c["fg_rois"]
    return means
