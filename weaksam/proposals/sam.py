"""WeakSAM proposals: SAM prompted by classification clues and dense points (paper Sec. 3.1,
"WeakSAM Proposals Generation"; Table 4).

Every prompt of an image goes to SAM's mask decoder; each kept mask becomes a proposal box whose
score is SAM's predicted IoU and whose source is the prompt's source (dense, cam_fine,
cam_coarse, cross), so the Table 4 variants are source filters of one run.

Prompting goes through segment_anything's ``SamPredictor``: ``set_image`` once per image, then
the point prompts in batches of ``batch_size`` through the prompt encoder and mask decoder
(``SamPredictor.predict_torch`` minus its last step: instead of upsampling every mask to the
original image, boxes are read off the low-resolution logits upsampled only to the model's
input frame; see :func:`boxes_from_lowres`). The one-prompt-at-a-time path of the authors
(``SamPredictor.predict`` per point) gives identical boxes through the same function
(``benchmarks/sam_prompting.py`` checks it).

Options of the authors' release (``roi_generation/segment-anything``), each a field of
:class:`PromptingConfig`:
- class-aware prompting (``pooled_proposal_generation.py --is-cls-aware True``, used for the two
  CAM sources): every peak point prompts SAM on its own AND all peak points of one class
  prompt SAM together as one multi-point prompt (``classwise="add"``);
- NMS of the cross-attention proposals (``post_suppression.py --threshold 0.9``): greedy in the
  order the boxes were generated (no scores), a box is dropped when its IoU with a kept one
  is above the threshold (``cross_nms_iou``);
- the dense source as SAM's automatic mask generator (``scripts/pooled_amg.py``: 32 x 32 points,
  predicted-IoU, stability and box-NMS thresholds 0.3) instead of prompting the S x S grid
  (``dense_mode="amg"``, :class:`AmgConfig`). The generator shares the prompt path's predictor
  (:class:`SharedImagePredictor`), so each image goes through the image encoder (the cost: ViT-H
  at 1024 px) once, not once for the prompts and again inside the generator as in the release.

Devices: everything runs on SAM's device (``sam.to(device)`` by the caller); outputs are numpy.

Shapes: ``points (N, 2)`` xy in pixels of the original image; ``low_res (B, K, L, L)`` mask
logits; boxes ``(R, 4)`` float32 xyxy in pixels of the original image (x2/y2 exclusive);
scores ``(R,)`` predicted IoU; sources ``(R,)`` uint8 index into ``PROMPT_SOURCES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from torchvision.ops import batched_nms

from weaksam.proposals.sources import PROMPT_SOURCES
from weaksam.proposals.store import ImageProposals
from weaksam.utils.boxes import box_iou

DENSE = PROMPT_SOURCES.index("dense")
CROSS = PROMPT_SOURCES.index("cross")
CAM_SOURCES = tuple(PROMPT_SOURCES.index(s) for s in ("cam_fine", "cam_coarse"))
CLASSWISE_MODES = ("none", "replace", "add")

# Masks are upsampled this many frame pixels at a time (16 MiB of float32: 256 masks at a
# 128 px frame, 4 at the official 1024 px frame), which bounds memory.
_UPSAMPLE_PIXELS = 1 << 22


@dataclass(frozen=True)
class AmgConfig:
    """``SamAutomaticMaskGenerator`` settings of the dense source in ``dense_mode="amg"``;
    defaults are the authors' release (``scripts/pooled_amg.py``): a 32 x 32 point grid,
    64 points per batch, predicted-IoU, stability-score and box-NMS thresholds 0.3, no crops."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.3
    stability_score_thresh: float = 0.3
    box_nms_thresh: float = 0.3


@dataclass(frozen=True)
class PromptingConfig:
    """How SAM is prompted (set from params.yaml ``proposals`` by the stage).

    batch_size:   point prompts per mask-decoder call (any value gives the same boxes).
    mask_indices: which of SAM's three multimask outputs become proposals (authors: 1 and 2,
                  the larger "part" and "whole" masks); with ``multimask=False`` SAM's single
                  mask is used and this is ignored.
    nms_iou:      IoU of a per-source NMS after duplicate removal; 0 turns it off (paper: off).
    classwise:    multi-point prompts of the CAM sources (cam_fine, cam_coarse): ``"none"`` one
                  prompt per point; ``"replace"`` one prompt per (source, class) holding all its
                  points instead; ``"add"`` both (the release's class-aware prompting).
    cross_nms_iou: the release's NMS of the cross-attention proposals, in generation order
                  (greedy, no scores; IoU strictly above it drops a box); 0 turns it off.
    dense_mode:   ``"grid"`` prompts the dense points of the prompt table; ``"amg"`` ignores
                  them and takes the dense source from SAM's automatic mask generator (``amg``).
    outside:      prompts outside the image: ``"clip"`` moves them to the nearest pixel,
                  ``"drop"`` discards them.
    mask_order:   what ``mask_indices`` index: ``"model"`` SAM's own output order (the official
                  models' subpart / part / whole), ``"area"`` the three masks sorted by area,
                  smallest first (for a SAM whose output roles are not that convention, e.g. a
                  small SAM pre-trained here: its three outputs specialise, but in no fixed
                  order).
    """

    batch_size: int = 64
    mask_indices: tuple[int, ...] = (1, 2)
    multimask: bool = True
    nms_iou: float = 0.0
    classwise: str = "none"
    outside: str = "clip"
    mask_order: str = "model"
    cross_nms_iou: float = 0.0
    dense_mode: str = "grid"
    amg: AmgConfig = AmgConfig()

    def __post_init__(self) -> None:
        if self.classwise not in CLASSWISE_MODES:
            raise ValueError(f"classwise must be one of {CLASSWISE_MODES}, got {self.classwise!r}")
        if self.dense_mode not in ("grid", "amg"):
            raise ValueError(f"dense_mode must be 'grid' or 'amg', got {self.dense_mode!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.mask_indices or not set(self.mask_indices) <= {0, 1, 2}:
            raise ValueError(f"mask_indices must be a non-empty subset of 0..2, got "
                             f"{self.mask_indices}")
        if self.mask_order not in ("model", "area"):
            raise ValueError(f"mask_order must be 'model' or 'area', got {self.mask_order!r}")
        if self.outside not in ("clip", "drop"):
            raise ValueError(f"outside must be 'clip' or 'drop', got {self.outside!r}")


@torch.no_grad()
def boxes_from_lowres(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    frame: int,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of SAM masks from the decoder's low-resolution logits.

    ``low_res (B, K, L, L)`` is upsampled bilinearly to the ``frame x frame`` model input (as
    ``Sam.postprocess_masks`` does first), cropped to ``input_size = (h, w)`` (the resized image
    inside the padded frame), thresholded at ``threshold``; the row and column extents give a
    box in input-frame pixels, scaled by ``original / input`` to the original image.

    Returns ``(boxes (B, K, 4) float32 xyxy original pixels, valid (B, K) bool)``; empty masks
    are not valid (zero box). Each mask's box depends only on its own logits, so batching never
    changes a box.
    """
    b, k, _, _ = low_res.shape
    h, w = input_size
    if b * k == 0:
        return torch.zeros((b, k, 4)), torch.zeros((b, k), dtype=torch.bool)  # CPU
    flat = low_res.reshape(b * k, 1, *low_res.shape[-2:]).float()
    rows_max, cols_max = [], []
    chunk = max(1, _UPSAMPLE_PIXELS // (frame * frame))
    for s in range(0, b * k, chunk):
        up = F.interpolate(flat[s : s + chunk], (frame, frame), mode="bilinear",
                           align_corners=False)[:, 0, :h, :w]
        # a row (column) holds a pixel above the threshold iff its maximum is above it; max
        # reductions of the float logits are far cheaper than thresholding every pixel first
        rows_max.append(up.amax(2))
        cols_max.append(up.amax(1))
    rows = torch.cat(rows_max) > threshold  # (BK, h)
    cols = torch.cat(cols_max) > threshold  # (BK, w)
    valid = rows.any(1)
    ar_h = torch.arange(h, device=rows.device)
    ar_w = torch.arange(w, device=rows.device)
    big = 1 << 30
    y1 = torch.where(rows, ar_h, big).amin(1)
    y2 = torch.where(rows, ar_h, -1).amax(1) + 1
    x1 = torch.where(cols, ar_w, big).amin(1)
    x2 = torch.where(cols, ar_w, -1).amax(1) + 1
    boxes = torch.stack([x1, y1, x2, y2], 1).double().cpu()  # float64: CPU for every device
    valid = valid.cpu()
    sy, sx = original_size[0] / h, original_size[1] / w
    boxes = boxes * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
    boxes[~valid] = 0
    return boxes.float().reshape(b, k, 4), valid.reshape(b, k)


def select_masks(low_res: torch.Tensor, iou: torch.Tensor, config: PromptingConfig,
                 threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept multimask outputs: ``low_res (B, 3, L, L)``, ``iou (B, 3)`` ->
    ``(B, len(mask_indices), L, L)``, ``(B, len(mask_indices))``.

    With ``mask_order="area"`` each prompt's masks are first sorted by area (low-res pixels
    above ``threshold``, smallest first; a stable sort, so ties keep SAM's order). Each prompt
    is handled on its own: batching never changes the selection.
    """
    if config.mask_order == "area":
        area = (low_res > threshold).flatten(2).sum(-1)  # (B, 3)
        order = torch.sort(area, dim=1, stable=True).indices
        low_res = torch.take_along_dim(low_res, order[:, :, None, None], dim=1)
        iou = torch.take_along_dim(iou, order, dim=1)
    idx = list(config.mask_indices)
    return low_res[:, idx], iou[:, idx]


def prepare_points(points: np.ndarray, width: int, height: int, outside: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Apply the outside-the-image policy to ``points (N, 2)`` xy pixels.

    Returns ``(points (N', 2) float32, keep (N,) bool)``: ``"clip"`` keeps every finite point,
    moved into ``[0, width - 1] x [0, height - 1]``; ``"drop"`` keeps the points inside it.
    Non-finite points are always dropped.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    keep = np.isfinite(p).all(1)
    if outside == "drop":
        keep &= (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)
    p = p[keep]
    p[:, 0] = np.clip(p[:, 0], 0, width - 1)
    p[:, 1] = np.clip(p[:, 1], 0, height - 1)
    return p.astype(np.float32), keep


def sequential_nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """The release's ``post_suppression.nms``: walk ``boxes (N, 4)`` in their given order (no
    scores), keep a box unless its IoU with an earlier KEPT box is above ``iou``. Returns the
    kept indices ``(K,)`` in order. (The release's IoU adds 1 to widths of inclusive boxes; our
    boxes are exclusive, so plain areas give the same IoU.)"""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    kept: list[int] = []
    alive = np.ones(len(b), dtype=bool)
    for i in range(len(b)):
        if not alive[i]:
            continue
        kept.append(i)
        alive[i + 1 :] &= box_iou(b[i : i + 1], b[i + 1 :])[0] <= iou
    return np.asarray(kept, dtype=np.int64)


def dedup_and_sort(boxes: np.ndarray, scores: np.ndarray, sources: np.ndarray, nms_iou: float
                   ) -> ImageProposals:
    """Remove exact duplicate boxes within each source (keeping the highest score), then an
    optional per-source NMS (``nms_iou > 0``).

    A box found from two sources is kept once PER SOURCE, so every Table 4 variant (a filter by
    source) sees its own boxes. Output order: source, then score descending, then box
    coordinates (a total order, so results never depend on prompt order or batching).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    sources = np.asarray(sources, np.uint8).reshape(-1)
    if len(boxes) == 0:
        return ImageProposals.empty()
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores, sources))
    boxes, scores, sources = boxes[order], scores[order], sources[order]
    key = np.concatenate([sources[:, None].astype(np.float32), boxes], 1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)  # first occurrence in sorted order = highest score of the duplicates
    boxes, scores, sources = boxes[keep], scores[keep], sources[keep]
    if nms_iou > 0:
        k = batched_nms(torch.from_numpy(boxes).double(), torch.from_numpy(scores).double(),
                        torch.from_numpy(sources.astype(np.int64)), nms_iou).numpy()
        k = np.sort(k)
        boxes, scores, sources = boxes[k], scores[k], sources[k]
    return ImageProposals(boxes, scores, sources)


class SharedImagePredictor(SamPredictor):
    """A ``SamPredictor`` that several users of one image share: ``set_image`` with the pixels
    (and format) already set keeps the embedding instead of running the image encoder again.

    ``SamAutomaticMaskGenerator`` (no crops) calls ``set_image`` on the whole image, then
    ``reset_image``; given this predictor after the prompt path has set the image, it reuses
    the prompt path's embedding, which is the one it would have computed (same pixels, same
    transform, same encoder). ``reset_image`` forgets the pixels too.
    """

    def __init__(self, sam_model: Sam) -> None:
        super().__init__(sam_model)
        self._pixels: np.ndarray | None = None
        self._format = ""

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """``SamPredictor.set_image``, skipped when ``image (H, W, 3)`` uint8 in
        ``image_format`` is the image already set."""
        if (self.is_image_set and self._pixels is not None and image_format == self._format
                and self._pixels.shape == image.shape and np.array_equal(self._pixels, image)):
            return
        super().set_image(image, image_format)
        self._pixels, self._format = np.array(image, copy=True), image_format

    def reset_image(self) -> None:
        super().reset_image()
        self._pixels = None


class SamPromptProposer:
    """Turns one image and its point prompts into WeakSAM proposals with a frozen SAM."""

    def __init__(self, sam: Sam, config: PromptingConfig | None = None) -> None:
        self.sam = sam.eval()
        self.config = config or PromptingConfig()
        self.predictor = SharedImagePredictor(self.sam)
        self.generator: SamAutomaticMaskGenerator | None = None
        if self.config.dense_mode == "amg":
            a = self.config.amg
            self.generator = SamAutomaticMaskGenerator(
                self.sam, points_per_side=a.points_per_side,
                points_per_batch=a.points_per_batch, pred_iou_thresh=a.pred_iou_thresh,
                stability_score_thresh=a.stability_score_thresh,
                box_nms_thresh=a.box_nms_thresh)
            self.generator.predictor = self.predictor  # one embedding per image, shared

    @property
    def frame(self) -> int:
        return int(self.sam.image_encoder.img_size)

    @torch.no_grad()
    def _decode(self, coords: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in the input frame ``(B, n, 2)``, labels ``(B, n)`` -> boxes ``(B, K, 4)``,
        scores ``(B, K)`` and valid ``(B, K)`` (non-empty) of the kept masks."""
        p = self.predictor
        sparse, dense = self.sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=p.features, image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=self.config.multimask,
        )
        if self.config.multimask:
            low_res, iou = select_masks(low_res, iou, self.config, self.sam.mask_threshold)
        boxes, valid = boxes_from_lowres(low_res, p.input_size, p.original_size, self.frame,
                                         self.sam.mask_threshold)
        return boxes, iou, valid

    def _prompt_groups(self, pts: np.ndarray, src: np.ndarray, cls: np.ndarray
                       ) -> list[tuple[np.ndarray, int]]:
        """Prompts as (point indices, source), in point order: one point each, plus or instead
        of one group per (CAM source, class) (``classwise``), groups after the singles."""
        mode = self.config.classwise
        groups: dict[tuple[int, int], list[int]] = {}
        singles: list[tuple[np.ndarray, int]] = []
        for i in range(len(pts)):
            grouped = mode != "none" and int(src[i]) in CAM_SOURCES and cls[i] >= 0
            if grouped:
                groups.setdefault((int(src[i]), int(cls[i])), []).append(i)
            if not grouped or mode == "add":
                singles.append((np.array([i]), int(src[i])))
        return singles + [(np.array(v), k[0]) for k, v in sorted(groups.items())]

    @torch.no_grad()
    def automatic(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The release's dense source: ``SamAutomaticMaskGenerator`` with ``config.amg`` on
        ``image (H, W, 3)`` uint8 -> ``(boxes (R, 4) float32 xyxy exclusive, scores (R,)
        predicted IoU)``. SAM's ``bbox`` is XYWH of inclusive extents (w = x_max - x_min), so
        the exclusive corner is ``x + w + 1``. Reuses the predictor's embedding when
        ``image`` is the one already set (the prompt path's), else encodes it; the generator
        resets the predictor when done."""
        if self.generator is None:
            raise ValueError("automatic() needs a PromptingConfig with dense_mode='amg'")
        recs = self.generator.generate(image)
        if not recs:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        xywh = np.array([r["bbox"] for r in recs], dtype=np.float64)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] + 1], 1)
        return boxes.astype(np.float32), np.array([r["predicted_iou"] for r in recs], np.float32)

    @torch.no_grad()
    def propose(self, image: np.ndarray, points: np.ndarray, sources: np.ndarray,
                classes: np.ndarray | None = None) -> ImageProposals:
        """Proposals of one image.

        image ``(H, W, 3)`` uint8 RGB; points ``(N, 2)`` xy pixels; sources ``(N,)`` uint8
        source index; classes ``(N,)`` category id (-1: none), used only when classwise.
        The image encoder runs once (none for an image without (valid) prompts in grid mode,
        which gives no proposals); in AMG mode the prompts are decoded first and the generator
        reuses their embedding.
        """
        h, w = image.shape[:2]
        src_all = np.asarray(sources, np.uint8).reshape(-1)
        cls_all = (np.full(len(src_all), -1, np.int64) if classes is None
                   else np.asarray(classes, np.int64).reshape(-1))
        pts, keep = prepare_points(points, w, h, self.config.outside)
        src, cls = src_all[keep], cls_all[keep]
        amg = self.config.dense_mode == "amg"
        if amg:
            grid = src == DENSE
            pts, src, cls = pts[~grid], src[~grid], cls[~grid]
        self.predictor.reset_image()  # an embedding is shared within one call only
        if len(pts) == 0:
            if not amg:
                return ImageProposals.empty()
            extra_b, extra_s = self.automatic(image)
            return dedup_and_sort(extra_b, extra_s, np.full(len(extra_b), DENSE, np.uint8),
                                  self.config.nms_iou)
        self.predictor.set_image(image)
        groups = self._prompt_groups(pts, src, cls)
        by_size: dict[int, list[tuple[np.ndarray, int]]] = {}
        for g in groups:
            by_size.setdefault(len(g[0]), []).append(g)
        out_b, out_s, out_v, out_src = [], [], [], []
        bs = self.config.batch_size
        for n, gs in sorted(by_size.items()):  # prompts of equal point count batch together
            for s in range(0, len(gs), bs):
                chunk = gs[s : s + bs]
                xy = np.stack([pts[idx] for idx, _ in chunk])  # (B, n, 2)
                coords = self.predictor.transform.apply_coords(xy, (h, w))
                coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.predictor.device)
                labels = torch.ones((len(chunk), n), dtype=torch.int, device=coords_t.device)
                boxes, scores, valid = self._decode(coords_t, labels)
                k = boxes.shape[1]
                out_b.append(boxes.reshape(-1, 4).cpu().numpy())
                out_s.append(scores.reshape(-1).cpu().numpy())
                out_v.append(valid.reshape(-1).cpu().numpy())
                out_src.append(np.repeat(np.array([g[1] for g in chunk], np.uint8), k))
        boxes = np.concatenate(out_b)
        scores = np.concatenate(out_s)
        srcs = np.concatenate(out_src)
        ok = np.concatenate(out_v)
        boxes, scores, srcs = boxes[ok], scores[ok], srcs[ok]
        if self.config.cross_nms_iou > 0:  # generation order: prompt order, then mask index
            cross = np.flatnonzero(srcs == CROSS)
            drop = np.setdiff1d(cross, cross[sequential_nms(boxes[cross],
                                                            self.config.cross_nms_iou)])
            mask = np.ones(len(boxes), dtype=bool)
            mask[drop] = False
            boxes, scores, srcs = boxes[mask], scores[mask], srcs[mask]
        extra_b, extra_s = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        if amg:  # after the prompts: the generator finds the embedding set
            extra_b, extra_s = self.automatic(image)
        boxes = np.concatenate([boxes, extra_b])
        scores = np.concatenate([scores, extra_s])
        srcs = np.concatenate([srcs, np.full(len(extra_b), DENSE, np.uint8)])
        return dedup_and_sort(boxes, scores, srcs, self.config.nms_iou)
