"""Large-scale jitter (LSJ; Ghiasi et al., "Simple Copy-Paste", CVPR 2021) of WSIS training
views, drawn anew at every step: the augmentation of the release's Mask2Former on VOC 2012
(WeakSAM ``wsis_extension/configs/voc12/instance-segmentation/
Base-voc12-InstanceSegmentation.yaml``: ``INPUT.IMAGE_SIZE`` 1024, ``MIN_SCALE`` 0.1,
``MAX_SCALE`` 2.0, mapper ``voc12_instance_lsj`` =
``mask2former/data/dataset_mappers/voc12_instance_new_baseline_dataset_mapper.py``, which
chains detectron2's ``ResizeScale`` and ``FixedSizeCrop``).

Shorthand: G instances, h x w the view's pixels, T the output side (``image_size``), s the
scale drawn uniformly in [``min_scale``, ``max_scale``], u the crop position drawn uniformly in
[0, 1).

- Resize: factor r = min(T s / h, T s / w), to (round(h r), round(w r)) px (``ResizeScale``):
  the image bilinearly (antialiased when shrinking, :func:`weaksam.vision.imaging.rescale`),
  the instance masks by nearest neighbour.
- Crop / pad (``FixedSizeCrop``): a T x T window at offset round(u (h' - T), u (w' - T)) (one
  u for both axes, 0 on an axis shorter than T); where the resized view is smaller than T the
  window runs past its bottom / right edge and is padded: the image with the grey value
  ``pad_pixel`` (0-255, the release's 128, normalised as the image was), or with 0 after
  normalisation (the mean colour) when ``pad_pixel`` is None; masks with 0.
- Targets: boxes ``(G', 4)`` xyxy px are the masks' extents after the crop (the release
  recomputes ``gt_boxes`` from the masks, so a cropped box is the cropped mask's tight box);
  instances whose mask is empty after the crop are dropped (``filter_empty_instances``).

The draws (s, u) come from :func:`lsj_draws` with a caller-seeded generator (the trainer seeds
one per epoch), so a view's jitter depends on the seed, the epoch and its position in the
epoch, never on torch's global generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from weaksam.utils.boxes import masks_to_boxes
from weaksam.vision.backbones import MEAN, STD
from weaksam.vision.imaging import rescale, scaled_size
from weaksam.wsis.data import View

__all__ = ["LsjConfig", "large_scale_jitter", "lsj_draws"]


@dataclass(frozen=True, kw_only=True)
class LsjConfig:
    """Large-scale jitter settings (params ``wsis.<model>.lsj``; release: 1024, 0.1, 2.0)."""

    image_size: int  # px, side T of the square output (INPUT.IMAGE_SIZE)
    min_scale: float  # smallest s: the long side becomes T s (INPUT.MIN_SCALE)
    max_scale: float  # largest s (INPUT.MAX_SCALE)
    pad_pixel: float | None  # grey value 0-255 of the image padding (FixedSizeCrop: 128);
    #                          None: 0 after normalisation (the mean colour)

    def __post_init__(self) -> None:
        if self.image_size < 1 or not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError("lsj needs image_size >= 1 and 0 < min_scale <= max_scale, got "
                             f"{self.image_size}, {self.min_scale}, {self.max_scale}")
        if self.pad_pixel is not None and not 0.0 <= self.pad_pixel <= 255.0:
            raise ValueError(f"lsj pad_pixel {self.pad_pixel} is not a grey value in [0, 255]")


def lsj_draws(n: int, cfg: LsjConfig, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2)`` float64: per view the scale s in [min_scale, max_scale] and the crop
    position u in [0, 1), from ``generator``."""
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    u[:, 0] = cfg.min_scale + u[:, 0] * (cfg.max_scale - cfg.min_scale)
    return u


def large_scale_jitter(view: View, cfg: LsjConfig, scale: float, crop: float) -> View:
    """``view`` (with its image) resized by the scale ``scale`` of ``cfg.image_size``, cropped
    at position ``crop`` in [0, 1] and padded to ``(T, T)`` (module docstring): image
    ``(3, T, T)``, masks ``(G', T, T)`` uint8, boxes ``(G', 4)`` their extents, labels
    ``(G',)``, ``size (T, T)``, ``factor`` times the resize factor. The view is not changed."""
    if view.image is None:
        raise ValueError("large-scale jitter needs the view's image (not cached features)")
    t = int(cfg.image_size)
    h, w = view.size
    r = min(t * scale / h, t * scale / w)
    nh, nw = scaled_size(h, w, r)
    image = rescale(view.image, r)  # (3, nh, nw)
    masks = view.masks
    if len(masks) and (nh, nw) != (h, w):
        masks = F.interpolate(masks[:, None].float(), size=(nh, nw),
                              mode="nearest")[:, 0].to(torch.uint8)
    elif not len(masks):
        masks = torch.zeros((0, nh, nw), dtype=torch.uint8)
    top = round(max(0, nh - t) * crop)
    left = round(max(0, nw - t) * crop)
    image = TF.crop(image, top, left, t, t)  # zero-padded past the bottom / right edge
    if cfg.pad_pixel is not None and (nh - top < t or nw - left < t):
        fill = torch.tensor([(cfg.pad_pixel / 255.0 - m) / d for m, d in zip(MEAN, STD,
                                                                               strict=True)])
        valid = torch.zeros(t, t, dtype=torch.bool)
        valid[: nh - top, : nw - left] = True
        image = torch.where(valid, image, fill.to(image.dtype).view(3, 1, 1))
    masks = TF.crop(masks, top, left, t, t)
    boxes, keep = masks_to_boxes(masks.numpy().astype(bool))
    keep_t = torch.from_numpy(keep)
    return replace(view, size=(t, t), factor=view.factor * nw / w, image=image,
                   boxes=torch.from_numpy(boxes[keep]).reshape(-1, 4),
                   labels=view.labels[keep_t], masks=masks[keep_t].contiguous())
