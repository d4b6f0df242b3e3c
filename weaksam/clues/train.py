"""Image-level training of the CAM network (paper Sec. 3.1; WeakTr's classification stage).

Shorthand: N images, C classes, S the square network input size in pixels.
    images: (N, 3, S, S) uint8 RGB, resized from the original (aspect not kept)
    labels: (N, C) float32 multi-hot image-level labels (from ``WeakView`` only)

Training is deterministic and resumable: epoch ``e`` draws its shuffle and augmentation from a
generator seeded with ``(seed, e)``, the learning rate is a pure function of the global step,
and a checkpoint (model, optimizer, epoch, history, fingerprint) is written atomically after
every epoch. A run restarted from the checkpoint of epoch ``e`` therefore produces the same
weights as an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from weaksam.clues.model import CluesViT
from weaksam.errors import InputError, TrainingError
from weaksam.utils.atomic import atomic_path
from weaksam.utils.checkpoint import read_checkpoint

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
    """(B, 3, H, W) uint8 -> float32 normalised with the ImageNet mean and std."""
    x = images.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random translation of up to ``shift`` px (reflect pad),
    per image. ``x: (B, 3, S, S)`` float -> same shape."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
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
def predict_scores(model: CluesViT, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, C)`` float32 of ``images (N, 3, S, S)`` uint8 (single scale)."""
    model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        out.append(model.class_scores(model(normalize(images[s : s + batch_size]))))
    if not out:
        return np.zeros((0, model.num_classes), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def lr_at(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 1% of ``base_lr``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed * 100003 + epoch)
    return g


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a training checkpoint atomically (torch.save)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (InputError when unreadable)."""
    return read_checkpoint(path, weights_only=False)


def fit(
    model: CluesViT,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    shift: int,
    seed: int,
    checkpoint: str | Path,
    fingerprint: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
) -> list[dict[str, float]]:
    """Train with AdamW on multi-label BCE, resuming from ``checkpoint`` when it holds the same
    ``fingerprint`` (params + data); otherwise start fresh. After every epoch ``e`` (1-based):
    evaluate held-out mAP, call ``on_epoch(e, metrics)``, then save the checkpoint.
    ``stop_after`` ends the run after that epoch (simulates a killed run in tests).
    Returns the per-epoch metrics (``loss``, ``val_map`` in %, ``lr``) of all epochs so far.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    start, history = 0, []
    ckpt_path = Path(checkpoint)
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start, history = int(state["epoch"]), list(state["history"])
    n = len(train_images)
    if n == 0:
        raise ValueError("no training images")
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    for epoch in range(start + 1, epochs + 1):
        model.train()
        g = _epoch_generator(seed, epoch)
        perm = torch.randperm(n, generator=g)
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", disable=None,
                   leave=False)
        for it in bar:
            step = (epoch - 1) * steps_per_epoch + it
            cur_lr = lr_at(step, total, lr, warmup)
            for group in opt.param_groups:
                group["lr"] = cur_lr
            idx = perm[it * batch_size : (it + 1) * batch_size]
            x = augment(normalize(train_images[idx]), shift, g)
            losses = model.losses(model(x), train_labels[idx])
            if not torch.isfinite(losses["loss"]):
                raise TrainingError(f"non-finite loss at epoch {epoch} step {it}")
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            loss_sum += float(losses["loss"].detach()) * len(idx)
        metrics = {"loss": loss_sum / n, "lr": cur_lr}
        if len(val_images):
            metrics["val_map"] = classification_map(
                predict_scores(model, val_images, batch_size), val_labels.numpy()
            )
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "history": history,
                "fingerprint": fingerprint,
            },
        )
        if stop_after is not None and epoch >= stop_after:
            break
    return history


def build_model(arch: dict, num_classes: int) -> CluesViT:
    """Build :class:`CluesViT` from an architecture dict saved beside the weights
    (keys: img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, cross_layers)."""
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
