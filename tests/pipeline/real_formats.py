"""Small data sets in the real on-disk formats, written by the end-to-end real-data tests.

- :func:`write_vocdevkit`: a ``VOCdevkit/VOC2007`` tree (``Annotations/*.xml`` with 1-based
  inclusive ``bndbox``, ``difficult``, ``truncated``, ``pose``; ``JPEGImages/*.jpg``;
  ``ImageSets/Main/{trainval,test}.txt``), objects of the 20 VOC classes, and the
  segmentation subset's files (``SegmentationObject`` / ``SegmentationClass`` palette PNGs:
  index k + 1 for the k-th object of the XML / its class, 255 on object borders, 0
  background; ``ImageSets/Segmentation/{trainval,test}.txt``) for every image.
- :func:`write_coco`: a COCO 2014 layout (``annotations/instances_{train,val}2014.json``,
  ``{train,val}2014/COCO_*_%012d.jpg``) with COCO's sparse category ids, polygon masks,
  compressed RLE masks (``counts`` a string), crowd regions (``iscrowd: 1``, uncompressed
  RLE ``counts`` a list), and a validation image without annotations.

Objects are flat-coloured shapes (one colour per class) on a noisy background, drawn from the
same polygon the annotation stores, so boxes and masks are exact. Seeded: same bytes each time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from weaksam.data.voc import VOC_CLASSES

# a sparse subset of COCO's category ids (1..90 with gaps), as instances_*.json lists them
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (3, "car", "vehicle"), (18, "dog", "animal"),
    (44, "bottle", "kitchen"), (62, "chair", "furniture"), (90, "toothbrush", "indoor"),
)


def _colour(k: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(1000 + k)
    return tuple(int(v) for v in rng.integers(40, 256, 3))


def _polygon(rng: np.random.Generator, w: int, h: int) -> list[tuple[float, float]]:
    """A convex shape (4 to 12 vertices) inside the image, at least ~20 px across."""
    s = float(rng.uniform(0.25, 0.5)) * min(w, h)
    cx, cy = rng.uniform(s / 2, w - s / 2), rng.uniform(s / 2, h - s / 2)
    n = int(rng.integers(4, 13))
    rot = rng.uniform(0, 2 * math.pi)
    return [(cx + s / 2 * math.cos(rot + 2 * math.pi * i / n),
             cy + s / 2 * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]


def _canvas(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    bg = rng.normal(110, 25, (h, w, 3)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(bg)


def _mask_of(poly: list[tuple[float, float]], w: int, h: int) -> np.ndarray:
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).polygon(poly, fill=1)
    return np.asarray(m, dtype=np.uint8)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """0-based xyxy, x2 / y2 exclusive, of the mask's pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def write_vocdevkit(devkit: Path, n_trainval: int = 10, n_test: int = 6, seed: int = 0,
                    size: tuple[int, int] = (96, 128)) -> dict:
    """Write ``devkit/VOC2007``; returns ``{"root", "first": (name, class, xyxy 0-based
    exclusive, difficult) of trainval's first object, "counts": {split: (images, objects,
    difficult)}}``. Every image has at least one non-difficult object."""
    root = devkit / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation",
                "SegmentationObject", "SegmentationClass"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: dict = {"root": root, "counts": {}}
    num = 1
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        names, objects, difficult = [], 0, 0
        for i in range(n):
            name = f"{num:06d}"
            num += 1
            w, h = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
            img = _canvas(rng, w, h)
            draw = ImageDraw.Draw(img)
            objs, masks = [], []
            for j in range(int(rng.integers(1, 4))):
                k = int(rng.integers(0, len(VOC_CLASSES)))
                poly = _polygon(rng, w, h)
                draw.polygon(poly, fill=_colour(k))
                masks.append(_mask_of(poly, w, h))
                x1, y1, x2, y2 = _box_of(masks[-1])
                diff = int(j > 0 and rng.random() < 0.3)
                objs.append((VOC_CLASSES[k], (x1, y1, x2, y2), diff))
            if i == 0:  # a truncated object reaching the right and bottom borders
                k = (num * 7) % len(VOC_CLASSES)
                draw.rectangle((w - 20, h - 15, w - 1, h - 1), fill=_colour(k))
                m = np.zeros((h, w), np.uint8)
                m[h - 15:, w - 20:] = 1
                masks.append(m)
                objs.append((VOC_CLASSES[k], (w - 20, h - 15, w, h), 0))
            img.save(root / "JPEGImages" / f"{name}.jpg", quality=92)
            _write_voc_segmentation(root, name, masks, [VOC_CLASSES.index(o[0]) + 1
                                                        for o in objs])
            xml = [f"<annotation>\n  <folder>VOC2007</folder>\n  <filename>{name}.jpg</filename>",
                   "  <source><database>The VOC2007 Database</database></source>",
                   f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
                   "  <segmented>0</segmented>"]
            for cname, (x1, y1, x2, y2), diff in objs:
                trunc = int(x2 == w or y2 == h or x1 == 0 or y1 == 0)
                # VOC: 1-based, inclusive -> xmin = x1 + 1, xmax = x2 (the last covered column)
                xml.append(f"  <object><name>{cname}</name><pose>Unspecified</pose>"
                           f"<truncated>{trunc}</truncated><difficult>{diff}</difficult>"
                           f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                           f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
            xml.append("</annotation>\n")
            (root / "Annotations" / f"{name}.xml").write_text("\n".join(xml))
            if split == "trainval" and i == 0:
                cname, box, diff = objs[0]
                out["first"] = (name, cname, box, diff)
            names.append(name)
            objects += len(objs)
            difficult += sum(d for *_, d in objs)
        for sets in ("Main", "Segmentation"):
            (root / "ImageSets" / sets / f"{split}.txt").write_text("\n".join(names) + "\n")
        out["counts"][split] = (len(names), objects, difficult)
    return out


def _voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved, as the devkit's ``labelcolormap``)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _write_voc_segmentation(root: Path, name: str, masks: list[np.ndarray],
                            class_ids: list[int]) -> None:
    """``SegmentationObject`` (k + 1 = k-th object) and ``SegmentationClass`` (class id 1..20)
    palette PNGs; later objects lie on top; 255 on the pixels where an object meets another
    label (VOC's void border)."""
    obj = np.zeros(masks[0].shape, np.uint8)
    for k, m in enumerate(masks):
        obj[m.astype(bool)] = k + 1
    cls = np.zeros_like(obj)
    for k, c in enumerate(class_ids):
        cls[obj == k + 1] = c
    edge = np.zeros(obj.shape, bool)
    edge[:, 1:] |= obj[:, 1:] != obj[:, :-1]
    edge[1:, :] |= obj[1:, :] != obj[:-1, :]
    for arr, folder in ((obj, "SegmentationObject"), (cls, "SegmentationClass")):
        out = arr.copy()
        out[edge] = 255
        im = Image.fromarray(out, mode="P")
        im.putpalette(_voc_palette())
        im.save(root / folder / f"{name}.png")


def _uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE ``counts`` of a binary mask: run lengths in column-major
    order, starting with a (possibly empty) run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] == 1 else runs


def write_coco(coco: Path, n_train: int = 10, n_val: int = 6, seed: int = 0,
               size: tuple[int, int] = (96, 128), year: int = 2014) -> dict:
    """Write ``coco/annotations/instances_{train,val}{year}.json`` and the image folders;
    returns ``{"train": (json, image folder), "val": (...), "kinds": {segmentation kind:
    count}}``."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    (coco / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": c, "name": n, "supercategory": s} for c, n, s in COCO_CATEGORIES]
    out: dict = {"kinds": {"polygon": 0, "rle": 0, "crowd_rle": 0}}
    image_id, ann_id = 9, 1
    for split, n in (("train", n_train), ("val", n_val)):
        folder = coco / f"{split}{year}"
        folder.mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(n):
            w, h = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
            file_name = f"COCO_{split}{year}_{image_id:012d}.jpg"
            img = _canvas(rng, w, h)
            draw = ImageDraw.Draw(img)
            empty = split == "val" and i == n - 1  # COCO has images without annotations
            for j in range(0 if empty else int(rng.integers(1, 4))):
                cid, _, _ = COCO_CATEGORIES[int(rng.integers(0, len(COCO_CATEGORIES)))]
                poly = _polygon(rng, w, h)
                draw.polygon(poly, fill=_colour(cid))
                mask = _mask_of(poly, w, h)
                x1, y1, x2, y2 = _box_of(mask)
                crowd = int(j > 0 and rng.random() < 0.25)
                if crowd:
                    seg = {"size": [h, w], "counts": _uncompressed_rle(mask)}
                    out["kinds"]["crowd_rle"] += 1
                elif j % 2 == 0:
                    seg = [[round(v, 2) for xy in poly for v in xy]]
                    out["kinds"]["polygon"] += 1
                else:
                    rle = mask_utils.encode(np.asfortranarray(mask))
                    seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
                    out["kinds"]["rle"] += 1
                anns.append({"id": ann_id, "image_id": image_id, "category_id": cid,
                             "segmentation": seg, "area": float(mask.sum()),
                             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                             "iscrowd": crowd})
                ann_id += 1
            img.save(folder / file_name, quality=92)
            images.append({"id": image_id, "file_name": file_name, "width": w, "height": h,
                           "license": 1, "coco_url": "", "date_captured": ""})
            image_id += 7
        js = coco / "annotations" / f"instances_{split}{year}.json"
        js.write_text(json.dumps({
            "info": {"description": "test fixture", "year": year}, "licenses": [],
            "images": images, "annotations": anns, "categories": cats}))
        out[split] = (js, folder)
    return out
