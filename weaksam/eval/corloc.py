"""Correct Localization (CorLoc), the paper's Table 7 metric on VOC 2007 trainval.

For every image and every class present in it (at least one ground-truth box of the class,
difficult ones included, as the image-level label is), take the top-scoring detection of that
class in the image (first one on ties); it is a hit when its IoU with any ground-truth box of
the class is >= ``iou_thr``; no detection is a miss. CorLoc of a class = hits / images
containing the class; the mean is over classes present in at least one image. IoU is the plain
area ratio of continuous xyxy boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weaksam.eval.gt import categories, group_gt, group_results
from weaksam.utils.boxes import box_iou


def corloc(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_thr: float = 0.5
) -> dict[str, Any]:
    """CorLoc of COCO-format ``results`` against COCO-format ``gt``.

    Returns ``{"mean": % or None, "per_class": {name: % or None}}`` (None: class in no image).
    """
    cats = categories(gt)
    per_image = group_gt(gt)
    dets = group_results(results, per_image, set(cats))
    per_class: dict[str, float | None] = {}
    for cid, name in cats.items():
        img, boxes, scores = dets.get(
            cid, (np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
        )
        # Top-1 per image: stable sort by descending score, keep each image's first row.
        order = np.argsort(-scores, kind="stable")
        uniq, first = np.unique(img[order], return_index=True)
        top = dict(zip(uniq.tolist(), order[first].tolist(), strict=True))
        hits = total = 0
        for iid, g in per_image.items():
            sel = g.cats == cid
            if not sel.any():
                continue
            total += 1
            if iid in top:
                iou = box_iou(boxes[top[iid]][None], g.boxes[sel])
                hits += int(iou.max() >= iou_thr)
        per_class[name] = 100.0 * hits / total if total else None
    valid = [v for v in per_class.values() if v is not None]
    return {"mean": float(np.mean(valid)) if valid else None, "per_class": per_class}
