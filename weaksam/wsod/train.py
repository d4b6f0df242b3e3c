"""Training loop of the WSOD networks (OICR, MIST): image-level labels + proposals only.

Shorthand: N training images, B global batch (images per optimiser step over all processes),
W processes (``torch.distributed`` world size; 1 without it), C classes.

- Data: :class:`TrainImage` records built from a ``WeakView`` (labels) and a ``ProposalSet``
  (boxes ``(R, 4)`` xyxy px): never a ground-truth box. Images with no proposals are skipped,
  with a logged message naming them.
- Augmentation (OICR/MIST): per image and epoch a random training scale (short side, px) and
  a random horizontal flip, drawn from a generator seeded by (seed, epoch, image index), so the
  draw does not depend on how images are sharded over processes.
- Distributed: every process builds the same permutation; global batch ``b`` is split as
  ``b[rank::W]`` (DistributedSampler-style). The loss of a process is
  sum of its images' losses / B * W, so DDP's gradient average equals the gradient of the
  global mean over B images: one process and W processes give the same updates (up to float
  summation order).
- Schedules: ``onecycle`` (``epochs`` passes, OneCycle learning rate: the default profile) or
  ``multistep`` (``iterations`` optimiser steps, linear warm-up from ``warmup_factor`` over
  ``warmup_iters``, x ``lr_gamma`` at each of ``lr_steps``: OICR's Caffe ``step`` policy and
  wetectron's ``WarmupMultiStepLR``), SGD with ``momentum``, biases at ``bias_lr_factor`` x the
  learning rate and ``bias_weight_decay`` (both releases: x2, no decay). Optimisers
  (:func:`build_optimizer`): ``sgd``, ``adam`` (AdamW) and ``adam_l2`` (Adam with L2 decay and
  the SGD groups: WeakSAM's release recipes); ``refine_lr_mult`` scales the learning rate of the
  refinement classifiers (OICR: 10, biases 10 x ``bias_lr_factor``).
- Concrete DropBlock (MIST): its parameters have their own optimizer ``cdb_optimizer`` (``cdb_lr``,
  ``cdb_weight_decay``; with ``multistep`` its own warm-up ``cdb_warmup_iters`` and factor
  ``cdb_lr_gamma`` at the same steps, as wetectron's ``SOLVER_CDB``) and minimise
  ``-cdb_adversary_weight`` x the detection loss. ``cdb_adversary="second_pass"`` is
  wetectron's ``do_train_cdb``: after the detector's step, a second forward with fresh noise;
  ``"same_pass"`` reuses the gradient of the detector's forward (one forward per step).
- Device: ``device`` takes the model, images, boxes and labels; random draws stay on CPU
  generators, so CPU and GPU runs draw the same numbers.
- Engine (``weaksam.engine``): the epoch loop (``run_epochs``; after each epoch the log, the
  checkpoints, then ``on_epoch``), the detector's optimiser step (``optimizer_step``), the DDP
  wrapper, the non-finite error and the atomic, fingerprinted checkpoint. Kept here: the data
  order and random draws, the parameter groups (:func:`build_optimizer`), the schedulers and
  the CDB adversary's step. Settings: a frozen :class:`WsodTrainConfig`.
- Resume: with ``state_file`` every epoch also writes the training state (model, both
  optimisers, both schedulers, epoch, optimiser step and each process's global torch RNG state:
  dropout draws from it and it carries over between epochs; every other draw is seeded per
  epoch). A run given that state (:func:`resumable`) continues after its epoch and ends with
  the bytes of an unbroken run.
- A non-finite loss raises :class:`weaksam.errors.TrainingError`; the checkpoint written
  atomically after the last good epoch is left as it was.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from weaksam.engine.checkpoint import resume_state, save_state
from weaksam.engine.guard import nonfinite_error
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import optimizer_step
from weaksam.engine.schedule import warmup_multistep_factor as multistep_factor
from weaksam.engine.world import data_parallel
from weaksam.engine.world import world as process_world
from weaksam.errors import TrainingError
from weaksam.vision.imaging import (
    hflip,
    rescale,
    scale_factor,
    scaled_size,
    to_tensor,
    transform_boxes,
)

log = logging.getLogger(__name__)

REFINE_PREFIX = "refine."  # OICR / MIST refinement classifiers (``OICR.refine``)


@dataclass
class TrainImage:
    """One training image: pixels (H, W, 3) uint8, labels (C,) float32, proposals (R, 4)."""

    image_id: int
    pixels: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray


def usable(items: Sequence[TrainImage]) -> list[TrainImage]:
    """Drop (and log) images whose proposal list is empty: they cannot be trained on."""
    keep = []
    for it in items:
        if len(it.boxes) == 0:
            log.warning("image %d has no proposals: skipped in training", it.image_id)
        else:
            keep.append(it)
    return keep


class FeatureCache:
    """Backbone features of (image id, short side px, flip), computed once when the backbone is
    frozen (stored as float16 to halve memory; roi pooling runs in float32). Training fills it;
    inference on the training split reuses it."""

    def __init__(self, backbone: nn.Module, enabled: bool) -> None:
        self.backbone, self.enabled = backbone, enabled
        self._store: dict[tuple[int, int, bool], torch.Tensor] = {}

    @torch.no_grad()
    def get(self, key: tuple[int, int, bool],
            image: torch.Tensor | Callable[[], torch.Tensor]) -> torch.Tensor:
        """(3, H, W) image (already rescaled / flipped as ``key`` says), or a function making
        it (called on a miss only) -> (Cf, h, w)."""
        if key in self._store:
            return self._store[key].float()
        x = image() if callable(image) else image
        self.backbone.eval()  # frozen: BatchNorm running statistics, as OICR.train() keeps it
        dev = next(self.backbone.parameters()).device
        f = self.backbone.forward_features(x.to(dev)[None])[0]
        if self.enabled:  # a miss returns the stored (float16-rounded) values, as a hit does
            self._store[key] = f.half()
            return self._store[key].float()
        return f

    def warm(self, items: Sequence[TrainImage], scales: Sequence[int], max_size: int,
             flip: bool) -> None:
        """Compute every (image, scale, flip) key training can ask for (benchmarks time the
        steady state; training itself fills the cache lazily)."""
        for it in tqdm(items, desc="feature cache", disable=None):
            img = to_tensor(it.pixels)
            for s in scales:
                for fl in ((False, True) if flip else (False,)):
                    self.get((it.image_id, int(s), fl),
                             lambda img=img, s=s, fl=fl: train_view(img, s, max_size, fl))


def train_view(img: torch.Tensor, short_side: int, max_size: int, flip: bool) -> torch.Tensor:
    """(3, H, W) image -> the rescaled (and flipped) training input (3, H', W')."""
    x = rescale(img, scale_factor(img.shape[1], img.shape[2], short_side, max_size))
    return hflip(x) if flip else x


def multistep_scheduler(opt: torch.optim.Optimizer, steps: Sequence[int], gamma: float,
                        warmup_iters: int, warmup_factor: float
                        ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR of :func:`multistep_factor` times each group's ``lr_factor`` (default 1)."""
    def rule(factor: float) -> Callable[[int], float]:
        return lambda it: factor * multistep_factor(it, steps, gamma, warmup_iters,
                                                    warmup_factor)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, [rule(float(g.get("lr_factor", 1.0))) for g in opt.param_groups])


def sgd_param_groups(named: Sequence[tuple[str, nn.Parameter]], weight_decay: float,
                     bias_lr_factor: float, bias_weight_decay: float | None,
                     refine_lr_mult: float = 1.0,
                     refine_prefix: str = REFINE_PREFIX) -> list[dict]:
    """Parameter groups: weights (lr factor 1, ``weight_decay``) and biases
    (``bias_lr_factor``, ``bias_weight_decay``, None: ``weight_decay``), as Caffe's
    ``lr_mult: 2`` / wetectron's ``BIAS_LR_FACTOR``. With ``refine_lr_mult != 1`` the
    refinement classifiers (names starting with ``refine_prefix``) get two more groups at
    ``refine_lr_mult`` x those factors: OICR's ``train.prototxt`` gives ``refine_score`` lr_mult
    10 (weights) / 20 (biases, decay 0), the WSOD2 release ``custom_keys={'refine':
    dict(lr_mult=10)}``. Each group's ``lr_factor`` scales the scheduled learning rate."""
    bwd = weight_decay if bias_weight_decay is None else bias_weight_decay
    mult = float(refine_lr_mult)

    def is_refine(n: str) -> bool:
        return mult != 1.0 and n.startswith(refine_prefix)

    live = [(n, p) for n, p in named if p.requires_grad]
    groups = []
    for refine, factor in ((False, 1.0), (True, mult)):
        sel = [(n, p) for n, p in live if is_refine(n) == refine]
        w = [p for n, p in sel if not n.endswith("bias")]
        b = [p for n, p in sel if n.endswith("bias")]
        groups += [{"params": w, "weight_decay": weight_decay, "lr_factor": factor},
                   {"params": b, "weight_decay": bwd, "lr_factor": factor * bias_lr_factor}]
    return [g for g in groups if g["params"]]


def adamw_param_groups(named: Sequence[tuple[str, nn.Parameter]], weight_decay: float,
                       refine_lr_mult: float,
                       refine_prefix: str = REFINE_PREFIX) -> list[dict]:
    """``optimizer="adam"`` (AdamW) groups: every parameter at lr factor 1, the refinement
    classifiers at ``refine_lr_mult``; one ``weight_decay`` (no bias rule)."""
    live = [(n, p) for n, p in named if p.requires_grad]
    base = [p for n, p in live if not n.startswith(refine_prefix)]
    ref = [p for n, p in live if n.startswith(refine_prefix)]
    return [g for g in ({"params": base, "weight_decay": weight_decay, "lr_factor": 1.0},
                        {"params": ref, "weight_decay": weight_decay,
                         "lr_factor": float(refine_lr_mult)}) if g["params"]]


def build_optimizer(name: str, named: Sequence[tuple[str, nn.Parameter]], *, lr: float,
                    weight_decay: float, momentum: float, bias_lr_factor: float,
                    bias_weight_decay: float | None,
                    refine_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``named`` parameters; each group carries ``lr_factor``.

    - ``sgd``: SGD with momentum over :func:`sgd_param_groups` (OICR Caffe, wetectron);
    - ``adam``: AdamW (decoupled decay; the default profile), one group, or
      :func:`adamw_param_groups` when ``refine_lr_mult != 1``;
    - ``adam_l2``: ``torch.optim.Adam`` with L2 weight decay over :func:`sgd_param_groups`
      (bias lr / decay rules, refinement multiplier): WeakSAM's release trains MIST with it
      (``baselines/MIST/wetectron/solver/build.py``, per-parameter lr and weight decay) and
      OICR through mmcv's Adam with ``paramwise_cfg`` (``baselines/WSOD2/configs/wsod/base.py``).

    Not the engine's ``make_optimizer``: that takes one flat parameter list (SGD / unfused
    AdamW), while these need per-group learning-rate factors and decays, a fused AdamW and Adam
    with L2 decay (other kernels give other last bits, so other weights).
    """
    if name == "sgd":
        return torch.optim.SGD(sgd_param_groups(named, weight_decay, bias_lr_factor,
                                                bias_weight_decay, refine_lr_mult),
                               lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        # fused: one kernel over all parameters (4x cheaper per step on the CPU than the loop)
        if float(refine_lr_mult) == 1.0:
            return torch.optim.AdamW([p for _, p in named], lr=lr, weight_decay=weight_decay,
                                     fused=True)
        return torch.optim.AdamW(adamw_param_groups(named, weight_decay, refine_lr_mult),
                                 lr=lr, weight_decay=weight_decay, fused=True)
    if name == "adam_l2":
        return torch.optim.Adam(sgd_param_groups(named, weight_decay, bias_lr_factor,
                                                 bias_weight_decay, refine_lr_mult),
                                lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd, adam or adam_l2, got {name!r}")


def group_lrs(opt: torch.optim.Optimizer, lr: float) -> list[float]:
    """Peak learning rate of each group: ``lr`` x its ``lr_factor`` (default 1)."""
    return [lr * float(g.get("lr_factor", 1.0)) for g in opt.param_groups]


def save_checkpoint(path: str | Path, model: nn.Module, epoch: int) -> None:
    """Atomic ``{"model": state_dict, "epoch": epoch}`` (a crash never leaves half a file)."""
    save_state(path, {"model": model.state_dict(), "epoch": epoch})


def resumable(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """The training state at ``path`` to resume: written by :func:`train_wsod` with
    ``fingerprint`` and unfinished. None when there is none, it is of other settings or inputs,
    or its run finished (a finished run trains again: the code may have changed since)."""
    state = resume_state(path, fingerprint, "WSOD training state")
    return state if state is not None and state["epoch"] < state["epochs"] - 1 else None


def rng_states(device: torch.device) -> list[dict[str, torch.Tensor | None]]:
    """Every process's global torch RNG state (CPU, and the CUDA device's when ``device`` is
    one), in rank order (gathered: every process must call it)."""
    own = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    size = process_world()[1]
    if size == 1:
        return [own]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, own)
    return out

@dataclass(frozen=True, kw_only=True)
class WsodTrainConfig:
    """Schedule, optimiser and augmentation of one WSOD method: the resolved per-method
    settings of params ``wsod`` (``weaksam.wsod.recipes.method_setting``: recipe, then
    ``wsod.<method>``, then ``wsod``), built by ``pipeline/wsod.py:train_config``. A default
    equals the resolved params.yaml value of both methods (OICR has no ``cdb_*`` keys: the
    defaults are MIST's); keys without one must be given.

    ``train_scales``: short sides (px) drawn per image and epoch; ``max_size``: cap on the long
    side (px); ``lr_steps``: optimiser steps at which ``multistep`` multiplies the rate by
    ``lr_gamma``; ``bias_weight_decay`` None: ``weight_decay``. See the module docstring for
    the schedules, optimisers and the Concrete DropBlock adversary (``cdb_*``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    train_scales: tuple[int, ...]
    max_size: int
    flip: bool
    schedule: str = "onecycle"
    iterations: int = 0
    lr_steps: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 1.0 / 3
    momentum: float = 0.9
    bias_lr_factor: float = 1.0
    bias_weight_decay: float | None = None
    refine_lr_mult: float = 1.0
    cdb_start_epoch: int = 0
    cdb_optimizer: str = "sgd"
    cdb_lr: float = 1e-4
    cdb_weight_decay: float = 1e-4
    cdb_adversary_weight: float = 0.01
    cdb_adversary: str = "same_pass"
    cdb_lr_gamma: float = 3.0
    cdb_warmup_iters: int = 500


def build_schedulers(cfg: WsodTrainConfig, opt: torch.optim.Optimizer,
                     cdb_opt: torch.optim.Optimizer | None, total_steps: int
                     ) -> tuple[torch.optim.lr_scheduler.LRScheduler,
                                torch.optim.lr_scheduler.LRScheduler | None]:
    """The detector's scheduler (``onecycle``: OneCycleLR to each group's peak
    :func:`group_lrs` over ``total_steps``, 10 % warm-up; ``multistep``:
    :func:`multistep_scheduler`) and the CDB's (``multistep`` only, its own warm-up and
    gamma; None otherwise)."""
    if cfg.schedule == "multistep":
        sched = multistep_scheduler(opt, cfg.lr_steps, cfg.lr_gamma, cfg.warmup_iters,
                                    cfg.warmup_factor)
    else:
        peaks = group_lrs(opt, cfg.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=peaks if len(peaks) > 1 else cfg.lr, total_steps=total_steps,
            pct_start=0.1)
    cdb_sched = None
    if cdb_opt is not None and cfg.schedule == "multistep":
        cdb_sched = multistep_scheduler(cdb_opt, cfg.lr_steps, cfg.cdb_lr_gamma,
                                        cfg.cdb_warmup_iters, cfg.warmup_factor)
    return sched, cdb_sched


def train_wsod(
    model: nn.Module,
    items: Sequence[TrainImage],
    cfg: WsodTrainConfig,
    *,
    seed: int,
    checkpoint: str | Path | None = None,
    state_file: str | Path | None = None,
    fingerprint: str = "",
    resume: dict[str, Any] | None = None,
    stop_after: int | None = None,
    cache: FeatureCache | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Train ``model`` (an OICR or MIST network) on ``items`` as ``cfg`` says, on the engine's
    epoch loop (:func:`weaksam.engine.loop.run_epochs`) and optimiser step.

    ``schedule="onecycle"`` runs ``epochs`` passes; ``"multistep"`` runs ``iterations`` steps
    of ``batch_size`` images (the last pass cut short), with SGD (the OICR / MIST releases),
    AdamW (``adam``) or Adam with L2 decay (``adam_l2``: WeakSAM's release trains MIST and OICR
    with it). See the module docstring for the schedules, the optimisers and the Concrete
    DropBlock adversary.

    Returns timing figures: ``train_seconds``, ``seconds_per_epoch`` (wall, over the epochs
    run), ``steps``, ``train_cpu_seconds`` (this process) and the schedule's ``epochs``. After
    each epoch, in order: the epoch is logged, ``checkpoint`` (``{"model", "epoch"}``) and
    ``state_file`` (the training state, tagged ``fingerprint``: module docstring) written by
    rank 0, and ``on_epoch(epoch, losses)`` called with the mean of each named loss over the
    epoch's images (all processes).
    ``resume``: a state read from ``state_file`` (:func:`resumable`), training continues after
    its epoch; ``stop_after``: the last epoch to run (a stopped run, for tests). ``cache``: a
    FeatureCache to fill (frozen backbone), so inference on the training split can reuse it.
    Works unchanged under ``torchrun`` / an initialised process group (DDP over the trainable
    parameters; a resumed run needs the process count of the run that wrote the state)."""
    rank, world = process_world()
    device = torch.device(device)
    items = usable(items)
    if not items:
        raise TrainingError("no training image has proposals")
    if cfg.schedule not in ("onecycle", "multistep"):
        raise ValueError(f"schedule must be onecycle or multistep, got {cfg.schedule!r}")
    if cfg.cdb_adversary not in ("same_pass", "second_pass"):
        raise ValueError("cdb_adversary must be same_pass or second_pass, got "
                         f"{cfg.cdb_adversary!r}")
    batch_size, scales, max_size = cfg.batch_size, cfg.train_scales, cfg.max_size
    core = model.to(device)
    if resume is not None:  # before DDP: its construction broadcasts rank 0's weights
        core.load_state_dict(resume["model"])
    net = data_parallel(model, device)
    cdb = getattr(core, "cdb", None)
    cdb_ids = {id(p) for p in cdb.parameters()} if cdb is not None else set()
    named = [(k, p) for k, p in model.named_parameters()
             if p.requires_grad and id(p) not in cdb_ids]
    n = len(items)
    steps_per_epoch = -(-n // batch_size)
    if cfg.schedule == "multistep":
        total_steps = int(cfg.iterations)
        epochs = -(-total_steps // steps_per_epoch)
    else:
        total_steps = max(1, cfg.epochs * steps_per_epoch)
        epochs = cfg.epochs
    opt = build_optimizer(cfg.optimizer, named, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          momentum=cfg.momentum, bias_lr_factor=cfg.bias_lr_factor,
                          bias_weight_decay=cfg.bias_weight_decay,
                          refine_lr_mult=cfg.refine_lr_mult)
    cdb_opt = None
    if cdb is not None:
        cdb_opt = build_optimizer(cfg.cdb_optimizer, list(cdb.named_parameters()),
                                  lr=cfg.cdb_lr, weight_decay=cfg.cdb_weight_decay,
                                  momentum=cfg.momentum, bias_lr_factor=cfg.bias_lr_factor,
                                  bias_weight_decay=cfg.bias_weight_decay)
    sched, cdb_sched = build_schedulers(cfg, opt, cdb_opt, total_steps)
    start, step = 0, 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        if cdb_opt is not None:
            cdb_opt.load_state_dict(resume["cdb_optimizer"])
        if cdb_sched is not None:
            cdb_sched.load_state_dict(resume["cdb_scheduler"])
        rng = resume["rng"][rank]
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
        start, step = int(resume["epoch"]) + 1, int(resume["step"])
        log.info("resuming after epoch %d (step %d)", start - 1, step)
    frozen = bool(getattr(core, "freeze_backbone", False))
    if cache is None or not frozen:
        cache = FeatureCache(core.backbone, enabled=frozen)
    tensors = [to_tensor(it.pixels) for it in items]  # CPU; each step moves its images
    box_t = [torch.tensor(it.boxes, dtype=torch.float32) for it in items]
    label_t = [torch.tensor(it.labels, dtype=torch.float32) for it in items]
    w_adv = cfg.cdb_adversary_weight

    def scale_cdb_grads() -> None:  # same_pass: -w x the gradient just computed
        for p in cdb.parameters():
            if p.grad is not None:
                p.grad.mul_(-w_adv)

    def train_epoch(epoch: int) -> dict[str, float]:
        nonlocal step
        model.train()
        if hasattr(core, "cdb_active"):
            core.cdb_active = core.cdb is not None and epoch >= cfg.cdb_start_epoch
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
        sums: dict[str, float] = {}
        seen = 0
        for s in tqdm(range(0, n, batch_size), desc=f"wsod epoch {epoch}", disable=None):
            if step >= total_steps:
                break
            batch = perm[s : s + batch_size].tolist()
            seen += len(batch)
            local = batch[rank::world]
            # a process without an image this step (B not a multiple of W) runs the batch's
            # first image at weight 0: every DDP process must run the forward and backward
            inputs, boxes, labels, gens = [], [], [], []
            for i in local or batch[:1]:
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 100_003 + i)
                si = int(torch.randint(len(scales), (1,), generator=g))
                fl = bool(cfg.flip and torch.rand(1, generator=g) < 0.5)
                img = tensors[i]
                f = scale_factor(img.shape[1], img.shape[2], scales[si], max_size)
                width = scaled_size(img.shape[1], img.shape[2], f)[1]
                b = transform_boxes(box_t[i], f, fl, width)
                if cache.enabled:  # the image is rescaled only when its features are missing
                    x = cache.get((items[i].image_id, int(scales[si]), fl),
                                  lambda img=img, si=si, fl=fl: train_view(
                                      img, scales[si], max_size, fl))
                else:
                    x = train_view(img.to(device), scales[si], max_size, fl)
                inputs.append(x)
                boxes.append(b.to(device))
                labels.append(label_t[i].to(device))
                gens.append(g)
            # name -> (b,) reduced losses of this process's b images
            per_image = net(inputs, boxes, labels, gens, precomputed=cache.enabled)
            names = core.loss_keys()
            # the reduction over images: sum here, / B (global batch), x W for DDP's average
            table = torch.stack([per_image[k] for k in names])  # (L, b)
            loss = table.sum() * world / len(batch)
            if not local:
                loss = loss * 0.0
            # logged values: every named loss summed over all processes' images
            vec = torch.zeros(len(names), dtype=torch.float64, device=device)
            if local:
                vec += table.detach().sum(1).double()
            if world > 1:
                dist.all_reduce(vec)
            vec = vec.cpu()
            total = float(vec.sum())
            if not np.isfinite(total) or not torch.isfinite(loss):
                raise nonfinite_error(total, stage="wsod", epoch=epoch, step=s // batch_size,
                                      losses=dict(zip(names, vec.tolist(), strict=True)),
                                      checkpoint=checkpoint)
            adversary = cdb_opt is not None and getattr(core, "cdb_active", False)
            same_pass = adversary and cfg.cdb_adversary == "same_pass"
            model.zero_grad(set_to_none=True)  # the CDB's gradients too (not in ``opt``)
            optimizer_step(opt, loss, reduce=scale_cdb_grads if same_pass else None)
            if adversary and cfg.cdb_adversary == "second_pass":  # wetectron's do_train_cdb
                model.zero_grad(set_to_none=True)
                again = net(inputs, boxes, labels, gens, precomputed=cache.enabled)
                adv = sum(v.sum() for v in again.values()) * world / len(batch)
                if not local:
                    adv = adv * 0.0
                (-w_adv * adv).backward()
            if adversary:
                cdb_opt.step()
            if cdb_sched is not None:
                # the CDB's lr follows the one global iteration (wetectron's single counter),
                # also while the CDB waits for cdb_start_epoch and its optimiser does not step:
                # PyTorch's "lr_scheduler.step() before optimizer.step()" does not apply then
                with warnings.catch_warnings():
                    if not adversary:
                        warnings.filterwarnings("ignore", message=r"Detected call of "
                                                r"`lr_scheduler\.step\(\)` before")
                    cdb_sched.step()
            sched.step()
            step += 1
            for k, v in zip(names, vec.tolist(), strict=True):
                sums[k] = sums.get(k, 0.0) + v
        means = {k: v / max(seen, 1) for k, v in sums.items()}
        means["loss"] = sum(means.values())
        return means

    def record(epoch: int, means: dict[str, float]) -> None:
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in means.items()})
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, core, epoch)
        if state_file is not None:
            rng = rng_states(device)
            if rank == 0:
                save_state(state_file, {
                    "model": core.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "cdb_optimizer": cdb_opt.state_dict() if cdb_opt is not None else None,
                    "cdb_scheduler": cdb_sched.state_dict() if cdb_sched is not None else None,
                    "epoch": epoch, "epochs": epochs, "step": step, "rng": rng,
                    "fingerprint": fingerprint})

    timing = run_epochs(range(start, epochs), train_epoch, hooks=(record, on_epoch),
                        stop=lambda e: stop_after is not None and e >= stop_after)
    return {"train_seconds": timing.seconds,
            "seconds_per_epoch": timing.seconds / max(timing.epochs_run, 1), "steps": step,
            "train_cpu_seconds": timing.cpu_seconds, "epochs": epochs}
