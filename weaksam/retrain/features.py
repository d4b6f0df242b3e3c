"""Cached feature maps of a frozen backbone, computed once per split and shared by every
retraining run of the default profile (stage ``retrain_features``; the WSIS stages may reuse it).

Shorthand: N images, D channels, ``stride`` input px per feature cell. Each image is rescaled so
its short side is ``short_side`` px with the long side at most ``max_size`` px (Fast R-CNN's
convention, :func:`weaksam.vision.imaging.scale_factor`), normalised (``to_tensor``), and run
through ``backbone.forward_features``. Stored per image: ``maps[i]`` (D, h_i, w_i) float16, the
rescaled input size ``sizes[i]`` = (H'_i, W'_i) px, the factor ``factors[i]`` (rescaled px per
original px) and, when ``flip``, ``maps_flip[i]``: the maps of the horizontally flipped input
(not a flip of ``maps[i]``: a CNN is not flip-equivariant).

API:
    store = compute_features(backbone, image_ids, read, short_side=160, max_size=320, flip=True)
    save_features(path, store); store = load_features(path)
    store.map(i, flip=False) -> (D, h, w) float32
Box coordinates of the original image map to the input frame by ``factors[i]`` (and a flip of
width ``sizes[i][1]``: :func:`weaksam.vision.imaging.transform_boxes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path
from weaksam.utils.checkpoint import read_checkpoint
from weaksam.vision.imaging import hflip, rescale, scale_factor, to_tensor

FORMAT = "weaksam.retrain.features/1"


@dataclass
class FeatureStore:
    """Frozen-backbone maps of one split (see the module docstring for the fields)."""

    image_ids: list[int]
    sizes: list[tuple[int, int]]
    factors: list[float]
    maps: list[torch.Tensor]
    maps_flip: list[torch.Tensor] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    def map(self, i: int, flip: bool = False) -> torch.Tensor:
        """(D, h, w) float32 maps of the i-th image (of its flipped input when ``flip``)."""
        if flip:
            if self.maps_flip is None:
                raise ValueError("this feature store has no flipped maps (computed with flip off)")
            return self.maps_flip[i].float()
        return self.maps[i].float()


@torch.no_grad()
def compute_features(
    backbone: nn.Module,
    image_ids: Sequence[int],
    read: Callable[[int], np.ndarray],
    *,
    short_side: int,
    max_size: int,
    flip: bool,
    meta: dict[str, Any] | None = None,
) -> FeatureStore:
    """Run the frozen ``backbone`` (eval mode: BatchNorm running statistics) over every image.

    ``read(i)`` returns the (H, W, 3) uint8 pixels of ``image_ids[i]``."""
    backbone.eval()
    sizes, factors, maps, maps_flip = [], [], [], []
    for i, _ in enumerate(tqdm(image_ids, desc="features", disable=None)):
        img = to_tensor(read(i))
        f = scale_factor(img.shape[1], img.shape[2], short_side, max_size)
        x = rescale(img, f)
        sizes.append((int(x.shape[1]), int(x.shape[2])))
        factors.append(f)
        maps.append(backbone.forward_features(x[None])[0].half())
        if flip:
            maps_flip.append(backbone.forward_features(hflip(x)[None])[0].half())
    info = dict(meta or {}, short_side=int(short_side), max_size=int(max_size), flip=bool(flip))
    return FeatureStore([int(i) for i in image_ids], sizes, factors, maps,
                        maps_flip if flip else None, info)


def save_features(path: str | Path, store: FeatureStore) -> None:
    """Write ``store`` atomically (one torch file per split)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "image_ids": store.image_ids, "sizes": store.sizes,
                    "factors": store.factors, "maps": store.maps, "maps_flip": store.maps_flip,
                    "meta": store.meta}, tmp)


def load_features(path: str | Path) -> FeatureStore:
    """Read a file written by :func:`save_features` (InputError naming it otherwise)."""
    d = read_checkpoint(path, "feature cache")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise InputError(path, f"not a feature cache (expected format {FORMAT})")
    return FeatureStore(list(d["image_ids"]), [tuple(s) for s in d["sizes"]],
                        list(d["factors"]), list(d["maps"]), d["maps_flip"], dict(d["meta"]))
