"""COCO-format split index: the one in-memory form of every data set (synthetic, VOC, COCO).

A split is one COCO-format JSON (docs/contracts.md, "data"): ``images[]`` (id, file_name,
width, height), ``categories[]`` (id, name), ``annotations[]`` (id, image_id, category_id,
bbox xywh in pixels, area, iscrowd, segmentation, difficult) and ``info.image_root``, the folder
``file_name`` is relative to (relative to the repository root = the working directory, or
absolute).

Shorthand: C classes, N instances of one image. Category ids are the data set's own (1..C for
synthetic and VOC, sparse for COCO); ``cat_index`` maps them to contiguous 0..C-1 in sorted id
order. ``gt_boxes`` returns ``(N, 4)`` float64 xyxy in pixels (x2, y2 exclusive).

Training code must not use this class on training splits: it reads them through
:class:`weaksam.data.weak.WeakView`, which exposes image-level labels only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from weaksam.errors import InputError
from weaksam.utils.boxes import clip_boxes, xywh_to_xyxy
from weaksam.utils.readers import read_json


@dataclass
class CocoIndex:
    """One split in COCO format, validated by :func:`load_index`."""

    path: Path
    image_root: Path
    images: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    # boxes the voc / coco reader clipped to their image (not part of the JSON)
    boxes_clipped: int = field(default=0, compare=False)
    _by_image: dict[int, dict[str, Any]] = field(init=False, repr=False, compare=False)
    _anns: dict[int, list[dict[str, Any]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.image_root = Path(self.image_root)
        self._by_image = {int(im["id"]): im for im in self.images}
        self._anns = {i: [] for i in self._by_image}
        for a in self.annotations:
            self._anns.setdefault(int(a["image_id"]), []).append(a)

    @cached_property
    def category_ids(self) -> list[int]:
        """Sorted category ids (length C)."""
        return sorted(int(c["id"]) for c in self.categories)

    @cached_property
    def category_names(self) -> list[str]:
        """Category names in ``category_ids`` order."""
        names = {int(c["id"]): str(c["name"]) for c in self.categories}
        return [names[i] for i in self.category_ids]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @cached_property
    def cat_index(self) -> dict[int, int]:
        """Category id -> contiguous index 0..C-1."""
        return {cid: k for k, cid in enumerate(self.category_ids)}

    @property
    def image_ids(self) -> list[int]:
        """Image ids in split (file) order."""
        return [int(im["id"]) for im in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, image_id: int) -> dict[str, Any]:
        """The ``images[]`` record of ``image_id`` (KeyError if absent)."""
        return self._by_image[int(image_id)]

    def image_path(self, image_id: int) -> Path:
        """Path of the image file of ``image_id``."""
        return self.image_root / str(self.image(image_id)["file_name"])

    def anns_of(self, image_id: int) -> list[dict[str, Any]]:
        """Annotations of ``image_id`` (file order)."""
        if int(image_id) not in self._by_image:
            raise KeyError(image_id)
        return self._anns.get(int(image_id), [])

    def labels_of(self, image_id: int) -> list[int]:
        """Sorted category ids present in ``image_id`` (difficult instances included, as VOC)."""
        return sorted({int(a["category_id"]) for a in self.anns_of(image_id)})

    def gt_boxes(self, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth of ``image_id``: ((N, 4) float64 xyxy px, (N,) int64 category ids,
        (N,) bool difficult)."""
        anns = self.anns_of(image_id)
        if not anns:
            return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64))
        cats = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        diff = np.array([bool(a.get("difficult", 0)) for a in anns], dtype=bool)
        return boxes, cats, diff

    def to_json(self, image_root: str | None = None) -> dict[str, Any]:
        """The COCO-format dict of this split (``info.image_root`` as given, else as loaded)."""
        return {
            "info": {"image_root": str(self.image_root if image_root is None else image_root)},
            "images": self.images,
            "categories": self.categories,
            "annotations": self.annotations,
        }


def resolve_image_root(root: str | Path, json_path: str | Path) -> Path:
    """Resolve ``info.image_root``: absolute as is; relative against the working directory
    (the repository root when stages run), else against the nearest ancestor of the JSON file
    where it exists (so an index loaded from elsewhere still finds its images)."""
    root = Path(root)
    if root.is_absolute():
        return root
    cand = Path.cwd() / root
    if cand.exists():
        return cand
    for anc in Path(json_path).resolve().parents:
        if (anc / root).exists():
            return anc / root
    return cand


def clip_bbox(bbox: list[float], width: int, height: int) -> tuple[list[float], bool] | None:
    """Clip a COCO ``bbox`` ``[x, y, w, h]`` (pixels) to the image ``[0, width] x [0, height]``.

    Returns ``(bbox, changed)``: the clipped box when it reached outside the image, else
    ``bbox`` itself (unchanged, no float round trip); None when nothing of the box lies inside
    the image (zero width or height after clipping): the caller refuses it, naming its file."""
    x1, y1 = float(bbox[0]), float(bbox[1])
    x2, y2 = x1 + float(bbox[2]), y1 + float(bbox[3])
    c = clip_boxes(np.array([[x1, y1, x2, y2]]), width, height)[0]
    if not (c[2] > c[0] and c[3] > c[1]):
        return None
    if np.array_equal(c, [x1, y1, x2, y2]):
        return list(bbox), False
    return [float(c[0]), float(c[1]), float(c[2] - c[0]), float(c[3] - c[1])], True


def mask_coverage(coco: Mapping[str, Any], path: str | Path | None = None
                  ) -> tuple[list[int], list[int]]:
    """``(with_masks, without_masks)`` image ids of a COCO dict, in ``images`` order, decided
    by the non-crowd annotations (crowd regions are no instances: ``instance_targets`` and
    mask AP ignore them): an image is with masks when every one has a ``segmentation`` (an
    image with none needs none), without when one lacks it (VOC images outside the segmented
    subset: most of VOC 2012 ``Main/val`` and ``train_aug``).

    ``path`` (the annotation file, named in the error): an image with some non-crowd objects
    masked and others not is an InputError naming its file, since VOC (a ``SegmentationObject``
    PNG covers every object of its image) and COCO annotate every object of a segmented image
    (the WSIS evaluation split); without ``path`` it counts as without masks."""
    masked: set[int] = set()
    lacking: set[int] = set()
    for a in coco.get("annotations", []):
        if not a.get("iscrowd", 0):
            (masked if a.get("segmentation") else lacking).add(int(a["image_id"]))
    if path is not None and (partial := masked & lacking):
        first = next(im for im in coco["images"] if int(im["id"]) in partial)
        anns = [a for a in coco["annotations"]
                if int(a["image_id"]) == int(first["id"]) and not a.get("iscrowd", 0)]
        n_masked = sum(1 for a in anns if a.get("segmentation"))
        raise InputError(path, f"image {first['id']} ({first.get('file_name', '?')}): "
                               f"{n_masked} of its {len(anns)} objects have an instance mask, "
                               f"the others none ({len(partial)} such image(s)); a segmented "
                               "image must have a mask on every object")
    ids = [int(im["id"]) for im in coco["images"]]
    return [i for i in ids if i not in lacking], [i for i in ids if i in lacking]


def subset(coco: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """``coco`` restricted to ``image_ids`` (images and their annotations, order kept; other
    keys copied)."""
    keep = {int(i) for i in image_ids}
    return {**coco, "images": [im for im in coco["images"] if int(im["id"]) in keep],
            "annotations": [a for a in coco.get("annotations", [])
                            if int(a["image_id"]) in keep]}


def mask_eval_split(gt: Any, path: str | Path) -> tuple[Any, int]:
    """``(gt restricted to its images with instance masks, images left out)``: the split a
    mask AP is computed on (the WSIS stages and the report's intervals), images in ``gt``'s
    order (``gt`` itself when every image has masks). Crowd regions without a mask are dropped
    (mask AP cannot use them as ignored regions). InputError naming ``path`` on an image with
    some objects masked and others not (:func:`mask_coverage`), or when no image has masks."""
    with_masks, without = mask_coverage(gt, path)
    out = subset(gt, with_masks) if without else gt
    if without:
        if not any(not a.get("iscrowd", 0) for a in out["annotations"]):
            raise InputError(path, f"none of the {len(gt['images'])} test images has instance "
                                   "masks: mask AP needs ground-truth masks (VOC 2012: "
                                   "data.voc_test: Segmentation/val; VOC 2007: the test images "
                                   "listed in ImageSets/Segmentation/test.txt)")
    if any(not a.get("segmentation") for a in out["annotations"]):  # crowd regions only
        out = {**out, "annotations": [a for a in out["annotations"] if a.get("segmentation")]}
    return out, len(without)


def _require(cond: bool, path: Path, problem: str) -> None:
    if not cond:
        raise InputError(path, problem)


def index_from_dict(data: Any, path: str | Path, image_root: str | Path | None = None) -> CocoIndex:
    """Validate a COCO-format dict and build the index (errors name ``path``).

    ``image_root`` overrides ``info.image_root``. Checks: the three lists exist, ids are unique,
    every annotation's category and image exist, the split has at least one image, bboxes have
    4 finite non-negative-size numbers.
    """
    path = Path(path)
    _require(isinstance(data, dict), path, "expected a JSON object at the top level")
    for key in ("images", "categories"):
        _require(isinstance(data.get(key), list), path, f"missing or non-list '{key}'")
    anns = data.get("annotations", [])
    _require(isinstance(anns, list), path, "non-list 'annotations'")
    images, cats = data["images"], data["categories"]
    _require(len(images) > 0, path, "empty split: no images")
    _require(len(cats) > 0, path, "no categories")
    try:
        img_ids = [int(im["id"]) for im in images]
        for im in images:
            str(im["file_name"])
            int(im["width"]), int(im["height"])
        cat_ids = [int(c["id"]) for c in cats]
        [str(c["name"]) for c in cats]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"malformed image or category record ({e!r})") from e
    _require(len(set(img_ids)) == len(img_ids), path, "duplicate image ids")
    _require(len(set(cat_ids)) == len(cat_ids), path, "duplicate category ids")
    img_set, cat_set = set(img_ids), set(cat_ids)
    for a in anns:
        try:
            aid, iid, cid = a["id"], int(a["image_id"]), int(a["category_id"])
            bbox = [float(v) for v in a["bbox"]]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, f"malformed annotation {a.get('id')!r} ({e!r})") from e
        _require(cid in cat_set, path, f"annotation {aid}: unknown category_id {cid}")
        _require(iid in img_set, path, f"annotation {aid}: unknown image_id {iid}")
        _require(
            len(bbox) == 4 and all(np.isfinite(bbox)) and bbox[2] >= 0 and bbox[3] >= 0,
            path,
            f"annotation {aid}: bad bbox {a['bbox']!r}",
        )
    if image_root is None:
        info = data.get("info") or {}
        _require(isinstance(info, dict) and "image_root" in info, path, "missing info.image_root")
        image_root = resolve_image_root(info["image_root"], path)
    return CocoIndex(path=path, image_root=Path(image_root), images=images, categories=cats,
                     annotations=anns)


def load_index(path: str | Path, image_root: str | Path | None = None) -> CocoIndex:
    """Load and validate one split's COCO-format JSON (``data/annotations/{split}.json``).

    Raises InputError naming ``path`` on a missing file, bad JSON, an annotation with an unknown
    category or image, or an empty split.
    """
    path = Path(path)
    return index_from_dict(read_json(path, "annotation file"), path, image_root=image_root)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; missing or corrupt -> InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"corrupt or unreadable image ({e})") from e
    return np.ascontiguousarray(arr, dtype=np.uint8)
