"""From a WSOD run's trainval detections (COCO results JSON) to COCO-format pseudo annotations.

Input: ``wsod/{run}/detections_trainval.json``, a COCO results list (``image_id``,
``category_id``, ``bbox`` xywh px, ``score``), and the split's image-level labels
(:class:`weaksam.data.weak.WeakView`: the PGT never sees a ground-truth box).

Output (docs/contracts.md, second-half contract "PGT"): a COCO-format dict with the split's
``images`` (id, file_name, width, height; every image, also those left without a box),
``categories`` (as the split's), ``info.image_root`` (as the split's, so images resolve) and
``annotations``: id (1..M), image_id, category_id, bbox (the detection's own xywh, unchanged),
area (w * h), iscrowd 0 and score (the WSOD score). Annotations come in image (split) order,
then class id order, then detection-file order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.pgt.adaptive import TAU_O, TAU_S, adaptive_image
from weaksam.pgt.top1 import top1_image
from weaksam.utils.boxes import xywh_to_xyxy
from weaksam.utils.readers import read_json

MODES = ("top1", "adaptive")


@dataclass(frozen=True)
class ImageDetections:
    """Detections of one image in file order: ``bbox (D, 4)`` xywh px as written,
    ``boxes (D, 4)`` xyxy px, ``scores (D,)`` float64, ``cats (D,)`` int64 category ids."""

    bbox: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    cats: np.ndarray


def _empty() -> ImageDetections:
    z = np.zeros((0, 4))
    return ImageDetections(z, z.copy(), np.zeros(0), np.zeros(0, dtype=np.int64))


def parse_detections(
    data: Any, path: str | Path, image_ids: Sequence[int], category_ids: Sequence[int]
) -> dict[int, ImageDetections]:
    """Validate a COCO results list and group it per image: image id -> :class:`ImageDetections`
    for every id of ``image_ids`` (images without detections get empty arrays).

    Raises :class:`InputError` naming ``path`` when ``data`` is not a list of objects with an
    ``image_id`` of the split, a ``category_id`` of ``category_ids``, a ``bbox`` of 4 finite
    numbers with non-negative width and height, and a finite ``score``. An empty list is valid.
    """
    if not isinstance(data, list):
        raise InputError(path, "detections file must hold a JSON list of COCO results")
    img_set, cat_set = {int(i) for i in image_ids}, {int(c) for c in category_ids}
    rows: dict[int, list[tuple[list[float], float, int]]] = {i: [] for i in image_ids}
    for k, r in enumerate(data):
        try:
            iid, cid = int(r["image_id"]), int(r["category_id"])
            bbox = [float(v) for v in r["bbox"]]
            score = float(r["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, f"detection #{k} is malformed ({e!r})") from e
        if iid not in img_set:
            raise InputError(path, f"detection #{k}: image_id {iid} is not in the split")
        if cid not in cat_set:
            raise InputError(path, f"detection #{k}: unknown category_id {cid}")
        if len(bbox) != 4 or not all(map(math.isfinite, bbox)) or bbox[2] < 0 or bbox[3] < 0:
            raise InputError(path, f"detection #{k}: bad bbox {r['bbox']!r}")
        if not math.isfinite(score):
            raise InputError(path, f"detection #{k}: score {r['score']!r} is not finite")
        rows[iid].append((bbox, score, cid))
    out: dict[int, ImageDetections] = {}
    for iid, rs in rows.items():
        if not rs:
            out[iid] = _empty()
            continue
        bbox = np.array([r[0] for r in rs], dtype=np.float64)
        out[iid] = ImageDetections(
            bbox=bbox,
            boxes=xywh_to_xyxy(bbox),
            scores=np.array([r[1] for r in rs], dtype=np.float64),
            cats=np.array([r[2] for r in rs], dtype=np.int64),
        )
    return out


def load_detections(
    path: str | Path, image_ids: Sequence[int], category_ids: Sequence[int]
) -> dict[int, ImageDetections]:
    """Read and validate ``wsod/{run}/detections_{split}.json`` (see :func:`parse_detections`)."""
    return parse_detections(read_json(path, "detections file"), path, image_ids, category_ids)


def select(
    dets: ImageDetections,
    labels: Sequence[int],
    mode: str,
    tau_s: float = TAU_S,
    tau_o: float = TAU_O,
) -> np.ndarray:
    """Indices (K,) into ``dets`` of one image's PGT boxes: ``mode`` "adaptive" (Algorithm 2)
    or "top1"; ``labels``: the image-level label set (category ids)."""
    if mode == "adaptive":
        return adaptive_image(dets.boxes, dets.scores, dets.cats, labels, tau_s, tau_o)
    if mode == "top1":
        return top1_image(dets.scores, dets.cats, labels)
    raise ValueError(f"unknown PGT mode {mode!r}; expected one of {', '.join(MODES)}")


def build_pgt(
    view: WeakView,
    images: Sequence[Mapping[str, Any]],
    categories: Sequence[Mapping[str, Any]],
    image_root: str,
    detections: Mapping[int, ImageDetections],
    mode: str,
    tau_s: float = TAU_S,
    tau_o: float = TAU_O,
    progress: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """The COCO-format PGT of one split (module docstring for the format).

    ``view``: the split's image-level labels; ``images`` / ``categories``: the split's records
    (only id, file_name, width, height and id, name are copied); ``image_root``: the split's
    ``info.image_root``; ``detections``: from :func:`load_detections`; ``progress``: an
    optional wrapper of the image loop (e.g. ``tqdm``).
    """
    if mode not in MODES:
        raise ValueError(f"unknown PGT mode {mode!r}; expected one of {', '.join(MODES)}")
    cat_ids = view.category_ids
    anns: list[dict[str, Any]] = []
    loop = progress(view) if progress is not None else view
    for item in loop:
        labels = [cat_ids[k] for k in np.flatnonzero(item.labels > 0)]
        dets = detections.get(item.image_id, _empty())
        for j in select(dets, labels, mode, tau_s, tau_o):
            x, y, w, h = (float(v) for v in dets.bbox[j])
            anns.append({
                "id": len(anns) + 1,
                "image_id": item.image_id,
                "category_id": int(dets.cats[j]),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "score": float(dets.scores[j]),
            })
    return {
        "info": {"image_root": str(image_root),
                 "description": f"pseudo ground truth ({mode}) from WSOD detections"},
        "images": [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in images],
        "categories": [{"id": c["id"], "name": c["name"]} for c in categories],
        "annotations": anns,
    }
