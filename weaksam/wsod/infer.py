"""Inference of the WSOD networks: multi-scale + flip test-time augmentation, per-class NMS,
COCO results (OICR / MIST test protocol: scores averaged over scales and flips).

Shorthand: R proposals, C classes. For each (scale, flip) the network gives scores (R, C) and,
for MIST, class deltas (R, C, 4) relative to the transformed proposal; deltas are invariant to
scaling, and a flip negates dx, so they are averaged in the original frame and decoded on the
original proposals. Output per image: ``boxes (M, 4)`` xyxy px, ``scores (M,)``,
``labels (M,)`` in 0..C-1, after ``batched_nms`` at ``nms_iou`` and the top ``max_det``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image
from tqdm import tqdm

from weaksam.utils.boxes import xyxy_to_xywh
from weaksam.vision.imaging import hflip, rescale, scale_factor, to_tensor, transform_boxes
from weaksam.wsod.train import FeatureCache


@torch.no_grad()
def detect_image(
    model: nn.Module, pixels: np.ndarray, proposals: np.ndarray, *, scales: Sequence[int],
    max_size: int, flip: bool, nms_iou: float, score_thresh: float, max_det: int,
    cache: FeatureCache | None = None, image_id: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (H, W, 3) uint8 and its proposals (R, 4) -> (boxes (M, 4), scores (M,),
    labels (M,) in 0..C-1). No proposals -> no detections. ``cache`` (with ``image_id``) reuses
    backbone features computed in training (frozen backbone)."""
    model.eval()
    dev = next(model.parameters()).device  # the device the stage put the model on
    h, w = pixels.shape[:2]
    if len(proposals) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    img = to_tensor(pixels).to(dev)
    props = torch.from_numpy(np.asarray(proposals, np.float32)).to(dev)
    score_sum, delta_sum, n = None, None, 0
    for s in scales:
        f = scale_factor(h, w, s, max_size)
        x = rescale(img, f)
        for fl in (False, True) if flip else (False,):
            xi = hflip(x) if fl else x
            b = transform_boxes(props, f, fl, xi.shape[2])
            if cache is not None:
                fmap = cache.get((image_id, int(s), fl), xi)[None]
            else:
                fmap = model.backbone.forward_features(xi[None])
            scores, deltas = model.predict(fmap, b)
            if deltas is not None and fl:
                deltas = deltas * torch.tensor([-1.0, 1.0, 1.0, 1.0], device=dev)
            score_sum = scores if score_sum is None else score_sum + scores
            if deltas is not None:
                delta_sum = deltas if delta_sum is None else delta_sum + deltas
            n += 1
    scores = score_sum / n
    r, c = scores.shape
    if delta_sum is not None:
        deltas = (delta_sum / n).reshape(r * c, 4)
        boxes = model.coder.decode_single(deltas, props.repeat_interleave(c, dim=0))
        boxes = clip_boxes_to_image(boxes, (h, w))
    else:
        boxes = props.repeat_interleave(c, dim=0)
    scores = scores.reshape(-1)
    labels = torch.arange(c, device=dev).repeat(r)
    ok = scores > score_thresh
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    keep = batched_nms(boxes, scores, labels, nms_iou)[:max_det]
    return boxes[keep].cpu().numpy(), scores[keep].cpu().numpy(), labels[keep].cpu().numpy()


def detect_split(
    model: nn.Module, image_ids: Sequence[int], read, proposals: dict[int, np.ndarray],
    category_ids: Sequence[int], cache: FeatureCache | None = None, **kwargs,
) -> list[dict]:
    """COCO results (image_id, category_id, bbox xywh, score) of every image of a split.
    ``read(i)`` returns the pixels of the i-th image; ``kwargs`` go to :func:`detect_image`."""
    results = []
    for i, iid in enumerate(tqdm(image_ids, desc="detect", disable=None)):
        boxes, scores, labels = detect_image(model, read(i), proposals.get(iid, np.zeros((0, 4))),
                                             cache=cache, image_id=int(iid), **kwargs)
        for bb, sc, lb in zip(xyxy_to_xywh(boxes), scores, labels, strict=True):
            results.append({"image_id": int(iid), "category_id": int(category_ids[int(lb)]),
                            "bbox": [round(float(v), 2) for v in bb],
                            "score": round(float(sc), 5)})
    return results


def detect_split_distributed(
    model: nn.Module, image_ids: Sequence[int], read, proposals: dict[int, np.ndarray],
    category_ids: Sequence[int], cache: FeatureCache | None = None, **kwargs,
) -> list[dict] | None:
    """:func:`detect_split` with the images shared among the ranks of the process group (rank
    ``r`` of ``W`` takes images ``r, r + W, ...``; without a group: every image). Rank 0 gets
    every image's results in ``image_ids`` order, the list one process would have made (each
    image is detected on its own, and a feature-cache miss returns the values a hit does); the
    other ranks get None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return detect_split(model, image_ids, read, proposals, category_ids, cache=cache, **kwargs)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(rank, len(image_ids), world))
    part = detect_split(model, [image_ids[i] for i in mine], lambda j: read(mine[j]), proposals,
                        category_ids, cache=cache, **kwargs)
    parts: list[list[dict]] | None = [[] for _ in range(world)] if rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    if parts is None:
        return None
    order = {int(iid): k for k, iid in enumerate(image_ids)}
    # a stable sort by image keeps each image's own order of detections
    return sorted((d for p in parts for d in p), key=lambda d: order[d["image_id"]])

