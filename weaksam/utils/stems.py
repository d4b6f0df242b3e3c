"""Convolutional patch stems for ViTs trained from scratch (default profile).

"Early convolutions help transformers see better" (Xiao et al., 2021): replacing a ViT's
linear ``patch x patch`` projection with a few 3x3 stride-2 convolutions makes it trainable
from scratch on little data. Used by the CAM ViT (weaksam/clues/model.py) and the small SAM's
image encoder (weaksam/sam/model.py).
"""

from __future__ import annotations

from torch import nn


def conv_stem(in_ch: int, dim: int, patch: int) -> nn.Sequential:
    """``log2(patch)`` 3x3 stride-2 convolutions (GELU between) widening to ``dim`` channels.

    ``(B, in_ch, H, W) -> (B, dim, H / patch, W / patch)``, the same grid as a
    ``Conv2d(in_ch, dim, patch, stride=patch)`` patch projection; ``patch`` a power of 2 >= 2.
    """
    if patch < 2 or patch & (patch - 1):
        raise ValueError(f"conv stem needs a power-of-2 patch size >= 2, got {patch}")
    steps = patch.bit_length() - 1
    layers: list[nn.Module] = []
    for i in range(steps):
        out_ch = dim if i == steps - 1 else max(16, dim >> (steps - 1 - i))
        layers.append(nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1))
        if i < steps - 1:
            layers.append(nn.GELU())
        in_ch = out_ch
    return nn.Sequential(*layers)
