"""COCO reader (``instances_*.json``, COCO 2014 / 2017) into the :class:`CocoIndex`.

Paper Sec. 4.1: WSOD trains on COCO 2014 train and tests on val; WSIS on COCO 2017. The
annotations keep their masks, as compressed RLE with ``counts`` a str (polygons and the crowds'
uncompressed RLE are converted: every consumer decodes one format) and the data set's own
sparse category ids (1..90 for 80 classes), which COCO results files must use;
``CocoIndex.cat_index`` maps them to contiguous 0..C-1.

VOC-style evaluation has no crowd notion: a crowd annotation (``iscrowd = 1``) is marked
``difficult = 1`` so it is ignored there, as in VOC, unless the file already has ``difficult``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from weaksam.data.index import CocoIndex, clip_bbox, index_from_dict
from weaksam.errors import InputError
from weaksam.utils.readers import read_json


def to_compressed_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` (polygons, uncompressed RLE with ``counts`` a list, or
    compressed RLE) as compressed RLE with ``counts`` a str (docs/contracts.md)."""
    if isinstance(seg, list):  # polygons of one object: one mask
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), bytes | str):
        rle = seg
    else:
        raise ValueError(f"unknown segmentation {type(seg).__name__}")
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _normalise_ann(a: dict[str, Any], size: tuple[int, int] | None) -> dict[str, Any]:
    out = dict(a)
    out["iscrowd"] = int(a.get("iscrowd", 0))
    out["difficult"] = int(a.get("difficult", out["iscrowd"]))
    seg = a.get("segmentation")
    if seg is not None and size is not None:
        out["segmentation"] = to_compressed_rle(seg, *size)
    if "area" not in out and "bbox" in out:
        out["area"] = float(out["bbox"][2]) * float(out["bbox"][3])
    return out


def _well_formed(bbox: Any) -> bool:
    """4 finite numbers, non-negative size (others are refused by ``index_from_dict``)."""
    try:
        v = [float(x) for x in bbox]
    except (TypeError, ValueError):
        return False
    return len(v) == 4 and all(math.isfinite(x) for x in v) and v[2] >= 0 and v[3] >= 0


def load_coco(json_path: str | Path, image_root: str | Path) -> CocoIndex:
    """Read a COCO instances JSON; ``image_root`` is the folder of its images (e.g.
    ``coco/train2014``), stored as ``info.image_root``. InputError naming the file on a
    missing file, bad JSON, unknown category or image in an annotation, or no images.

    A ``bbox`` reaching outside its image is clipped to it (counted in ``CocoIndex.boxes_clipped``;
    ``area``, the mask's, is kept); one with nothing inside the image is refused."""
    json_path = Path(json_path)
    data = read_json(json_path, "annotation file", want_object=True)
    anns = data.get("annotations", [])
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise InputError(json_path, "'annotations' must be a list of objects")
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise InputError(image_root, f"image folder of {json_path.name} not found")
    cats = [{"id": int(c["id"]), "name": str(c["name"]),
             **({"supercategory": c["supercategory"]} if "supercategory" in c else {})}
            for c in data.get("categories", []) if isinstance(c, dict) and "id" in c
            and "name" in c]
    sizes = {im["id"]: (int(im["height"]), int(im["width"])) for im in data.get("images") or []
             if isinstance(im, dict) and {"id", "height", "width"} <= im.keys()}
    norm, n_clipped = [], 0
    for a in anns:
        a = _normalise_ann(a, sizes.get(a.get("image_id")))
        if a.get("image_id") in sizes and _well_formed(a.get("bbox")):
            h, w = sizes[a["image_id"]]
            clipped = clip_bbox(a["bbox"], w, h)
            if clipped is None:
                raise InputError(json_path, f"annotation {a.get('id')!r}: bbox {a['bbox']!r} "
                                            f"has no area inside its {w} x {h} image "
                                            f"{a['image_id']}")
            a["bbox"], changed = clipped
            n_clipped += int(changed)
        norm.append(a)
    out = {
        "info": {**(data.get("info") or {}), "image_root": str(image_root)},
        "images": data.get("images"),
        "categories": cats if cats or "categories" in data else None,
        "annotations": norm,
    }
    idx = index_from_dict(out, json_path, image_root=image_root)
    idx.boxes_clipped = n_clipped
    return idx
