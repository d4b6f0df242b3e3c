"""Training and test views of the WSIS models: rescaled images, instance targets, and the frozen
backbone's features computed once.

Shorthand: G instances of one image, C classes (labels 1..C, 0 = background, torchvision's
convention), H x W original pixels, h x w rescaled pixels (short side ``short_side``, long side
at most ``max_size``: Mask R-CNN's resize rule), D_l channels of feature level l.

- :func:`instance_targets`: COCO annotations with RLE masks (pseudo masks, or the ground truth
  for the upper reference) -> per image ``boxes (G, 4)`` float32 xyxy px, ``labels (G,)``
  int64 in 1..C, ``masks (G, H, W)`` bool. A box is the mask's tight box.
- :class:`View`: one (image, flip) at the training scale: ``size (h, w)``, the input image
  ``(3, h, w)`` (normalised with the backbone's MEAN / STD) unless features are cached, the
  frozen backbone's feature levels ``[(D_l, h_l, w_l)]`` (float16) when cached, and the
  targets ``boxes (G, 4)``, ``labels (G,)``, ``masks (G, h, w)`` uint8 at that scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from weaksam.eval.mask_ap import decode_segmentation
from weaksam.utils.boxes import masks_to_boxes
from weaksam.vision.imaging import hflip, rescale, scale_factor, to_tensor


@dataclass
class Targets:
    """Instances of one image: ``boxes (G, 4)`` float32 xyxy px, ``labels (G,)`` int64 1..C,
    ``masks (G, H, W)`` bool."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def instance_targets(coco: Mapping[str, Any], category_ids: Sequence[int]
                     ) -> dict[int, Targets]:
    """COCO annotations with ``segmentation`` -> image id -> :class:`Targets` (every image of
    ``coco["images"]``, possibly with no instance). Crowd and empty masks are left out."""
    label = {int(c): k + 1 for k, c in enumerate(category_ids)}
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in coco["images"]}
    per: dict[int, list[tuple[int, np.ndarray]]] = {i: [] for i in sizes}
    for a in coco.get("annotations", []):
        if a.get("iscrowd", 0):
            continue
        iid = int(a["image_id"])
        h, w = sizes[iid]
        m = decode_segmentation(a["segmentation"], h, w)
        if m.any():
            per[iid].append((label[int(a["category_id"])], m))
    out = {}
    for iid, items in per.items():
        h, w = sizes[iid]
        masks = (np.stack([m for _, m in items]) if items else np.zeros((0, h, w), bool))
        boxes, _ = masks_to_boxes(masks)
        out[iid] = Targets(boxes.astype(np.float32),
                           np.array([lab for lab, _ in items], dtype=np.int64), masks)
    return out


@dataclass
class View:
    """One (image, flip) at the model's scale (module docstring)."""

    image_id: int
    flip: bool
    size: tuple[int, int]
    factor: float
    image: torch.Tensor | None
    features: list[torch.Tensor] | None
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def scale_targets(t: Targets, factor: float, size: tuple[int, int], flip: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:class:`Targets` at the original size -> ``(boxes (G, 4), labels (G,), masks (G, h, w)
    uint8)`` rescaled by ``factor`` to ``size = (h, w)`` (masks by nearest neighbour) and
    flipped left-right when ``flip``."""
    h, w = size
    boxes = torch.from_numpy(t.boxes.astype(np.float32)) * factor
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, h)
    if len(t.masks):
        m = F.interpolate(torch.from_numpy(t.masks[:, None].astype(np.float32)), size=(h, w),
                          mode="nearest")[:, 0].to(torch.uint8)
    else:
        m = torch.zeros((0, h, w), dtype=torch.uint8)
    if flip:
        m = m.flip(-1)
        boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    return boxes.reshape(-1, 4), torch.from_numpy(t.labels.astype(np.int64)), m


def stage_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Feature levels of a plain ``features`` Sequential CNN (``SmallCNN``, VGG16 conv5):
    the output just before each ``MaxPool2d`` and the last output, shallowest first.
    ``x (B, 3, H, W)`` -> ``[(B, D_l, h_l, w_l)]``."""
    outs = []
    for layer in net.features:
        if isinstance(layer, nn.MaxPool2d):
            outs.append(x)
        x = layer(x)
    outs.append(x)
    return outs


def build_views(
    image_ids: Iterable[int],
    read: Callable[[int], np.ndarray],
    targets: Mapping[int, Targets] | None,
    *,
    short_side: int | None,
    max_size: int | None,
    flips: Sequence[bool] = (False,),
    features: Callable[[torch.Tensor], list[torch.Tensor]] | None = None,
    levels: Sequence[int] | None = None,
    desc: str = "views",
) -> list[View]:
    """One :class:`View` per (image, flip). ``read(image_id) -> (H, W, 3)`` uint8.

    ``features``: the frozen backbone (``(1, 3, h, w) -> [(1, D_l, h_l, w_l)]``); its levels
    ``levels`` (all when None) are computed once here under ``no_grad`` and kept in float16,
    and the image tensor is dropped. Without it the view keeps the image (trainable
    backbone). ``targets`` None: test views (no instances). ``short_side`` None: the original
    size (factor 1; views that large-scale jitter rescales at every step, as the release's
    mapper rescales the image it reads)."""
    views = []
    for iid in tqdm(list(image_ids), desc=desc, disable=None):
        img = to_tensor(read(iid))
        f = (1.0 if short_side is None
             else scale_factor(img.shape[1], img.shape[2], short_side, int(max_size)))
        base = rescale(img, f)
        size = (int(base.shape[1]), int(base.shape[2]))
        # the realised factor (rounded size / original), as the boxes must follow the pixels
        fac = size[1] / img.shape[2]
        for fl in flips:
            x = hflip(base) if fl else base
            feats = None
            if features is not None:
                with torch.no_grad():
                    out = features(x[None])
                feats = [out[k][0].half() for k in (levels if levels is not None
                                                     else range(len(out)))]
            if targets is not None:
                b, lab, m = scale_targets(targets[iid], fac, size, fl)
            else:
                b = torch.zeros((0, 4))
                lab = torch.zeros(0, dtype=torch.int64)
                m = torch.zeros((0, *size), dtype=torch.uint8)
            views.append(View(int(iid), bool(fl), size, fac, None if feats is not None else x,
                              feats, b, lab, m))
    return views


def views_from_store(store: Any, targets: Mapping[int, Targets] | None,
                     flips: Sequence[bool] = (False,)) -> list[View]:
    """Views over the cached single-level maps of a ``weaksam.retrain.features.FeatureStore``
    (stage ``retrain_features``: the frozen ``backbone_pretrain`` CNN at the retraining scale),
    in the store's image order; ``flips`` containing True needs its flipped maps. With
    ``targets``, images absent from it are left out (``wsis_gt``: images without masks)."""
    views = []
    for i, iid in enumerate(store.image_ids):
        if targets is not None and iid not in targets:
            continue
        size = (int(store.sizes[i][0]), int(store.sizes[i][1]))
        f = float(store.factors[i])
        for fl in flips:
            fmap = store.maps_flip[i] if fl else store.maps[i]
            if targets is not None:
                b, lab, m = scale_targets(targets[iid], f, size, fl)
            else:
                b = torch.zeros((0, 4))
                lab = torch.zeros(0, dtype=torch.int64)
                m = torch.zeros((0, *size), dtype=torch.uint8)
            views.append(View(int(iid), bool(fl), size, f, None, [fmap], b, lab, m))
    return views
