"""Convolutional backbones shared by every WSOD variant (and the retraining stage).

Shorthand: B images, 3 input channels, H x W input pixels, ``stride`` = input pixels per
feature cell, ``out_channels`` = D.  ``forward_features(x: (B, 3, H, W)) -> (B, D, H/s, W/s)``
(timm's split of features and heads, STYLE.md item 7). Inputs are RGB in [0, 1] normalised by
``MEAN`` / ``STD`` (ImageNet statistics, the convention of the paper's VGG16 checkpoint).

- ``vgg16``: torchvision VGG16 ``features`` up to conv5_3 + ReLU (the last max-pool removed,
  stride 16, D = 512), as OICR and MIST use it (paper Sec. 4.1: VGG-16 backbone). Weights come
  from a local checkpoint path (no download).
- ``small_cnn``: a small VGG-style CNN (conv-BN-ReLU stages, stride 8) for the default
  profile; pre-trained once on image-level labels by ``pipeline/backbone_pretrain.py`` (the
  analogue of ImageNet pre-training, DESIGN.md "Models in the default profile").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from weaksam.errors import InputError
from weaksam.utils.checkpoint import read_checkpoint

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    """VGG-style CNN: stride-2 stem, then one stage per width (``convs`` x conv3x3-BN-ReLU) with
    a 2x2 max-pool between stages. ``widths=(32, 64, 128)`` gives stride 8 and D = 128."""

    def __init__(
        self, widths: Sequence[int] = (32, 64, 128), stem: int = 24, convs: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        ]
        c_in = stem
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            for _ in range(convs):
                layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True)]
                c_in = w
        self.features = nn.Sequential(*layers)
        self.out_channels = int(widths[-1])
        self.stride = 2 * 2 ** (len(widths) - 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, D, ceil(H/stride), ceil(W/stride))."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class VGG16Conv5(nn.Module):
    """torchvision VGG16 conv1_1 .. conv5_3 (+ReLU), last max-pool dropped: stride 16, D = 512."""

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg16

        net = vgg16(weights=None)
        if checkpoint is not None:
            load_state(net, checkpoint)
        self.features = nn.Sequential(*list(net.features.children())[:-1])
        self.out_channels = 512
        self.stride = 16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 512, H/16, W/16)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def load_state(module: nn.Module, path: str | Path, key: str | None = None) -> None:
    """Load a state dict (optionally ``ckpt[key]``) into ``module``; InputError naming the file
    when it is missing, unreadable or does not fit."""
    path = Path(path)
    state = read_checkpoint(path)
    if key is not None:
        if key not in state:
            raise InputError(path, f"checkpoint has no '{key}' entry")
        state = state[key]
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(path, f"checkpoint does not match the model ({e})") from e


def build_backbone(
    name: str,
    checkpoint: str | Path | None = None,
    widths: Sequence[int] = (32, 64, 128),
    stem: int = 24,
    convs: int = 1,
) -> nn.Module:
    """Backbone by name (``small_cnn`` | ``vgg16``), weights from ``checkpoint`` when given.

    A ``small_cnn`` checkpoint is the ``backbone`` entry written by :func:`save_backbone`.
    """
    if name == "vgg16":
        return VGG16Conv5(checkpoint)
    if name == "small_cnn":
        net = SmallCNN(widths=widths, stem=stem, convs=convs)
        if checkpoint is not None:
            load_state(net, checkpoint, key="backbone")
        return net
    raise ValueError(f"unknown backbone {name!r}; expected small_cnn or vgg16")


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
