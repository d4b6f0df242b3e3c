"""Pseudo instance masks: every PGT box prompts SAM (paper Sec. 3.3, "WeakSAM for WSIS":
"we can directly use them to prompt SAM for precise segments as pseudo instance labels").

Per image, SAM's encoder runs once (``SamPredictor.set_image``); the image's boxes go through
the prompt encoder and mask decoder in batches of ``batch_size`` with ``multimask_output=False``
(one mask per box, SAM's recommended setting for an unambiguous box prompt), as the proposals
stage batches its point prompts (:class:`weaksam.proposals.sam.SamPromptProposer`). Masks are
upsampled to the original image (``Sam.postprocess_masks``) and thresholded at
``sam.mask_threshold``.

Shapes: ``boxes (B, 4)`` float xyxy in pixels of the original image (x2/y2 exclusive);
``masks (B, H, W)`` bool; ``scores (B,)`` SAM's predicted IoU.

Degenerate input never crashes a run: a box with a non-finite coordinate, or of zero area once
clipped to the image, is skipped; a box reaching outside the image is clipped; a mask with no
pixel is dropped. Each case is counted (:class:`MaskStats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from tqdm import tqdm

from weaksam.eval.mask_ap import encode_mask
from weaksam.utils.boxes import masks_to_boxes, xywh_to_xyxy, xyxy_to_xywh


@dataclass
class MaskStats:
    """Counts of one pseudo-mask run (the stage writes them to its metrics)."""

    boxes_in: int = 0
    boxes_clipped: int = 0        # reached outside the image: clipped, then prompted
    boxes_skipped: int = 0        # non-finite, or zero area after clipping: not prompted
    masks_empty: int = 0          # SAM returned no pixel: dropped
    masks_out: int = 0
    images: int = 0
    images_without_mask: int = 0

    def add(self, other: MaskStats) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


def sanitize_boxes(boxes: np.ndarray, width: int, height: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip ``boxes (N, 4)`` xyxy to ``[0, width] x [0, height]``.

    Returns ``(clipped (N, 4) float64, keep (N,) bool, changed (N,) bool)``: ``keep`` is False
    for a box with a non-finite coordinate or with zero width or height after clipping;
    ``changed`` marks kept boxes that clipping moved."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(b).all(1)
    c = np.where(finite[:, None], b, 0.0)
    c[:, [0, 2]] = np.clip(c[:, [0, 2]], 0, width)
    c[:, [1, 3]] = np.clip(c[:, [1, 3]], 0, height)
    keep = finite & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
    changed = keep & (np.abs(c - np.where(finite[:, None], b, 0.0)).max(1) > 0)
    return c, keep, changed


class BoxPromptMasker:
    """One SAM mask per box prompt, batched per image (see module docstring)."""

    def __init__(self, sam: Sam, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sam = sam.eval()
        self.predictor = SamPredictor(self.sam)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def masks(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image (H, W, 3)`` uint8 RGB, ``boxes (B, 4)`` xyxy px inside the image ->
        ``(masks (B, H, W) bool, scores (B,) float32)``. No box: no encoder call."""
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, h, w), bool), np.zeros(0, np.float32)
        p = self.predictor
        p.set_image(image)
        out_m, out_s = [], []
        for s in range(0, len(boxes), self.batch_size):
            bt = torch.as_tensor(p.transform.apply_boxes(boxes[s : s + self.batch_size], (h, w)),
                                 dtype=torch.float, device=p.device)
            sparse, dense = self.sam.prompt_encoder(points=None, boxes=bt, masks=None)
            low_res, iou = self.sam.mask_decoder(
                image_embeddings=p.features, image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=False)
            up = self.sam.postprocess_masks(low_res, p.input_size, p.original_size)
            out_m.append((up[:, 0] > self.sam.mask_threshold).cpu().numpy())
            out_s.append(iou[:, 0].float().cpu().numpy())
        return np.concatenate(out_m), np.concatenate(out_s)


def image_pseudo_masks(masker: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                       image: np.ndarray, anns: Sequence[Mapping[str, Any]]
                       ) -> tuple[list[dict[str, Any]], MaskStats]:
    """Pseudo-mask annotations of one image from its PGT annotations (bbox xywh, category_id,
    score). Returns annotations without ``id`` (the caller numbers them) and the counts.

    Each output keeps the PGT's ``category_id`` and ``score``; ``bbox`` and ``area`` are the
    mask's (tight box, pixel count), ``prompt_bbox`` the (clipped) PGT box that prompted SAM,
    ``sam_iou`` SAM's predicted IoU of the mask."""
    h, w = image.shape[:2]
    st = MaskStats(boxes_in=len(anns), images=1)
    if anns:
        raw = xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64))
    else:
        raw = np.zeros((0, 4))
    boxes, keep, changed = sanitize_boxes(raw, w, h)
    st.boxes_skipped = int((~keep).sum())
    st.boxes_clipped = int(changed.sum())
    idx = np.flatnonzero(keep)
    masks, sam_iou = masker(image, boxes[idx])
    tight, nonempty = masks_to_boxes(masks)
    st.masks_empty = int((~nonempty).sum())
    out = []
    for k, i in enumerate(idx):
        if not nonempty[k]:
            continue
        a = anns[i]
        out.append({
            "image_id": int(a["image_id"]),
            "category_id": int(a["category_id"]),
            "segmentation": encode_mask(masks[k]),
            "area": float(masks[k].sum()),
            "bbox": [float(v) for v in xyxy_to_xywh(tight[k : k + 1])[0]],
            "iscrowd": 0,
            "score": float(a.get("score", 1.0)),
            "sam_iou": float(sam_iou[k]),
            "prompt_bbox": [float(v) for v in xyxy_to_xywh(boxes[i : i + 1])[0]],
        })
    st.masks_out = len(out)
    st.images_without_mask = int(len(out) == 0)
    return out, st


def pseudo_mask_dataset(
    pgt: Mapping[str, Any],
    read_image: Callable[[int], np.ndarray],
    masker: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    image_ids: Iterable[int] | None = None,
) -> tuple[dict[str, Any], MaskStats]:
    """The pseudo-mask COCO dataset of a PGT COCO dataset (``images``, ``categories``, ``info``
    copied; one annotation per kept mask, ids 1.. in image then PGT order).

    ``read_image(image_id) -> (H, W, 3) uint8``; ``masker`` as :meth:`BoxPromptMasker.masks`.
    Images without PGT boxes stay in ``images`` and are not read."""
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in pgt.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    ids = [int(im["id"]) for im in pgt["images"]] if image_ids is None else list(image_ids)
    stats = MaskStats()
    anns: list[dict[str, Any]] = []
    for iid in tqdm(ids, desc="pseudo masks", disable=None):
        boxes = by_image.get(iid, [])
        if not boxes:
            stats.add(MaskStats(images=1, images_without_mask=1))
            continue
        out, st = image_pseudo_masks(masker, read_image(iid), boxes)
        stats.add(st)
        anns.extend(out)
    for k, a in enumerate(anns):
        a["id"] = k + 1
    data = {"info": dict(pgt.get("info", {})), "images": list(pgt["images"]),
            "categories": list(pgt["categories"]), "annotations": anns}
    return data, stats
