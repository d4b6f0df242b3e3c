"""Training loop and test-split inference shared by the WSIS models (Mask R-CNN, Mask2Former).

Shorthand: N training views (image, flip), B views per step, E epochs.

- A model takes a :class:`~weaksam.wsis.mask_rcnn.Batch` and returns a dict of named scalar
  losses in train mode; their sum is the loss (each model weights its own terms). For the test
  split it has ``instances(batch, factors, sizes) -> [{"labels" (R,), "scores" (R,), "masks"
  (R, H, W) bool}]`` at the original image sizes.
- Each epoch reseeds torch's global generator (``seed + epoch``; torchvision's RoI samplers and
  the Hungarian matcher's inputs draw from it) and permutes the views with a generator seeded
  the same way, so a run resumed from the checkpoint of epoch e equals an uninterrupted run.
- Learning rate: linear warm-up over ``warmup_steps`` then cosine decay to zero (per step);
  with ``lr_steps`` (absolute step numbers) a step schedule instead: x ``gamma`` at each, as
  detectron2's ``WarmupMultiStepLR`` (the release's WSIS configs: ``SOLVER.STEPS``).
- Length: ``epochs`` over the N views, or, with ``iterations`` set, exactly that many steps of
  B views (detectron2's ``MAX_ITER``): ceil(iterations / ceil(N / B)) epochs, the last one cut
  at the step count.
- After every epoch the checkpoint (model, optimiser, epoch, ``fingerprint`` of params and
  data) is written atomically; a run whose fingerprint matches resumes after its epoch.
- A non-finite loss raises :class:`weaksam.errors.TrainingError` (the last checkpoint stays).
- Under torchrun (a process group of W ranks) every global batch of B views is shared: rank r
  takes views ``r, r + W, ...`` of it, its loss weighted by its share of the batch, and the
  gradients are summed over the ranks (one all-reduce of the flattened gradients), so a step
  follows the one-process step up to the per-batch normalisation inside the models' losses.
  Rank 0 writes the checkpoint; the epoch means are over all views.
- With ``lsj`` set, every view is large-scale jittered (:mod:`weaksam.wsis.augment`) each time
  it is drawn: the scale and crop of the view at position p of epoch e's permutation are row p
  of :func:`~weaksam.wsis.augment.lsj_draws` from a generator seeded ``seed + 7919 e + 1``
  (independent of the process count; torch's global generator, which the models draw from, is
  not used). Off (None): the views go to the model as they are and no number is drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from weaksam.engine.checkpoint import resume_state
from weaksam.engine.checkpoint import save_state as write_state
from weaksam.engine.guard import nonfinite_error
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import autocast, lr_factor_groups, make_optimizer, optimizer_step
from weaksam.engine.schedule import set_lr
from weaksam.engine.schedule import warmup_cosine_factor as lr_factor
from weaksam.engine.world import any_rank, sum_gradients, sum_over_ranks, world
from weaksam.errors import TrainingError
from weaksam.eval.mask_ap import encode_mask
from weaksam.utils.boxes import masks_to_boxes, xyxy_to_xywh
from weaksam.wsis.augment import LsjConfig, large_scale_jitter, lsj_draws
from weaksam.wsis.data import View
from weaksam.wsis.mask_rcnn import Batch

log = logging.getLogger(__name__)

__all__ = ["InstanceTrainConfig", "collate", "lr_factor", "predict_results", "save_state",
           "train_instance_model"]


def _pad_stack(ts: Sequence[torch.Tensor], h: int, w: int) -> torch.Tensor:
    return torch.stack([F.pad(t.float(), (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in ts])


def collate(views: Sequence[View], multiple: int = 1, with_targets: bool = True,
            device: torch.device | str = "cpu") -> Batch:
    """Views -> a :class:`Batch`: images zero-padded to a multiple of ``multiple`` px, or each
    cached feature level zero-padded to its largest size; targets as torchvision wants them."""
    sizes = [v.size for v in views]
    if views[0].features is not None:
        feats = []
        for lvl in range(len(views[0].features)):
            hs = max(v.features[lvl].shape[-2] for v in views)
            ws = max(v.features[lvl].shape[-1] for v in views)
            feats.append(_pad_stack([v.features[lvl] for v in views], hs, ws).to(device))
        batch = Batch(sizes, features=feats)
    else:
        hs = -(-max(s[0] for s in sizes) // multiple) * multiple
        ws = -(-max(s[1] for s in sizes) // multiple) * multiple
        batch = Batch(sizes, images=_pad_stack([v.image for v in views], hs, ws).to(device))
    if with_targets:
        batch.targets = [{"boxes": v.boxes.to(device), "labels": v.labels.to(device),
                          "masks": v.masks.to(device)} for v in views]
    return batch


def save_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
               fingerprint: str) -> None:
    """Atomic training checkpoint after ``epoch`` (0-based)."""
    write_state(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                       "epoch": epoch, "fingerprint": fingerprint})


@dataclass(frozen=True, kw_only=True)
class InstanceTrainConfig:
    """Schedule of :func:`train_instance_model`: the schedule keys of params.yaml
    ``wsis.mask_rcnn`` / ``wsis.mask2former`` (the section's other keys are the model's),
    ``seed`` from the training seed. Defaults only where every section agrees."""

    epochs: int  # passes over the views (replaced by ``iterations`` when set)
    batch_size: int  # views per step, all processes
    lr: float  # base learning rate
    weight_decay: float
    optimizer: str  # "sgd" | "adamw" (weaksam.engine.optim; SGD momentum 0.9)
    warmup_steps: int  # linear warm-up steps
    grad_clip: float  # max global grad norm; 0: off
    seed: int  # epoch permutations and the model's sampling
    iterations: int | None = None  # steps of batch_size views (release: MAX_ITER)
    lr_steps: tuple[int, ...] = ()  # absolute steps, lr x gamma at each; (): cosine
    gamma: float = 0.1  # not in params: detectron2's step factor
    backbone_lr_factor: float = 1.0  # lr factor of the image trunk (release Mask2Former: 0.1)
    amp: bool = False  # autocast: fp16 + GradScaler on CUDA, bf16 on the CPU (release: on)
    lsj: LsjConfig | None = None  # per-step large-scale jitter (release Mask2Former); None: off


def train_instance_model(
    model: nn.Module,
    views: Sequence[View],
    cfg: InstanceTrainConfig,
    *,
    multiple: int = 1,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``views`` with the schedule ``cfg`` (module docstring). Returns
    ``train_seconds``, ``train_cpu_seconds``, ``seconds_per_epoch`` (epochs run here) and
    ``resumed_after``."""
    c = cfg
    epochs, batch_size, lr, iterations, seed = c.epochs, c.batch_size, c.lr, c.iterations, c.seed
    params = [p for p in model.parameters() if p.requires_grad]
    groups = lr_factor_groups(model, c.backbone_lr_factor, is_trunk)
    opt = make_optimizer(groups, c.optimizer, lr, 0.9, c.weight_decay)
    dev = torch.device(device)
    scaler = torch.amp.GradScaler("cuda") if c.amp and dev.type == "cuda" else None
    n = len(views)
    if n == 0:
        raise TrainingError("no training image")
    steps_per_epoch = -(-n // batch_size)
    if iterations is not None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        epochs = -(-int(iterations) // steps_per_epoch)
        total = int(iterations)
    else:
        total = epochs * steps_per_epoch
    start = 0
    state = None if checkpoint is None else resume_state(checkpoint, fingerprint,
                                                         "WSIS training checkpoint")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"]) + 1
        log.info("resuming after epoch %d from %s", start - 1, checkpoint)
    elif checkpoint is not None and Path(checkpoint).is_file():
        log.info("checkpoint %s is of other params or data: starting fresh", checkpoint)
    if c.lsj is not None and any(v.image is None for v in views):
        raise ValueError("lsj needs views with images (a trainable backbone), not cached "
                         "features")
    rank, size = world()

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        torch.manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
        draws = None if c.lsj is None else lsj_draws(
            n, c.lsj, torch.Generator().manual_seed(seed + 7919 * epoch + 1))
        sums: dict[str, float] = {}
        seen = 0
        for s in tqdm(range(0, n, batch_size), desc=f"wsis epoch {epoch}", disable=None):
            step = epoch * steps_per_epoch + s // batch_size
            if step >= total:
                break
            set_lr(opt, lr * lr_factor(step, total, c.warmup_steps, c.lr_steps, c.gamma))
            idx = perm[s : s + batch_size].tolist()
            batch = [views[i] for i in idx]
            if draws is not None:
                batch = [large_scale_jitter(v, c.lsj, float(d[0]), float(d[1]))
                         for v, d in zip(batch, draws[s : s + batch_size], strict=True)]
            with autocast(dev, c.amp):
                if size > 1:
                    losses, loss = _local_losses(model, batch, rank, size, multiple, device)
                else:
                    losses = model(collate(batch, multiple, device=device))
                    loss = sum(losses.values())
            loss = loss.float()
            if not torch.isfinite(loss):
                raise nonfinite_error(float(loss), stage="wsis", epoch=epoch, step=step,
                                      losses=losses, checkpoint=checkpoint)
            optimizer_step(opt, loss, params, c.grad_clip, scaler=scaler,
                           reduce=(lambda: sum_gradients(params)) if size > 1 else None)
            seen += len(idx)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
        # each rank summed its views' losses (weighted: see _local_losses)
        means = {k: v / seen for k, v in sum_over_ranks(sums).items()}  # seen < n: cut epoch
        means["loss"] = sum(means.values())
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in means.items()})
        return means

    def save(epoch: int, means: dict[str, float]) -> None:
        if checkpoint is not None and rank == 0:
            save_state(checkpoint, model, opt, epoch, fingerprint)

    timing = run_epochs(range(start, epochs), train_epoch, [save, on_epoch])
    sec = timing.seconds
    return {"train_seconds": round(sec, 2), "train_cpu_seconds": round(timing.cpu_seconds, 2),
            "seconds_per_epoch": round(sec / max(1, epochs - start), 2),
            "resumed_after": start - 1 if start else None}


def is_trunk(name: str) -> bool:
    """The image trunk's parameters (Mask2Former's ``trunk``, Mask R-CNN's
    ``rcnn.backbone.body``: the ResNet-50), detectron2's ``SOLVER.BACKBONE_MULTIPLIER`` group
    (Mask2Former's ``build_optimizer``)."""
    return name.startswith(("trunk.", "rcnn.backbone.body."))


def _local_losses(model: nn.Module, batch: Sequence[View], rank: int, world: int,
                  multiple: int, device: torch.device | str
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """This rank's share ``batch[rank::world]`` of a global batch: its losses weighted by its
    share of the batch (so the sum over ranks of the weighted losses is the batch loss), and
    their sum; a rank without a view this step gives zero losses (its gradients are zeros). A
    non-finite loss on any rank is seen by every rank (no rank waits in an all-reduce)."""
    mine = batch[rank::world]
    share = len(mine) / len(batch)
    if mine:
        raw = model(collate(mine, multiple, device=device))
        losses = {k: v * share for k, v in raw.items()}
        loss = sum(losses.values())
    else:
        losses, loss = {}, sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
    if any_rank(not torch.isfinite(loss)) and torch.isfinite(loss):
        loss = loss * float("nan")  # another rank's loss is not finite: stop here too
    return losses, loss


@torch.no_grad()
def predict_results(
    model: nn.Module,
    views: Sequence[View],
    sizes: Mapping[int, tuple[int, int]],
    category_ids: Sequence[int],
    *,
    batch_size: int = 8,
    multiple: int = 1,
    max_det: int = 100,
    device: torch.device | str = "cpu",
) -> list[dict[str, Any]]:
    """COCO results (image_id, category_id, bbox xywh of the mask, score, segmentation RLE) of
    ``model`` on ``views`` (one per image, no flip); ``sizes``: image id -> original (H, W).
    Empty masks are left out; at most ``max_det`` per image, highest scores first."""
    model.eval()
    out: list[dict[str, Any]] = []
    for s in tqdm(range(0, len(views), batch_size), desc="wsis predict", disable=None):
        chunk = views[s : s + batch_size]
        batch = collate(chunk, multiple, with_targets=False, device=device)
        inst = model.instances(batch, [v.factor for v in chunk],
                               [sizes[v.image_id] for v in chunk])
        for v, r in zip(chunk, inst, strict=True):
            scores = r["scores"].float().cpu().numpy()
            order = np.argsort(-scores, kind="stable")[:max_det]
            masks = r["masks"].cpu().numpy()
            boxes, ok = masks_to_boxes(masks[order]) if len(order) else (np.zeros((0, 4)),
                                                                        np.zeros(0, bool))
            for j, k in enumerate(order):
                if not ok[j]:
                    continue
                out.append({"image_id": v.image_id,
                            "category_id": int(category_ids[int(r["labels"][k]) - 1]),
                            "bbox": [round(float(x), 2) for x in xyxy_to_xywh(boxes[j:j + 1])[0]],
                            "score": round(float(scores[k]), 5),
                            "segmentation": encode_mask(masks[k])})
    return out
