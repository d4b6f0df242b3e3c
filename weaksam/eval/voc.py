"""PASCAL VOC detection AP (the paper's AP50 on VOC 2007 test: VOC07 11-point metric).

Identical to the Python ports of the VOC devkit that the paper's numbers come from
(detectron2's ``PascalVOCDetectionEvaluator`` / ``voc_eval``, wetectron), per class:
1. all detections of the class, sorted by descending score (stable: ties keep input order,
   like MATLAB's ``sort``);
2. each detection takes the ground-truth box of its image and class with the largest IoU
   (first one on ties), over all boxes including difficult ones;
3. IoU > ``iou_thr`` (strict, the ports' ``ovmax > ovthresh``): matched to a non-difficult box
   not yet taken -> true positive; to one already taken -> false positive (duplicate); to a
   difficult box -> ignored (neither TP nor FP);
   IoU at or below the threshold -> false positive;
4. recall = cumTP / #non-difficult GT, precision = cumTP / (cumTP + cumFP); AP by
   :func:`voc_ap`.

Boxes here are continuous xyxy with exclusive x2, y2, so IoU is the plain area ratio: the same
number as the ports' "+1 pixel" IoU on their 1-based inclusive boxes, since the VOC reader maps
``[xmin, xmax]`` to ``[xmin - 1, xmax)`` and detectron2 writes ``x1 + 1, y1 + 1, x2, y2``.
Differences from the ports, on purpose: score ties keep input order (a stable sort; the ports'
``np.argsort`` is not stable, so their order on ties is arbitrary). A class without any
non-difficult ground truth has undefined AP (the ports divide by zero and get NaN): it is
reported as ``None`` and left out of the mean. A crowd annotation (COCO ``iscrowd``) counts as
difficult.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weaksam.eval.gt import categories, group_gt, group_results
from weaksam.utils.boxes import box_iou

#: The VOC07 11-point recall thresholds of the devkit's Python ports (detectron2 ``voc_ap``).
DEVKIT_07_THRESHOLDS: np.ndarray = np.arange(0.0, 1.1, 0.1)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """Average precision (fraction in [0, 1]) of a PR curve ``recall (D,)``, ``precision (D,)``
    given in detection order.

    ``use_07_metric``: VOC2007 11-point interpolation, mean over the 11 thresholds
    ``t = np.arange(0.0, 1.1, 0.1)`` of the highest precision at ``recall >= t`` (0 when none),
    exactly as the devkit's Python ports compute it. Those thresholds are floating-point: the
    4th is 0.30000000000000004, the 7th and 8th 0.6000000000000001 and 0.7000000000000001, so
    a recall of exactly 3/10 (0.3 as a double) does not reach t = 0.3; published VOC07 AP50
    figures carry this, and so does this function. Otherwise the VOC2010+ "area" metric: area
    under the monotone (right-to-left running max) precision envelope.
    """
    rec = np.asarray(recall, dtype=np.float64).ravel()
    prec = np.asarray(precision, dtype=np.float64).ravel()
    if use_07_metric:
        ap = 0.0
        for t in DEVKIT_07_THRESHOLDS:
            above = rec >= t
            ap += (prec[above].max() if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def match_detections(
    det_boxes: np.ndarray, gt_boxes: np.ndarray, gt_difficult: np.ndarray, iou_thr: float
) -> np.ndarray:
    """Greedy devkit matching inside one image and class: a detection is matched when its best
    IoU is strictly above ``iou_thr`` (the ports' ``ovmax > ovthresh``).

    ``det_boxes (D, 4)`` already in descending-score order, ``gt_boxes (N, 4)``,
    ``gt_difficult (N,)`` bool -> ``(D,)`` int8: 1 true positive, 0 false positive, -1 ignored
    (matched a difficult box).
    """
    d = len(det_boxes)
    out = np.zeros(d, dtype=np.int8)
    if len(gt_boxes) == 0 or d == 0:
        return out
    iou = box_iou(det_boxes, gt_boxes)  # (D, N)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(d), best]
    for k in range(d):
        if not best_iou[k] > iou_thr:
            continue
        j = best[k]
        if gt_difficult[j]:
            out[k] = -1
        elif not taken[j]:
            taken[j] = True
            out[k] = 1
    return out


def evaluate_voc(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    iou_thr: float = 0.5,
    use_07_metric: bool = True,
) -> dict[str, Any]:
    """VOC AP of COCO-format ``results`` (image_id, category_id, bbox xywh, score) against the
    COCO-format ``gt`` (annotations may carry ``difficult`` 0/1).

    Returns ``{"map": mean AP in %, "ap_per_class": {name: AP in % or None}}``; the mean is over
    classes with at least one non-difficult ground-truth box (``None`` if there are none).
    """
    cats = categories(gt)
    per_image = group_gt(gt)
    dets = group_results(results, per_image, set(cats))
    ap_per_class: dict[str, float | None] = {}
    for cid, name in cats.items():
        npos = int(sum(int((g.cats[~g.difficult] == cid).sum()) for g in per_image.values()))
        if npos == 0:
            ap_per_class[name] = None
            continue
        img, boxes, scores = dets.get(
            cid, (np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
        )
        order = np.argsort(-scores, kind="stable")
        img, boxes = img[order], boxes[order]
        flags = np.zeros(len(order), dtype=np.int8)
        # Group rows by image; a stable sort keeps each image's rows in descending-score order.
        by_img = np.argsort(img, kind="stable")
        uniq, starts = np.unique(img[by_img], return_index=True)
        groups = np.split(by_img, starts[1:]) if len(by_img) else []
        for iid, rows in zip(uniq.tolist(), groups, strict=True):
            g = per_image[iid]
            sel = g.cats == cid
            flags[rows] = match_detections(boxes[rows], g.boxes[sel], g.difficult[sel], iou_thr)
        tp = np.cumsum(flags == 1)
        fp = np.cumsum(flags == 0)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        ap_per_class[name] = 100.0 * voc_ap(rec, prec, use_07_metric)
    valid = [v for v in ap_per_class.values() if v is not None]
    return {
        "map": float(np.mean(valid)) if valid else None,
        "ap_per_class": ap_per_class,
    }
