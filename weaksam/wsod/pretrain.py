"""Pre-train the small backbone on image-level labels (multi-label BCE), once for every WSOD
and retraining variant: the default profile's analogue of the paper's ImageNet pre-training
(DESIGN.md, "Models in the default profile"). Reads the training split only through a
``WeakView`` (image-level labels, never a box or mask).

Shorthand: N images, C classes; images are resized to ``image_size`` x ``image_size`` px.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn
from tqdm import tqdm

from weaksam.data.weak import WeakView
from weaksam.engine.guard import check_finite
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import make_optimizer, optimizer_step
from weaksam.vision.backbones import SmallCNN
from weaksam.vision.imaging import to_tensor

log = logging.getLogger(__name__)


class ImageClassifier(nn.Module):
    """Backbone + global pooling + linear: image-level multi-label classifier used to pre-train
    the backbone. ``forward(x (B, 3, H, W)) -> logits (B, C)``."""

    def __init__(self, backbone: nn.Module, num_classes: int, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be avg or max, got {pool!r}")
        self.backbone = backbone
        self.pool = pool
        self.head = nn.Linear(backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        f = f.mean(dim=(2, 3)) if self.pool == "avg" else f.amax(dim=(2, 3))
        return self.head(f)


def load_resized(view: WeakView, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of ``view`` as (N, 3, S, S) normalised float32 and labels (N, C) float32."""
    xs = []
    for i in tqdm(range(len(view)), desc="load images", disable=None):
        t = to_tensor(view.read(i))
        xs.append(F.interpolate(t[None], size=(image_size, image_size), mode="bilinear",
                                align_corners=False, antialias=True)[0])
    x = torch.stack(xs) if xs else torch.zeros((0, 3, image_size, image_size))
    return x, torch.from_numpy(view.labels())


def mean_ap(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Image-level classification mAP in % over classes with at least one positive."""
    y, s = labels.numpy(), logits.numpy()
    aps = [average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    return float(100.0 * np.mean(aps)) if aps else 0.0


def augment(x: torch.Tensor, g: torch.Generator, min_crop: float) -> torch.Tensor:
    """Random resized crop (side fraction in [min_crop, 1], resized back) and random
    horizontal flip of each image of (B, 3, S, S)."""
    b, _, s, _ = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        c = max(8, round(s * (min_crop + (1 - min_crop) * float(torch.rand(1, generator=g)))))
        y0, x0 = (int(torch.randint(s - c + 1, (1,), generator=g)) for _ in range(2))
        crop = x[i : i + 1, :, y0 : y0 + c, x0 : x0 + c]
        crop = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)[0]
        out[i] = crop.flip(-1) if float(torch.rand(1, generator=g)) < 0.5 else crop
    return out


@torch.no_grad()
def predict(model: ImageClassifier, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Logits (N, C) on the CPU of images (N, 3, S, S) in eval mode (batches go to the model's
    device)."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(dev)).cpu()
                      for i in range(0, len(x), batch_size)])


@dataclass(frozen=True, kw_only=True)
class BackbonePretrainConfig:
    """Params ``backbone_pretrain``: the small CNN (``widths`` of its stages, ``stem`` width,
    ``convs`` per stage), the classifier's ``pool`` (avg | max), the input side ``image_size``
    (px), the random resized crop's smallest side fraction ``min_crop``, and AdamW's
    one-cycle schedule (``epochs``, ``batch_size`` images per step, peak ``lr``,
    ``weight_decay``). No defaults: every key comes from params."""

    widths: tuple[int, ...]
    stem: int
    convs: int
    pool: str
    image_size: int
    min_crop: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float


def pretrain_backbone(
    train: WeakView,
    cfg: BackbonePretrainConfig,
    *,
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ImageClassifier, dict[str, float]]:
    """Train ``SmallCNN + pool + linear`` with BCE on image labels (``weaksam.engine``'s loop,
    optimiser step and non-finite check); AdamW with one-cycle decay, random resized crops
    (``cfg.min_crop``) and flips. Returns the classifier and its final train metrics (``loss``,
    ``train_map`` in %); ``on_epoch(epoch, metrics)`` after each epoch. The model and each
    batch go to ``device``; images stay on the CPU between batches and augmentation draws
    from a CPU generator (same draws on any device)."""
    batch_size, min_crop, epochs, lr = cfg.batch_size, cfg.min_crop, cfg.epochs, cfg.lr
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ImageClassifier(SmallCNN(widths=cfg.widths, stem=cfg.stem, convs=cfg.convs),
                            train.num_classes, pool=cfg.pool).to(device)
    x, y = load_resized(train, cfg.image_size)
    n = len(x)
    steps = max(1, epochs * (-(-n // batch_size)))
    opt = make_optimizer(list(model.parameters()), "adamw", lr, 0.0, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        perm = torch.randperm(n, generator=g)
        total, seen = 0.0, 0
        for step, s in enumerate(tqdm(range(0, n, batch_size), desc=f"pretrain {epoch}",
                                      disable=None)):
            idx = perm[s : s + batch_size]
            xb = augment(x[idx], g, min_crop).to(device)
            # per-element BCE (B, C), reduced here: sum over classes, mean over images
            per = F.binary_cross_entropy_with_logits(model(xb), y[idx].to(device),
                                                     reduction="none")
            loss = per.sum(1).mean()
            check_finite(float(loss.detach()), stage="backbone_pretrain", epoch=epoch, step=step)
            optimizer_step(opt, loss)
            sched.step()
            total += float(per.detach().sum()) / y.shape[1]
            seen += len(idx)
        return {"loss": total / max(seen, 1)}

    history: list[dict[str, float]] = []

    def record(epoch: int, means: dict[str, float]) -> None:
        history.append(means)
        log.info("pretrain epoch %d: loss %.4f", epoch, means["loss"])

    run_epochs(range(epochs), train_epoch, hooks=(record, on_epoch))
    metrics = history[-1] if history else {}
    metrics["train_map"] = mean_ap(predict(model, x), y)
    return model, metrics
