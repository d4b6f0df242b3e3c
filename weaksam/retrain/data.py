"""Training data of the retraining stage: pseudo ground truth (PGT) targets and batch sources.

Shorthand: K classes, labels 1..K in the sorted order of the data set's category ids (0 is
background for the detectors), G boxes of one image, ``boxes (G, 4)`` float32 xyxy px of the
original image. A PGT file is COCO-format annotations (docs/contracts.md "PGT"); images with
no PGT box are skipped in training (their objects would otherwise be taught as background).

A *source* gives the training batches to :func:`weaksam.retrain.train.train_detector`:
``len(source)`` images, ``source.batch(indices, generators) -> (inputs, targets)`` with one
``torch.Generator`` per image that decides its random flip (seeded per (seed, epoch, image) by
the loop, so a batch split over DDP processes draws what one process would).
- :class:`FeatureSource`: maps cached by ``weaksam.retrain.features`` (frozen backbone);
  inputs are a :class:`weaksam.vision.features.FeatureBatch`.
- :class:`ImageSource`: images rescaled to a random training scale (end-to-end backbone);
  inputs are a list of (3, H, W) normalised tensors; optionally DETR / DINO's random-crop
  branch (:class:`RandomCropConfig`, :func:`crop_branch`).
Targets: list of {"boxes" (G, 4) float32 in the input frame, "labels" (G,) int64 in 1..K,
"image_id" () int64}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as tvf

from weaksam.data.index import load_index
from weaksam.errors import InputError
from weaksam.retrain.features import FeatureStore
from weaksam.vision.features import FeatureBatch
from weaksam.vision.imaging import hflip, rescale, scale_factor, to_tensor, transform_boxes

log = logging.getLogger(__name__)


@dataclass
class PgtTargets:
    """PGT of a split: ``boxes[image_id]`` (G, 4) float32 xyxy px, ``labels[image_id]`` (G,)
    int64 in 1..K, in the file's annotation order; ``category_ids[k - 1]`` is label k's id."""

    path: Path
    category_ids: list[int]
    boxes: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes.values()))


def load_pgt(path: str | Path, category_ids: Sequence[int] | None = None,
             min_size: float = 1.0) -> PgtTargets:
    """Read a PGT file (COCO annotations). Raises InputError naming ``path`` when it is missing,
    malformed, has categories other than ``category_ids`` (the data set's), or holds no
    annotation at all (nothing to train on)."""
    path = Path(path)
    index = load_index(path, image_root=".")
    cats = list(index.category_ids)
    if category_ids is not None and sorted(int(c) for c in category_ids) != cats:
        raise InputError(path, f"categories {cats} differ from the data set's "
                               f"{sorted(int(c) for c in category_ids)}")
    if not index.annotations:
        raise InputError(path, "PGT file has no annotations: nothing to retrain on")
    label_of = {cid: k + 1 for k, cid in enumerate(cats)}
    boxes, labels, skipped = {}, {}, 0
    for iid in index.image_ids:
        b, c, _ = index.gt_boxes(iid)
        # boxes under min_size px on a side cannot be encoded (log of a zero width): skipped
        ok = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
        skipped += int((~ok).sum())
        boxes[iid] = b[ok].astype(np.float32).reshape(-1, 4)
        labels[iid] = np.array([label_of[int(x)] for x in c[ok]], np.int64)
    if skipped:
        log.warning("%s: %d PGT boxes under %.1f px on a side skipped", path, skipped, min_size)
    return PgtTargets(path, cats, boxes, labels)


def drop_small_images(pgt: PgtTargets, sizes: dict[int, tuple[int, int]],
                      min_size: float) -> PgtTargets:
    """``pgt`` without the boxes of the images whose short side is under ``min_size`` px
    (``sizes[image_id]`` = (W, H) px), so the sources skip them (mmdet ``filter_cfg.min_size``
    of the release's ``dino-base-voc.py``: 32)."""
    small = {iid for iid, (w, h) in sizes.items() if min(w, h) < min_size and iid in pgt.boxes}
    if not small:
        return pgt
    log.warning("%s: %d images under %.1f px on a side dropped", pgt.path, len(small), min_size)
    return replace(pgt, boxes={i: (b[:0] if i in small else b) for i, b in pgt.boxes.items()},
                   labels={i: (c[:0] if i in small else c) for i, c in pgt.labels.items()})


@dataclass(frozen=True)
class RandomCropConfig:
    """DETR's random-crop branch as DINO's release trains with it (``train_pipeline`` of
    ``retraining/mmdetection/configs/dino/dino-base-voc.py``): with probability ``prob`` an image
    is rescaled to a short side drawn from ``scales`` (long side <= ``max_size``), cropped to
    a random (h, w), each drawn uniformly in ``size`` px (clamped to the image, mmdet
    ``RandomCrop`` ``absolute_range``) at a uniform offset, then rescaled as the other branch
    (a short side of the source's scales). ``prob`` 0: off."""

    prob: float = 0.0                           # release RandomChoice of two branches: 0.5
    scales: tuple[int, ...] = (400, 500, 600)   # px, short side before the crop
    max_size: int = 4200                        # px, long side cap before the crop
    size: tuple[int, int] = (384, 600)          # px, crop height and width range (inclusive)


def crop_branch(img: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, short_side: int,
                max_size: int, crop: RandomCropConfig, g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random-crop branch of :class:`RandomCropConfig` on one image: ``img`` (3, H, W),
    ``boxes`` (G, 4) xyxy px of it, ``labels`` (G,) -> the cropped image rescaled to
    ``short_side`` (long side <= ``max_size``), its boxes (G', 4) clipped to the crop and in
    its rescaled frame, and their labels: boxes left with no width or height inside the crop
    are dropped (mmdet ``RandomCrop`` with ``bbox_clip_border``; DETR ``crop``); G' may be 0
    (``allow_negative_crop=True``). Random draws from ``g``."""
    s1 = crop.scales[int(torch.randint(len(crop.scales), (1,), generator=g))]
    f1 = scale_factor(img.shape[1], img.shape[2], s1, crop.max_size)
    x = rescale(img, f1)
    h, w = int(x.shape[1]), int(x.shape[2])
    lo, hi = crop.size
    ch = int(torch.randint(min(h, lo), min(h, hi) + 1, (1,), generator=g))
    cw = int(torch.randint(min(w, lo), min(w, hi) + 1, (1,), generator=g))
    top = int(torch.randint(h - ch + 1, (1,), generator=g))
    left = int(torch.randint(w - cw + 1, (1,), generator=g))
    x = tvf.crop(x, top, left, ch, cw)
    bb = tv_tensors.BoundingBoxes(boxes.reshape(-1, 4) * f1, format="XYXY", canvas_size=(h, w),
                                   clamping_mode="hard")
    b = tvf.crop(bb, top, left, ch, cw).as_subclass(torch.Tensor)  # translated and clamped
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    f2 = scale_factor(ch, cw, short_side, max_size)
    return rescale(x, f2), b[keep] * f2, labels[keep]


def _target(boxes: np.ndarray, labels: np.ndarray, image_id: int, factor: float, flip: bool,
            width: int) -> dict[str, torch.Tensor]:
    b = transform_boxes(torch.from_numpy(np.asarray(boxes, np.float32)).reshape(-1, 4), factor,
                        flip, width)
    return {"boxes": b, "labels": torch.from_numpy(np.asarray(labels, np.int64)),
            "image_id": torch.tensor(int(image_id))}


def _flip(flip: bool, g: torch.Generator) -> bool:
    return bool(flip) and bool(torch.rand(1, generator=g) < 0.5)


class FeatureSource:
    """Training batches from a :class:`FeatureStore` (frozen backbone) and PGT targets; only
    images with at least one PGT box take part (``image_ids``)."""

    def __init__(self, store: FeatureStore, pgt: PgtTargets, flip: bool) -> None:
        if flip and store.maps_flip is None:
            raise ValueError("flip asked for, but the feature cache has no flipped maps")
        self.store, self.pgt, self.flip = store, pgt, bool(flip)
        self.rows = [i for i, iid in enumerate(store.image_ids) if len(pgt.boxes.get(iid, ()))]
        self.image_ids = [store.image_ids[i] for i in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: Sequence[int], generators: Sequence[torch.Generator]
              ) -> tuple[FeatureBatch, list[dict[str, torch.Tensor]]]:
        maps, sizes, targets = [], [], []
        for j, g in zip(indices, generators, strict=True):
            i = self.rows[j]
            iid = self.store.image_ids[i]
            fl = _flip(self.flip, g)
            maps.append(self.store.map(i, fl))
            sizes.append(self.store.sizes[i])
            targets.append(_target(self.pgt.boxes[iid], self.pgt.labels[iid], iid,
                                   self.store.factors[i], fl, self.store.sizes[i][1]))
        return FeatureBatch(maps, sizes), targets


class ImageSource:
    """Training batches of images (end-to-end backbone): per image a random short side from
    ``scales`` (long side <= ``max_size``) and a random flip; with ``crop`` (prob > 0), with
    its probability the random-crop branch (:func:`crop_branch`) instead of the plain rescale,
    flipped after it (the release flips before; a crop offset drawn uniformly makes the two
    orders the same distribution). ``read(image_id)`` returns the (H, W, 3) uint8 pixels."""

    def __init__(self, image_ids: Sequence[int], read: Callable[[int], np.ndarray],
                 pgt: PgtTargets, scales: Sequence[int], max_size: int, flip: bool,
                 crop: RandomCropConfig | None = None) -> None:
        self.read, self.pgt = read, pgt
        self.scales, self.max_size, self.flip = [int(s) for s in scales], int(max_size), flip
        self.crop = crop if crop is not None and crop.prob > 0 else None
        self.image_ids = [int(i) for i in image_ids if len(pgt.boxes.get(int(i), ()))]

    def __len__(self) -> int:
        return len(self.image_ids)

    def batch(self, indices: Sequence[int], generators: Sequence[torch.Generator]
              ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        images, targets = [], []
        for j, g in zip(indices, generators, strict=True):
            iid = self.image_ids[j]
            s = self.scales[int(torch.randint(len(self.scales), (1,), generator=g))]
            fl = _flip(self.flip, g)
            img = to_tensor(self.read(iid))
            if self.crop is not None and bool(torch.rand(1, generator=g) < self.crop.prob):
                x, b, lab = crop_branch(
                    img, torch.from_numpy(np.asarray(self.pgt.boxes[iid], np.float32)),
                    torch.from_numpy(np.asarray(self.pgt.labels[iid], np.int64)), s,
                    self.max_size, self.crop, g)
                images.append(hflip(x) if fl else x)
                targets.append({"boxes": transform_boxes(b, 1.0, fl, x.shape[2]),
                                "labels": lab, "image_id": torch.tensor(int(iid))})
                continue
            f = scale_factor(img.shape[1], img.shape[2], s, self.max_size)
            x = rescale(img, f)
            images.append(hflip(x) if fl else x)
            targets.append(_target(self.pgt.boxes[iid], self.pgt.labels[iid], iid, f, fl,
                                   x.shape[2]))
        return images, targets
