"""Inference of a retrained detector on a split: COCO results in the original image frame.

Shorthand: M detections of one image, ``boxes (M, 4)`` xyxy px of the input frame (the image
rescaled by ``factor``), divided by ``factor`` and clipped to the original (W, H); labels 1..K
map to the data set's category ids through ``category_ids[label - 1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from weaksam.retrain.features import FeatureStore
from weaksam.utils.boxes import xyxy_to_xywh
from weaksam.vision.features import FeatureBatch
from weaksam.vision.imaging import rescale, scale_factor, to_tensor


def to_results(image_id: int, det: dict[str, torch.Tensor], factor: float,
               width: int, height: int, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """One image's detections (input frame) -> COCO results (image_id, category_id, bbox xywh
    in original px, score), boxes clipped to the image."""
    b = det["boxes"].detach().cpu().double().numpy().reshape(-1, 4) / factor
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    out = []
    scores, labels = det["scores"].cpu().tolist(), det["labels"].cpu().tolist()
    for bb, sc, lb in zip(xyxy_to_xywh(b), scores, labels, strict=True):
        out.append({"image_id": int(image_id), "category_id": int(category_ids[int(lb) - 1]),
                    "bbox": [round(float(v), 2) for v in bb], "score": round(float(sc), 5)})
    return out


@torch.no_grad()
def detect_features(model: nn.Module, store: FeatureStore, original_sizes: dict[int, tuple[int,
                    int]], category_ids: Sequence[int], batch_size: int = 8,
                    device: torch.device | str = "cpu") -> list[dict]:
    """COCO results of every image of ``store`` (cached frozen-backbone maps, no flip).
    ``original_sizes[image_id]`` = (W, H) px."""
    model.eval().to(device)
    results: list[dict] = []
    for s in tqdm(range(0, len(store), batch_size), desc="detect", disable=None):
        rows = list(range(s, min(s + batch_size, len(store))))
        dets = model(FeatureBatch([store.map(i).to(device) for i in rows],
                                  [store.sizes[i] for i in rows]))
        for i, d in zip(rows, dets, strict=True):
            iid = store.image_ids[i]
            w, h = original_sizes[iid]
            results += to_results(iid, d, store.factors[i], w, h, category_ids)
    return results


@torch.no_grad()
def detect_images(model: nn.Module, image_ids: Sequence[int], read: Callable[[int], np.ndarray],
                  category_ids: Sequence[int], short_side: int, max_size: int,
                  batch_size: int = 4, device: torch.device | str = "cpu") -> list[dict]:
    """COCO results of images ``read(image_id)`` (H, W, 3) uint8 at one test scale."""
    model.eval().to(device)
    results: list[dict] = []
    for s in tqdm(range(0, len(image_ids), batch_size), desc="detect", disable=None):
        ids = list(image_ids[s:s + batch_size])
        xs, fs, whs = [], [], []
        for iid in ids:
            img = to_tensor(read(iid))
            f = scale_factor(img.shape[1], img.shape[2], short_side, max_size)
            xs.append(rescale(img, f).to(device))
            fs.append(f)
            whs.append((img.shape[2], img.shape[1]))
        for iid, d, f, (w, h) in zip(ids, model(xs), fs, whs, strict=True):
            results += to_results(iid, d, f, w, h, category_ids)
    return results


def unflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """(M, 4) xyxy boxes of a horizontally flipped image of ``width`` px -> the same boxes in
    the unflipped image (x1' = W - x2, x2' = W - x1)."""
    out = boxes.clone()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def merge_tta(views: Sequence[tuple[dict[str, torch.Tensor], float, int | None]], width: int,
              height: int, nms_iou: float, max_det: int,
              score_thresh: float = 1e-8) -> dict[str, torch.Tensor]:
    """Merge the detections of augmented views of one image, as detectron2's
    ``GeneralizedRCNNWithTTA._merge_detections`` (WeakSAM's release,
    ``retraining/SoS-WSOD/detectron2/detectron2/modeling/test_time_augmentation.py``): each
    view's ``det`` (boxes (M, 4) xyxy in the view's frame, scores (M,), labels (M,)) is mapped
    back to the original image (unflipped in the view's frame when its ``flip_width``, the
    view's width in px, is given, then divided by its ``factor``), all
    views are concatenated, boxes clipped to (``width``, ``height``), scores above
    ``score_thresh`` kept, then per-class NMS at ``nms_iou`` and the top ``max_det`` by score
    (``fast_rcnn_inference_single_image``). mmdet's ``DetTTAModel._merge_single_sample`` (the
    release's DINO TTA) is the same rule: views' boxes back in the original frame (flips
    inverted), concatenated, ``batched_nms`` per class, the first ``max_per_img``. Returns the
    same dict in original px (factor 1)."""
    from torchvision.ops import batched_nms

    boxes, scores, labels = [], [], []
    for det, factor, flip_width in views:
        b = det["boxes"].detach().float().cpu().reshape(-1, 4)
        if flip_width is not None:
            b = unflip_boxes(b, float(flip_width))
        boxes.append(b / factor)
        scores.append(det["scores"].detach().float().cpu().reshape(-1))
        labels.append(det["labels"].detach().cpu().reshape(-1).long())
    b, s, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    b[:, 0::2] = b[:, 0::2].clamp(0, width)
    b[:, 1::2] = b[:, 1::2].clamp(0, height)
    ok = s > score_thresh
    b, s, lab = b[ok], s[ok], lab[ok]
    keep = batched_nms(b, s, lab, nms_iou)[:max_det]  # sorted by decreasing score
    return {"boxes": b[keep], "scores": s[keep], "labels": lab[keep]}


@torch.no_grad()
def detect_images_tta(model: nn.Module, image_ids: Sequence[int],
                      read: Callable[[int], np.ndarray], category_ids: Sequence[int],
                      scales: Sequence[int], max_size: int, flip: bool, nms_iou: float,
                      max_det: int, device: torch.device | str = "cpu",
                      score_thresh: float = 1e-8) -> list[dict]:
    """COCO results with test-time augmentation: every short side of ``scales`` (px, long
    side at most ``max_size``), each also flipped when ``flip``; the views' detections merged
    by :func:`merge_tta` (the release's Faster R-CNN ``TEST.AUG``; its DINO ``dinotta.py``,
    mmdet ``DetTTAModel``: the same merge, NMS 0.6, top 300, no score threshold, i.e.
    ``score_thresh=-inf``)."""
    model.eval().to(device)
    results: list[dict] = []
    for iid in tqdm(image_ids, desc="detect (tta)", disable=None):
        img = to_tensor(read(iid))
        h, w = img.shape[1], img.shape[2]
        views = []
        for short in scales:
            f = scale_factor(h, w, int(short), max_size)
            x = rescale(img, f).to(device)
            flips = (False, True) if flip else (False,)
            dets = model([x.flip(-1) if fl else x for fl in flips])
            views += [(d, f, int(x.shape[-1]) if fl else None)
                      for d, fl in zip(dets, flips, strict=True)]
        merged = merge_tta(views, w, h, nms_iou, max_det, score_thresh=score_thresh)
        results += to_results(iid, merged, 1.0, w, h, category_ids)
    return results
