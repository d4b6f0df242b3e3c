"""Image tensors for every network (WSOD, retraining, WSIS, figures): normalise, rescale, flip,
pad into a batch.

``img: (H, W, 3)`` uint8 RGB (as ``WeakView.read`` returns); tensors ``(3, H, W)`` float32
normalised with the backbone's MEAN/STD. Boxes ``(R, 4)`` xyxy in pixels; a rescale by factor
``f`` multiplies box coordinates by ``f``; a horizontal flip of width ``W`` maps x to ``W - x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from weaksam.vision.backbones import MEAN, STD

_MEAN = torch.tensor(MEAN).view(3, 1, 1)
_STD = torch.tensor(STD).view(3, 1, 1)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    t = t.float().div_(255.0)
    return (t - _MEAN) / _STD


def scale_factor(height: int, width: int, short_side: int, max_size: int) -> float:
    """Factor that brings the short side to ``short_side`` px with the long side <= max_size
    (Fast R-CNN's multi-scale convention, used by OICR and MIST)."""
    f = short_side / min(height, width)
    if max(height, width) * f > max_size:
        f = max_size / max(height, width)
    return float(f)


def scaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(H, W) px -> the (H', W') px that :func:`rescale` gives for ``factor``."""
    if abs(factor - 1.0) < 1e-9:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def rescale(t: torch.Tensor, factor: float) -> torch.Tensor:
    """(3, H, W) -> (3, round(H f), round(W f)) by bilinear interpolation (antialiased)."""
    if abs(factor - 1.0) < 1e-9:
        return t
    size = scaled_size(t.shape[-2], t.shape[-1], factor)
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False,
                         antialias=factor < 1)[0]


def hflip(t: torch.Tensor) -> torch.Tensor:
    """Flip (3, H, W) left-right."""
    return t.flip(-1)


def transform_boxes(boxes: torch.Tensor, factor: float, flip: bool, width: float) -> torch.Tensor:
    """Boxes (R, 4) xyxy of the original image -> boxes of the rescaled (and flipped) image,
    ``width`` being the rescaled width in pixels."""
    b = boxes * factor
    if flip:  # x1' = width - x2, x2' = width - x1
        b = b[:, [2, 1, 0, 3]]
        b[:, 0::2] = width - b[:, 0::2]
    return b


def pad_batch(tensors: Sequence[torch.Tensor], multiple: int = 1) -> torch.Tensor:
    """Stack (C, h_i, w_i) tensors (images or feature maps) into (B, C, H, W), zero-padded at
    the bottom / right to the largest (h, w) rounded up to ``multiple`` (boxes stay valid:
    padding adds no offset). The one padding of the package: images, cached feature maps
    (:class:`weaksam.vision.features.FeatureBatch`) and the query detector's batches use it."""
    hm = max(t.shape[-2] for t in tensors)
    wm = max(t.shape[-1] for t in tensors)
    hm = -(-hm // multiple) * multiple
    wm = -(-wm // multiple) * multiple
    out = tensors[0].new_zeros((len(tensors), tensors[0].shape[0], hm, wm))
    for i, t in enumerate(tensors):
        out[i, :, : t.shape[-2], : t.shape[-1]] = t
    return out


def valid_mask(sizes: Sequence[tuple[int, int]], shape: tuple[int, int],
               device: torch.device | str | None = None) -> torch.Tensor:
    """(B, h, w) bool, True on the top-left ``sizes[i]`` = (h_i, w_i) cells of each padded
    item (DETR's padding mask convention: True = valid, False = padding)."""
    mask = torch.zeros((len(sizes), *shape), dtype=torch.bool, device=device)
    for i, (h, w) in enumerate(sizes):
        mask[i, :h, :w] = True
    return mask
