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
  inputs are a list of (3, H, W) normalised tensors.
Targets: list of {"boxes" (G, 4) float32 in the input frame, "labels" (G,) int64 in 1..K,
"image_id" () int64}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
    ``scales`` (long side <= ``max_size``) and a random flip. ``read(image_id)`` returns the
    (H, W, 3) uint8 pixels."""

    def __init__(self, image_ids: Sequence[int], read: Callable[[int], np.ndarray],
                 pgt: PgtTargets, scales: Sequence[int], max_size: int, flip: bool) -> None:
        self.read, self.pgt = read, pgt
        self.scales, self.max_size, self.flip = [int(s) for s in scales], int(max_size), flip
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
            f = scale_factor(img.shape[1], img.shape[2], s, self.max_size)
            x = rescale(img, f)
            images.append(hflip(x) if fl else x)
            targets.append(_target(self.pgt.boxes[iid], self.pgt.labels[iid], iid, f, fl,
                                   x.shape[2]))
        return images, targets
