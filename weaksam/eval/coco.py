"""COCO-style box AP (AP@[0.5:0.95], AP50, AP75) through pycocotools' COCOeval, quietly.

pycocotools has no "difficult" flag: difficult VOC boxes count as ordinary ground truth here
(only ``iscrowd`` boxes are ignored, COCO's rule). Values in %.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from weaksam.errors import InputError


def coco_ap(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{"AP", "AP50", "AP75"}`` in % of COCO ``results`` (bbox xywh) on COCO-format ``gt``.

    No detections, or no ground truth, gives zeros (COCOeval's -1 "undefined" is mapped to 0).
    """
    zero = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    if not results or not gt.get("annotations"):
        return zero
    data = {
        "images": copy.deepcopy(list(gt["images"])),
        "categories": copy.deepcopy(list(gt["categories"])),
        "annotations": [],
    }
    for k, a in enumerate(gt["annotations"]):
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
        data["annotations"].append(a)
    img_ids = {int(im["id"]) for im in data["images"]}
    for r in results:
        if int(r["image_id"]) not in img_ids:
            raise InputError(None, f"detection on image {r['image_id']}, not in the ground truth")
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = data
        cgt.createIndex()
        cdt = cgt.loadRes([dict(r) for r in results])
        ev = COCOeval(cgt, cdt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {k: max(float(v), 0.0) * 100.0 for k, v in zip(("AP", "AP50", "AP75"), s[:3],
                                                           strict=True)}
