"""Image-level training of the CAM network (paper Sec. 3.1; WeakTr's classification stage).

Shorthand: N images, C classes, S the square network input size in pixels.
    images: (N, 3, S, S) uint8 RGB, resized from the original (aspect not kept)
    labels: (N, C) float32 multi-hot image-level labels (from ``WeakView`` only)

Augmentation: random horizontal flip and translation (always); optionally WeakTr's training
transforms (its ``main.py`` defaults, through timm's ``create_transform``): RandAugment
``rand-m9-mstd0.5-inc1`` on the uint8 image and random erasing (probability 0.25, "pixel" mode:
one rectangle of 2-33 % of the image, aspect 0.3-3.3, filled with N(0, 1) noise in normalised
units) on the normalised tensor.

Devices: the model and every batch live on ``device``; ``amp`` runs forward passes under float16
autocast with a gradient scaler on CUDA (WeakTr trains under ``torch.cuda.amp.autocast`` with
timm's ``NativeScaler``) and under bfloat16 autocast without a scaler on the CPU. Random
numbers always come from CPU generators, so the draws do not depend on the device.

Training is deterministic and resumable: epoch ``e`` draws its shuffle and augmentation from a
generator seeded with ``(seed, e)``, the learning rate is a pure function of the global step,
and a checkpoint (model, optimizer, epoch, history, fingerprint) is written atomically after
every epoch. A run restarted from the checkpoint of epoch ``e`` therefore produces the same
weights as an uninterrupted run.

Data parallel (a process group of W ranks, ``weaksam.engine.world``): every rank draws the
same shuffle and augments the whole global batch of B images from the same generator (so the
draws do not depend on W), then rank r trains on images ``r, r + W, ...`` of it with its BCE
weighted by its share of the batch; the gradients are summed over the ranks (one all-reduce),
so a step is the one-process step up to the order of float additions. Each rank reseeds
torch's global generator (stochastic depth) with ``(seed, epoch, rank)`` every epoch. Rank 0
evaluates the held-out images and writes the checkpoint; the epoch loss is over all ranks.
W = 1 runs the one-process code unchanged.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from weaksam.clues.model import CluesViT
from weaksam.engine.checkpoint import resume_state, save_state
from weaksam.engine.guard import nonfinite_error
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import make_optimizer, optimizer_step
from weaksam.engine.schedule import set_lr
from weaksam.engine.schedule import warmup_cosine_floor_lr as lr_at
from weaksam.engine.world import any_rank, sum_gradients_flagged, sum_over_ranks, world
from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path
from weaksam.utils.checkpoint import read_checkpoint

__all__ = ["CluesTrainConfig", "augment", "autocast", "build_model", "classification_map", "fit",
           "holdout_split", "load_checkpoint", "load_images", "load_model", "lr_at", "normalize",
           "predict_scores", "rand_augment", "random_erasing", "resize_square", "save_model"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 (bilinear; area when shrinking)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def load_images(read: Callable[[int], np.ndarray], count: int, size: int) -> torch.Tensor:
    """Read ``count`` images through ``read(i)`` and stack them: ``(N, 3, size, size)`` uint8."""
    out = torch.empty((count, 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(count), desc="load images", disable=None, leave=False):
        out[i] = torch.from_numpy(resize_square(read(i), size)).permute(2, 0, 1)
    return out


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 normalised with the ImageNet mean and std (same device)."""
    x = images.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (x - mean) / std


def autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision when ``enabled``: float16 autocast on a CUDA ``device`` (WeakTr's
    ``torch.cuda.amp.autocast``), bfloat16 autocast on the CPU (so a dry run of a paper
    profile executes the ``amp`` path here; float16 on the CPU would need loss scaling, which
    stays CUDA-only). A no-op when not enabled: the default profile has ``amp: false``."""
    if not enabled:
        return contextlib.nullcontext()
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _posterize_zero_ok(img, bits_to_keep: int, **kw):
    """timm's ``posterize``; 0 bits gives the all-black image Pillow < 10 returned (WeakTr's
    environment) instead of Pillow's ValueError."""
    from timm.data.auto_augment import posterize

    return img.point(lambda _: 0) if bits_to_keep < 1 else posterize(img, bits_to_keep, **kw)


def rand_augment(images: torch.Tensor, config: str, generator: torch.Generator) -> torch.Tensor:
    """timm RandAugment (``config`` e.g. WeakTr's ``"rand-m9-mstd0.5-inc1"``: 2 operations per
    image, magnitude 9 with noise std 0.5, magnitude-increasing variants) on each image of
    ``images (B, 3, S, S)`` uint8 (CPU) -> same shape and dtype. Hyper-parameters as timm's
    ``transforms_imagenet_train`` (translate 45 % of the side, fill with the ImageNet mean,
    bicubic). timm draws from Python's and NumPy's global generators: they are seeded from
    ``generator`` here and restored afterwards, so the result is a function of ``generator``."""
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform

    side = int(min(images.shape[-2:]))
    hp = {"translate_const": int(side * 0.45),
          "img_mean": tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN),
          "interpolation": Image.BICUBIC}
    ra = rand_augment_transform(config, hp)
    for op in ra.ops:  # Pillow >= 10 rejects posterize to 0 bits, which timm reaches at
        if op.name.startswith("Posterize"):  # magnitude 10 (m9 + noise): keep the old result
            op.aug_fn = _posterize_zero_ok
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        random.seed(_seed_from(generator))
        np.random.seed(_seed_from(generator))
        out = torch.empty_like(images)
        for i in range(len(images)):
            im = Image.fromarray(images[i].permute(1, 2, 0).numpy())
            out[i] = torch.from_numpy(np.asarray(ra(im), dtype=np.uint8).copy()).permute(2, 0, 1)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return out


def random_erasing(x: torch.Tensor, probability: float, generator: torch.Generator,
                   min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
                   attempts: int = 10) -> torch.Tensor:
    """Random erasing as timm's ``RandomErasing(probability, mode="pixel", max_count=1)``
    (WeakTr: ``--reprob 0.25 --remode pixel --recount 1``) on ``x (B, 3, H, W)`` normalised.

    Each image, with ``probability``: up to ``attempts`` draws of a target area
    ``U(min_area, max_area) * H * W`` and a log-uniform aspect in ``[min_aspect, 1/min_aspect]``;
    the first rectangle ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``
    with ``h < H`` and ``w < W`` is placed uniformly and filled with N(0, 1) per pixel and
    channel. Returns a new tensor on ``x``'s device."""
    b, c, hh, ww = x.shape
    out = x.clone()
    lo, hi = math.log(min_aspect), math.log(1.0 / min_aspect)
    for i in range(b):
        if float(torch.rand((), generator=generator)) >= probability:
            continue
        for _ in range(attempts):
            u = torch.rand(2, generator=generator).tolist()
            area = (min_area + (max_area - min_area) * u[0]) * hh * ww
            aspect = math.exp(lo + (hi - lo) * u[1])
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < hh and 0 < w < ww:
                top = int(torch.randint(0, hh - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, ww - w + 1, (1,), generator=generator))
                noise = torch.randn((c, h, w), generator=generator)
                out[i, :, top : top + h, left : left + w] = noise.to(out.device, out.dtype)
                break
    return out


def augment(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random translation of up to ``shift`` px (reflect pad),
    per image. ``x: (B, 3, S, S)`` float -> same shape."""
    b, _, h, w = x.shape
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    if shift <= 0:
        return x
    pad = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of a seeded random hold-out of ``round(fraction * n)`` images
    (at least one on each side when ``0 < fraction`` and ``n >= 2``), each sorted."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


def classification_map(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of sklearn's average precision, in %. ``scores, labels: (N, C)``.

    Classes without a positive image in ``labels`` are skipped (AP undefined); NaN when none
    has one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    aps = [
        average_precision_score(labels[:, c], scores[:, c])
        for c in range(labels.shape[1])
        if labels[:, c].any()
    ]
    return float(100.0 * np.mean(aps)) if aps else float("nan")


@torch.no_grad()
def predict_scores(model: CluesViT, images: torch.Tensor, batch_size: int = 64,
                   device: torch.device | str = "cpu", amp: bool = False) -> np.ndarray:
    """Class probabilities ``(N, C)`` float32 of ``images (N, 3, S, S)`` uint8 (single scale),
    computed on ``device`` (where the model is)."""
    model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        with autocast(device, amp):
            o = model(normalize(images[s : s + batch_size].to(device)))
        out.append(model.class_scores({k: v.float() for k, v in o.items()}).cpu())
    if not out:
        return np.zeros((0, model.num_classes), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed * 100003 + epoch)
    return g


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint or model file written by torch.save (InputError when unreadable)."""
    return read_checkpoint(path, weights_only=False)


@dataclass(frozen=True, kw_only=True)
class CluesTrainConfig:
    """Schedule and augmentation of :func:`fit`: the training keys of params.yaml
    ``clues_train`` (the section's other keys are the architecture's, the stage's), ``seed``
    from the training seed. Defaults equal params.yaml's (``tests/test_config.py``)."""

    epochs: int
    batch_size: int
    lr: float  # AdamW, linear warm-up then cosine
    weight_decay: float
    warmup_epochs: float  # warm-up length in epochs (rounded to steps)
    shift: int  # px, random translation (plus horizontal flips)
    seed: int
    amp: bool = False  # float16 autocast + grad scaler on CUDA; ignored on the CPU
    randaugment: str | None = None  # timm RandAugment string; None or "": off
    erasing: float = 0.0  # random-erasing probability (0: off)


def fit(
    model: CluesViT,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    cfg: CluesTrainConfig,
    *,
    checkpoint: str | Path,
    fingerprint: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Train with AdamW on multi-label BCE (schedule ``cfg``), resuming from ``checkpoint``
    when it holds the same ``fingerprint`` (params + data); otherwise start fresh. After every
    epoch ``e`` (1-based): evaluate held-out mAP, call ``on_epoch(e, metrics)``, then save the
    checkpoint. ``stop_after`` ends the run after that epoch (simulates a killed run in tests).
    ``device``: where the model and batches go (images stay uint8 on the CPU until batched);
    ``cfg.amp``: mixed precision on CUDA (module docstring).
    Returns the per-epoch metrics (``loss``, ``val_map`` in %, ``lr``) of all epochs so far.
    """
    c = cfg
    epochs, batch_size, lr, weight_decay, shift, seed = (c.epochs, c.batch_size, c.lr,
                                                        c.weight_decay, c.shift, c.seed)
    warmup_epochs, amp, randaugment, erasing = c.warmup_epochs, c.amp, c.randaugment, c.erasing
    device = torch.device(device)
    model.to(device)
    opt = make_optimizer(list(model.parameters()), "adamw", lr, 0.9, weight_decay)
    use_scaler = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    start, history = 0, []
    state = resume_state(checkpoint, fingerprint, "clues training checkpoint", weights_only=False)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start, history = int(state["epoch"]), list(state["history"])
    n = len(train_images)
    if n == 0:
        raise ValueError("no training images")
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    rank, size = world()
    params = list(model.parameters())

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        g = _epoch_generator(seed, epoch)
        if size > 1:  # stochastic depth: each rank its own stream, a function of the epoch
            torch.manual_seed((seed * 100003 + epoch) * 1009 + rank)
        perm = torch.randperm(n, generator=g)
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", disable=None,
                   leave=False)
        for it in bar:
            step = (epoch - 1) * steps_per_epoch + it
            cur_lr = lr_at(step, total, lr, warmup)
            set_lr(opt, cur_lr)
            idx = perm[it * batch_size : (it + 1) * batch_size]
            raw = train_images[idx]
            if randaugment:
                raw = rand_augment(raw, randaugment, g)
            x = augment(normalize(raw.to(device)), shift, g)
            if erasing > 0:
                x = random_erasing(x, erasing, g)
            if size > 1:
                loss, local = _local_loss(model, x, train_labels[idx], rank, size, amp, device)
                if any_rank(not torch.isfinite(loss)):
                    raise nonfinite_error(float(loss), stage="clues_train", epoch=epoch,
                                          step=it, checkpoint=checkpoint)
                optimizer_step(opt, loss, scaler=scaler, reduce=lambda: _sum_gradients(params))
                loss_sum += local
                continue
            with autocast(device, amp):
                out = model(x)
            out = {k: v.float() for k, v in out.items()}
            losses = model.losses(out, train_labels[idx].to(device))
            if not torch.isfinite(losses["loss"]):
                raise nonfinite_error(float(losses["loss"]), stage="clues_train", epoch=epoch,
                                      step=it, checkpoint=checkpoint)
            optimizer_step(opt, losses["loss"], scaler=scaler)
            loss_sum += float(losses["loss"].detach()) * len(idx)
        if size > 1:
            loss_sum = sum_over_ranks({"loss": loss_sum})["loss"]
        metrics = {"loss": loss_sum / n, "lr": cur_lr}
        if len(val_images) and rank == 0:
            metrics["val_map"] = classification_map(
                predict_scores(model, val_images, batch_size, device, amp), val_labels.numpy()
            )
        return metrics

    def save(epoch: int, metrics: dict[str, float]) -> None:
        if rank != 0:
            return
        save_state(checkpoint, {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "history": history,
            "fingerprint": fingerprint,
            "scaler": scaler.state_dict() if scaler is not None else None,
        })

    run_epochs(range(start + 1, epochs + 1), train_epoch,
               [lambda e, m: history.append(m), on_epoch, save],
               stop=lambda e: stop_after is not None and e >= stop_after)
    return history


def _sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Each ``p.grad`` becomes its sum over the ranks (one all-reduce); a parameter no rank
    has a gradient for keeps ``None``, as one process's ``backward`` leaves it (AdamW skips
    it: no weight decay)."""
    grads, _ = sum_gradients_flagged(params, torch.zeros(1, device=params[0].device))
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.clone()


def _local_loss(model: CluesViT, x: torch.Tensor, labels: torch.Tensor, rank: int, world: int,
                amp: bool, device: torch.device) -> tuple[torch.Tensor, float]:
    """This rank's share ``r::W`` of a global batch ``x (B, 3, S, S)`` (augmented, on
    ``device``) with ``labels (B, C)``: its BCE weighted by its share ``b / B`` (the sum over
    ranks is the batch's mean BCE) and its unweighted BCE times ``b`` (its part of the epoch
    loss sum). A rank with no image this step (B < W) gives a zero loss that still reaches
    every parameter, so its all-reduce carries zeros."""
    mine = slice(rank, None, world)
    xb, yb = x[mine], labels[mine].to(device)
    if len(xb) == 0:
        return sum(p.sum() * 0.0 for p in model.parameters()), 0.0
    with autocast(device, amp):
        out = model(xb)
    loss = model.losses({k: v.float() for k, v in out.items()}, yb)["loss"]
    return loss * (len(xb) / len(x)), float(loss.detach()) * len(xb)


def build_model(arch: dict, num_classes: int) -> CluesViT:
    """Build :class:`CluesViT` from an architecture dict saved beside the weights
    (keys: img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, cross_layers, stem,
    optionally drop_path_rate)."""
    return CluesViT(num_classes=num_classes, **arch)


def save_model(path: str | Path, model: CluesViT, arch: dict, category_ids: Sequence[int]) -> None:
    """Write final weights with their architecture and class order (atomic)."""
    with atomic_path(path) as tmp:
        torch.save(
            {"model": model.state_dict(), "arch": dict(arch), "category_ids": list(category_ids)},
            tmp,
        )


def load_model(path: str | Path) -> tuple[CluesViT, list[int]]:
    """Load a model written by :func:`save_model` -> (model in eval mode, category ids)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"model", "arch", "category_ids"} <= set(state):
        raise InputError(path, "not a clues model file (needs model, arch, category_ids)")
    model = build_model(state["arch"], len(state["category_ids"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, [int(c) for c in state["category_ids"]]
