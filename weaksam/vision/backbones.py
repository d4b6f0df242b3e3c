"""Convolutional backbones shared by WSOD, retraining, WSIS and the report (ResNet-50:
:mod:`weaksam.vision.resnet`).

Shorthand: B images, 3 input channels, H x W input pixels, ``stride`` = input pixels per
feature cell, ``out_channels`` = D.  ``forward_features(x: (B, 3, H, W)) -> (B, D, H/s, W/s)``
(timm's split of features and heads, STYLE.md item 7). Inputs are RGB in [0, 1] normalised by
``MEAN`` / ``STD`` (ImageNet statistics, the convention of the paper's VGG16 checkpoint).

- ``vgg16``: torchvision VGG16 ``features`` up to conv5_3 + ReLU, D = 512, ImageNet weights
  from a local checkpoint path (no download). ``dilated=True`` is the network of OICR's release
  (ppengtang/oicr ``models/VGG16/train.prototxt``: pool4 removed, conv5_x with dilation 2, RoI
  pooling at spatial scale 1/8) and of MIST's (wetectron ``VGG16-OICR``): stride 8. Without it
  pool4 stays and only pool5 is dropped: stride 16 (the OICR paper's text, Fast R-CNN's VGG16).
  ``frozen_blocks``: conv blocks 1..n get no gradient (both releases freeze conv1 and conv2:
  Caffe ``lr_mult: 0``, wetectron ``FREEZE_CONV_BODY_AT: 2``). :func:`load_vgg16_fc` starts
  the RoI head's fc6 / fc7 from the same checkpoint's classifier layers, as both releases do.
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
    """torchvision VGG16 conv1_1 .. conv5_3 (+ReLU), pool5 dropped: stride 16, D = 512; with
    ``dilated`` pool4 is an identity and conv5_x have dilation 2: stride 8. Layer indices stay
    torchvision's (``features.N``), so a torchvision state dict loads unchanged."""

    #: index of the first layer after conv block n (1..5) in torchvision's ``features``
    BLOCK_END = (5, 10, 17, 24, 30)

    def __init__(self, checkpoint: str | Path | None = None, dilated: bool = False,
                 frozen_blocks: int = 0) -> None:
        super().__init__()
        from torchvision.models import vgg16

        if not 0 <= frozen_blocks <= 5:
            raise ValueError(f"frozen_blocks must be in 0..5, got {frozen_blocks}")
        net = vgg16(weights=None)
        if checkpoint is not None:
            load_state(net, checkpoint)
        layers = list(net.features.children())[:-1]  # pool5 dropped
        if dilated:
            layers[23] = nn.Identity()  # pool4
            for i in (24, 26, 28):  # conv5_1..3: same weights, dilation 2 (padding 2 keeps size)
                layers[i].dilation, layers[i].padding = (2, 2), (2, 2)
        self.features = nn.Sequential(*layers)
        for layer in layers[: self.BLOCK_END[frozen_blocks - 1] if frozen_blocks else 0]:
            layer.requires_grad_(False)
        self.out_channels = 512
        self.stride = 8 if dilated else 16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 512, H/stride, W/stride)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def load_vgg16_fc(fc: nn.Sequential, path: str | Path) -> None:
    """Copy torchvision VGG16's ``classifier.0`` (fc6) and ``classifier.3`` (fc7) from the
    state dict at ``path`` into the first two Linear layers of ``fc`` (an RoI head's FC stack,
    (R, 512 * 7 * 7) -> (R, 4096) -> (R, 4096)). InputError naming the file when the checkpoint
    lacks them or the head's shapes (RoI grid 7, hidden 4096) do not fit."""
    path = Path(path)
    state = read_checkpoint(path)
    linears = [m for m in fc if isinstance(m, nn.Linear)][:2]
    for layer, key in zip(linears, ("classifier.0", "classifier.3"), strict=True):
        w, b = state.get(f"{key}.weight"), state.get(f"{key}.bias")
        if w is None or b is None:
            raise InputError(path, f"checkpoint has no '{key}' (VGG16 fc6 / fc7) weights")
        if tuple(w.shape) != tuple(layer.weight.shape):
            raise InputError(path, f"'{key}.weight' is {tuple(w.shape)} but the RoI head needs "
                             f"{tuple(layer.weight.shape)} (RoI grid 7 x 7, hidden 4096)")
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)


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
    dilated: bool = False,
    frozen_blocks: int = 0,
) -> nn.Module:
    """Backbone by name (``small_cnn`` | ``vgg16``), weights from ``checkpoint`` when given.

    A ``small_cnn`` checkpoint is the ``backbone`` entry of ``pipeline/backbone_pretrain.py``'s
    file;
    ``dilated`` and ``frozen_blocks`` apply to ``vgg16`` only (see :class:`VGG16Conv5`).
    """
    if name == "vgg16":
        return VGG16Conv5(checkpoint, dilated=dilated, frozen_blocks=frozen_blocks)
    if name == "small_cnn":
        net = SmallCNN(widths=widths, stem=stem, convs=convs)
        if checkpoint is not None:
            load_state(net, checkpoint, key="backbone")
        return net
    raise ValueError(f"unknown backbone {name!r}; expected small_cnn or vgg16")
