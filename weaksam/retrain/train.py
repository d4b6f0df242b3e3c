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
  and leaves the last good checkpoint as it was. World, schedule, optimiser, checkpoint and
  epoch loop: ``weaksam.engine``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from weaksam.engine.checkpoint import save_state as write_state
from weaksam.engine.guard import nonfinite_error
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import lr_factor_groups, make_optimizer, optimizer_step
from weaksam.engine.schedule import set_lr
from weaksam.engine.schedule import warmup_multistep_lr as lr_at
from weaksam.engine.world import any_rank, data_parallel, sum_over_ranks, world
from weaksam.errors import TrainingError

log = logging.getLogger(__name__)

__all__ = ["DetectorTrainConfig", "Source", "image_generator", "is_backbone", "lr_at",
           "save_state", "to_device", "train_detector"]


class Source(Protocol):
    """Training batches (see ``weaksam.retrain.data``)."""

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int], generators: Sequence[torch.Generator]
              ) -> tuple[Any, list[dict[str, torch.Tensor]]]: ...


def image_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of training image ``index`` in ``epoch`` (augmentation and sampling)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 100_003 + index)


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


def save_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
               fingerprint: str, drop_active: bool,
               history: list[dict[str, float]] | None = None) -> None:
    """Atomic checkpoint after ``epoch`` (0-based, completed); ``history``: the per-epoch
    means of every epoch so far (so a resumed run reports what an unbroken one does)."""
    write_state(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                       "epoch": epoch, "fingerprint": fingerprint, "drop_active": drop_active,
                       "history": list(history or [])})


@dataclass(frozen=True, kw_only=True)
class DetectorTrainConfig:
    """Schedule of :func:`train_detector`: params.yaml ``retrain.<detector>.schedule`` (its
    ``prelim_epochs`` is the stage's), ``seed`` from ``params.seed``. No defaults but
    ``backbone_lr_factor`` (params.yaml's 1.0 for both): the two detectors' schedules differ
    (SGD / AdamW), params.yaml is the one source."""

    epochs: int  # T of the schedule
    batch_size: int  # images per step, all processes
    lr: float  # base learning rate
    optimizer: str  # "sgd" | "adamw" (weaksam.engine.optim)
    momentum: float  # SGD only
    weight_decay: float
    warmup_iters: int  # steps of linear warm-up from warmup_factor x lr
    warmup_factor: float
    lr_steps: tuple[float, ...]  # milestones, fractions of all steps; lr x gamma at each
    gamma: float
    grad_clip: float  # max global grad norm; 0: off
    seed: int  # epoch permutation and per-image generators (image_generator)
    backbone_lr_factor: float = 1.0  # lr multiplier of parameters named *backbone* (DINO R: 0.1)


def is_backbone(name: str) -> bool:
    """The parameters of the release's DINO backbone group (mmdet ``paramwise_cfg.custom_keys=
    {'backbone': dict(lr_mult=0.1)}``, ``dino-base-voc.py``): names containing ``backbone``."""
    return "backbone" in name


def train_detector(
    model: nn.Module,
    source: Source,
    cfg: DetectorTrainConfig,
    *,
    drop_start_epoch: int | None = None,
    stop_epoch: int | None = None,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Train ``model`` on ``source`` for epochs [start, stop) of a T = ``cfg.epochs`` schedule.

    ``resume``: a checkpoint dict of :func:`save_state` (this run's own, or the preliminary
    run's): its model and optimiser states are loaded and training starts after its epoch.
    ``on_epoch(epoch, means)`` gets the mean of each named loss per image over the epoch (all
    processes) plus ``drop_share`` / ``drop_share_fg`` (dropped RoIs or queries / all, when
    the model counts them). Returns ``train_seconds``, ``seconds_per_epoch`` (wall),
    ``train_cpu_seconds`` (this process), ``epochs_run`` and ``history`` (the means of every
    epoch of the schedule so far, with ``epoch``, carried over from ``resume``)."""
    c = cfg
    epochs, batch_size, lr, seed = c.epochs, c.batch_size, c.lr, c.seed
    rank, size = world()
    device = torch.device(device)
    model.to(device)
    n = len(source)
    if n == 0:
        raise TrainingError("no training image has a pseudo ground-truth box")
    stop = epochs if stop_epoch is None else min(int(stop_epoch), epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = lr_factor_groups(model, c.backbone_lr_factor, is_backbone)
    opt = make_optimizer(groups, c.optimizer, lr, c.momentum, c.weight_decay)
    start, history = 0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])  # moves its state to the parameters' device
        start = int(resume["epoch"]) + 1
        history = [dict(h) for h in resume.get("history", [])]
    net = data_parallel(model)
    steps = -(-n // batch_size)
    total = max(1, epochs * steps)

    def drop_on(epoch: int) -> bool:
        return drop_start_epoch is not None and epoch >= drop_start_epoch

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        if hasattr(model, "drop_active"):
            model.drop_active = drop_on(epoch)
        if hasattr(model, "reset_drop_counts"):
            model.reset_drop_counts()
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
        sums: dict[str, float] = {}
        for s in tqdm(range(steps), desc=f"retrain epoch {epoch}", disable=None):
            batch = perm[s * batch_size:(s + 1) * batch_size].tolist()
            local = batch[rank::size]
            set_lr(opt, lr_at(epoch * steps + s, total, lr, c.warmup_iters, c.warmup_factor,
                              c.lr_steps, c.gamma))
            # fewer images than processes (last batch): this process runs its first image with
            # weight 0, so every process takes part in DDP's forward and backward
            run = local or batch[:1]
            gens = [image_generator(seed, epoch, i) for i in run]
            inputs, targets = to_device(*source.batch(run, gens), device)
            if hasattr(model, "set_sample_generators"):
                model.set_sample_generators(gens)
            losses = net(inputs, targets)
            names = sorted(losses)
            loss = sum(losses[k] for k in names) * (size * len(local) / len(batch))
            vals = [float(losses[k].detach()) * len(local) for k in names]
            total_loss = float(torch.tensor(vals, dtype=torch.float64).sum())
            finite = math.isfinite(total_loss)
            if size > 1:  # every process learns whether any one diverged
                finite = not any_rank(not finite)
            else:
                finite = finite and bool(torch.isfinite(loss.detach()))
            if not finite:
                raise nonfinite_error(total_loss, stage="retrain", epoch=epoch, step=s,
                                      losses=dict(zip(names, vals, strict=True)),
                                      checkpoint=checkpoint)
            optimizer_step(opt, loss, params, c.grad_clip)
            for k, v in zip(names, vals, strict=True):
                sums[k] = sums.get(k, 0.0) + v
        means = _epoch_means(model, sums, n)
        log.info("epoch %d (drop %s): %s", epoch, "on" if drop_on(epoch) else "off",
                 {k: round(v, 4) for k, v in means.items()})
        return means

    def record(epoch: int, means: dict[str, float]) -> None:
        history.append({"epoch": epoch, **means})
        if checkpoint is not None and rank == 0:
            save_state(checkpoint, model, opt, epoch, fingerprint, drop_on(epoch), history)

    timing = run_epochs(range(start, stop), train_epoch, [record, on_epoch])
    if hasattr(model, "set_sample_generators"):
        model.set_sample_generators(None)
    return {"train_seconds": timing.seconds,
            "seconds_per_epoch": timing.seconds / max(timing.epochs_run, 1),
            "train_cpu_seconds": timing.cpu_seconds, "epochs_run": timing.epochs_run,
            "history": history}


def _epoch_means(model: nn.Module, sums: dict[str, float], n: int) -> dict[str, float]:
    """Per-image means of the epoch's losses over all processes, their sum as ``loss``, and
    the drop shares when the model counts dropped RoIs / queries."""
    counts = model.drop_counts() if hasattr(model, "drop_counts") else {}
    means = {k: v / n for k, v in sum_over_ranks(sums).items()}
    means["loss"] = sum(means.values())
    c = sum_over_ranks({k: float(v) for k, v in counts.items()})
    if c.get("rois"):
        means["drop_share"] = c["dropped"] / c["rois"]
    if c.get("fg_rois"):
        means["drop_share_fg"] = c["fg_dropped"] / c["fg_rois"]
    return means
