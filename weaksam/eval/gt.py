"""COCO-format inputs grouped per image, shared by the metrics of this package.

Shorthand: N ground-truth instances of one image, D detections. Boxes are ``(N, 4)`` float64
xyxy in pixels (x2, y2 exclusive), converted from COCO ``bbox`` xywh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from weaksam.errors import InputError
from weaksam.utils.boxes import xywh_to_xyxy


@dataclass
class ImageGT:
    """Ground truth of one image: ``boxes (N, 4)`` xyxy, ``cats (N,)`` int64, ``difficult (N,)``."""

    boxes: np.ndarray
    cats: np.ndarray
    difficult: np.ndarray


def categories(gt: Mapping[str, Any]) -> dict[int, str]:
    """Category id -> name, in ascending id order."""
    cats = {int(c["id"]): str(c["name"]) for c in gt.get("categories", [])}
    return dict(sorted(cats.items()))


def group_gt(gt: Mapping[str, Any]) -> dict[int, ImageGT]:
    """``gt`` (COCO dict with ``images``, ``annotations``, optional ``difficult`` 0/1 and
    ``iscrowd``) -> image id -> :class:`ImageGT`, for every image in ``images`` (split order).

    A crowd annotation (``iscrowd=1``, COCO) is treated like a VOC difficult one.
    """
    per: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in gt.get("images", [])}
    for a in gt.get("annotations", []):
        iid = int(a["image_id"])
        if iid not in per:
            raise InputError(None, f"annotation {a.get('id')!r} refers to unknown image {iid}")
        per[iid].append(a)
    out: dict[int, ImageGT] = {}
    for iid, anns in per.items():
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4))
        cats = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        diff = np.array(
            [bool(a.get("difficult", 0)) or bool(a.get("iscrowd", 0)) for a in anns], dtype=bool
        )
        out[iid] = ImageGT(boxes, cats, diff)
    return out


def group_results(
    results: Sequence[Mapping[str, Any]], image_ids: set[int] | dict[int, Any], cat_ids: set[int]
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """COCO results -> category id -> (image ids (D,) int64, boxes (D, 4) xyxy, scores (D,)),
    each in input order. Unknown images or categories raise :class:`InputError`."""
    per: dict[int, list[Mapping[str, Any]]] = {}
    for r in results:
        iid, cid = int(r["image_id"]), int(r["category_id"])
        if iid not in image_ids:
            raise InputError(None, f"detection on image {iid}, which is not in the ground truth")
        if cid not in cat_ids:
            raise InputError(None, f"detection of unknown category {cid}")
        per.setdefault(cid, []).append(r)
    out = {}
    for cid, rs in per.items():
        out[cid] = (
            np.array([int(r["image_id"]) for r in rs], dtype=np.int64),
            xywh_to_xyxy(np.array([r["bbox"] for r in rs], dtype=np.float64).reshape(-1, 4)),
            np.array([float(r["score"]) for r in rs], dtype=np.float64),
        )
    return out
