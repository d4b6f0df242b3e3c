"""Small data sets in the real on-disk layouts of the paper's data sets (paper Sec. 4.1), for
the dry runs of the paper profiles and the end-to-end real-data tests.

- :func:`write_vocdevkit`: a ``VOCdevkit/VOC2007`` or ``VOCdevkit/VOC2012`` tree
  (``Annotations/*.xml`` with 1-based inclusive ``bndbox``, ``difficult``, ``truncated``,
  ``pose``; ``JPEGImages/*.jpg``; ``SegmentationObject`` / ``SegmentationClass`` palette PNGs:
  index k + 1 for the k-th object of the XML / its class, 255 on object borders, 0
  background) with the real split files:

  - VOC 2007: ``ImageSets/Main/{trainval,test}.txt``, names ``%06d``; the segmented subset
    in ``ImageSets/Segmentation/{trainval,test}.txt``.
  - VOC 2012: ``ImageSets/Main/{train,val,trainval}.txt``, names ``2008_%06d``;
    ``ImageSets/Segmentation/{train,val,trainval}.txt`` (every image listed there has a
    ``SegmentationObject`` PNG, no other image has one) and the SBD-augmented training list
    ``ImageSets/Segmentation/train_aug.txt`` (as the authors' release and common practice
    place it: Main trainval minus Segmentation val, so most of it has no PNG).
- :func:`write_coco`: a COCO 2014 or 2017 layout (``annotations/instances_{train,val}{year}
  .json``, ``{train,val}{year}/`` with ``COCO_{split}2014_%012d.jpg`` / ``%012d.jpg``) with a
  subset of COCO's sparse category ids, polygon masks, compressed RLE masks (``counts`` a
  string), crowd regions (``iscrowd: 1``, uncompressed RLE ``counts`` a list), and a
  validation image without annotations.
- :func:`write_tree`: the tree one profile's ``data`` section reads, at the paths it names.

Image sizes (``size``): ``"real"`` draws VOC images with long side 480..500 and short side
333..375 (a quarter of them portrait), COCO images with long side 600..640 and short side
427..480 (the data sets' typical 500 x 375 and 640 x 480); ``"small"`` draws width and
height independently in 96..128; a ``(lo, hi)`` tuple likewise in lo..hi.

Objects are flat-coloured shapes (one colour per class) on a noisy background, drawn from the
same polygon the annotation stores, so boxes and masks are exact. Seeded: same bytes each time.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from weaksam.data.voc import VOC_CLASSES

# a sparse subset of COCO's category ids (1..90 with gaps), as instances_*.json lists them
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (3, "car", "vehicle"), (18, "dog", "animal"),
    (44, "bottle", "kitchen"), (62, "chair", "furniture"), (90, "toothbrush", "indoor"),
)
# (long side lo, hi), (short side lo, hi) of the "real" sizes, px
REAL_SIZES = {"voc": ((480, 500), (333, 375)), "coco": ((600, 640), (427, 480))}
SMALL_SIZE = (96, 128)

Size = str | tuple[int, int]


def _draw_size(rng: np.random.Generator, size: Size, kind: str) -> tuple[int, int]:
    """(width, height) of one image (module docstring, "Image sizes")."""
    if size == "real":
        (l0, l1), (s0, s1) = REAL_SIZES[kind]
        long, short = int(rng.integers(l0, l1 + 1)), int(rng.integers(s0, s1 + 1))
        return (short, long) if rng.random() < 0.25 else (long, short)
    if isinstance(size, str) and size != "small":
        raise ValueError(f"size must be 'real', 'small' or (lo, hi), got {size!r}")
    lo, hi = SMALL_SIZE if size == "small" else size
    w, h = (int(v) for v in rng.integers(int(lo), int(hi) + 1, 2))
    return w, h


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


def _write_split_file(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names))


def _voc_image(root: Path, year: str, name: str, rng: np.random.Generator, size: Size,
               truncated_corner: bool, segmented: bool) -> list[tuple[str, tuple, int]]:
    """Write one VOC image, its XML and (``segmented``) its PNGs; returns its objects
    ``(class, xyxy 0-based exclusive, difficult)``."""
    w, h = _draw_size(rng, size, "voc")
    img = _canvas(rng, w, h)
    draw = ImageDraw.Draw(img)
    objs, masks = [], []
    for j in range(int(rng.integers(1, 4))):
        k = int(rng.integers(0, len(VOC_CLASSES)))
        poly = _polygon(rng, w, h)
        draw.polygon(poly, fill=_colour(k))
        masks.append(_mask_of(poly, w, h))
        diff = int(j > 0 and rng.random() < 0.3)
        objs.append((VOC_CLASSES[k], _box_of(masks[-1]), diff))
    if truncated_corner:  # a truncated object reaching the right and bottom borders
        k = sum(map(ord, name)) % len(VOC_CLASSES)
        draw.rectangle((w - 20, h - 15, w - 1, h - 1), fill=_colour(k))
        m = np.zeros((h, w), np.uint8)
        m[h - 15:, w - 20:] = 1
        masks.append(m)
        objs.append((VOC_CLASSES[k], (w - 20, h - 15, w, h), 0))
    img.save(root / "JPEGImages" / f"{name}.jpg", quality=92)
    if segmented:
        _write_voc_segmentation(root, name, masks, [VOC_CLASSES.index(o[0]) + 1 for o in objs])
    xml = [f"<annotation>\n  <folder>VOC{year}</folder>\n  <filename>{name}.jpg</filename>",
           f"  <source><database>The VOC{year} Database</database></source>",
           f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
           f"  <segmented>{int(segmented)}</segmented>"]
    for cname, (x1, y1, x2, y2), diff in objs:
        trunc = int(x2 == w or y2 == h or x1 == 0 or y1 == 0)
        # VOC: 1-based, inclusive -> xmin = x1 + 1, xmax = x2 (the last covered column)
        xml.append(f"  <object><name>{cname}</name><pose>Unspecified</pose>"
                   f"<truncated>{trunc}</truncated><difficult>{diff}</difficult>"
                   f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                   f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    xml.append("</annotation>\n")
    (root / "Annotations" / f"{name}.xml").write_text("\n".join(xml))
    return objs


def write_vocdevkit(devkit: Path, n_trainval: int = 10, n_test: int = 6, seed: int = 0,
                    size: Size = "small", year: str = "2007", *,
                    n_segmented: tuple[int, int] | None = None) -> dict[str, Any]:
    """Write ``devkit/VOC{year}`` (module docstring for the layouts).

    VOC 2007: ``n_trainval`` / ``n_test`` images in ``Main/{trainval,test}``; VOC 2012:
    ``n_trainval`` / ``n_test`` images in ``Main/{train,val}`` (``Main/trainval`` is both).
    ``n_segmented``: how many of the first / second split's images have segmentation files
    (listed in ``ImageSets/Segmentation``); None = every image (VOC 2007; the end-to-end tests
    evaluate instance masks on it) or a third, at least one (VOC 2012). The segmented images
    are spread over each split by the seeded generator.

    Returns ``{"root", "first": (name, class, xyxy 0-based exclusive, difficult) of the first
    split's first object, "counts": {split: (images, objects, difficult)} for every split
    file written (``"Segmentation/val"`` etc. for the other folders), "segmented": names with
    a SegmentationObject PNG}``. Every image has at least one non-difficult object.
    """
    if year not in ("2007", "2012"):
        raise ValueError(f"VOC year must be '2007' or '2012', got {year!r}")
    root = devkit / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation",
                "SegmentationObject", "SegmentationClass"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = ("trainval", "test") if year == "2007" else ("train", "val")
    sizes = (int(n_trainval), int(n_test))
    if min(sizes) < 1:
        raise ValueError(f"every split needs at least one image, got {sizes}")
    if n_segmented is None:
        n_segmented = sizes if year == "2007" else tuple(max(1, n // 3) for n in sizes)
    out: dict[str, Any] = {"root": root, "counts": {}, "segmented": []}
    per_object: dict[str, list] = {}
    names_of: dict[str, list[str]] = {}
    seg_of: dict[str, list[str]] = {}
    num = 1
    for split, n, n_seg in zip(splits, sizes, n_segmented, strict=True):
        if not 0 <= n_seg <= n:
            raise ValueError(f"n_segmented {n_seg} outside 0..{n} for split {split}")
        seg_idx = set(rng.choice(n, size=n_seg, replace=False).tolist())
        names_of[split], seg_of[split] = [], []
        for i in range(n):
            name = f"{num:06d}" if year == "2007" else f"2008_{num:06d}"
            num += 1
            objs = _voc_image(root, year, name, rng, size, i == 0, i in seg_idx)
            if "first" not in out:
                cname, box, diff = objs[0]
                out["first"] = (name, cname, box, diff)
            per_object[name] = objs
            names_of[split].append(name)
            if i in seg_idx:
                seg_of[split].append(name)
    files: dict[str, list[str]] = {}
    for split in splits:
        files[split] = names_of[split]
        files[f"Segmentation/{split}"] = seg_of[split]
    if year == "2012":
        files["trainval"] = names_of["train"] + names_of["val"]
        files["Segmentation/trainval"] = seg_of["train"] + seg_of["val"]
        seg_val = set(seg_of["val"])
        files["Segmentation/train_aug"] = [n for n in files["trainval"] if n not in seg_val]
    for key, names in files.items():
        folder, _, split = key.rpartition("/")
        if not names:
            continue
        _write_split_file(root / "ImageSets" / (folder or "Main") / f"{split}.txt", names)
        objs = [o for n in names for o in per_object[n]]
        out["counts"][key] = (len(names), len(objs), sum(d for *_, d in objs))
    out["segmented"] = sorted(n for names in seg_of.values() for n in names)
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


def coco_file_name(folder: str, year: int, image_id: int) -> str:
    """COCO's image file name: 2014 ``COCO_{folder}_%012d.jpg`` (folder e.g. ``train2014``),
    2017 ``%012d.jpg``."""
    return f"COCO_{folder}_{image_id:012d}.jpg" if year == 2014 else f"{image_id:012d}.jpg"


def _write_coco_split(js: Path, folder: Path, year: int, n: int, rng: np.random.Generator,
                      size: Size, first_image_id: int, first_ann_id: int, empty_last: bool,
                      kinds: dict[str, int]) -> tuple[int, int]:
    """Write one instances JSON and its image folder; returns the next (image id, ann id)."""
    from pycocotools import mask as mask_utils

    folder.mkdir(parents=True, exist_ok=True)
    js.parent.mkdir(parents=True, exist_ok=True)
    cats = [{"id": c, "name": nm, "supercategory": s} for c, nm, s in COCO_CATEGORIES]
    image_id, ann_id = first_image_id, first_ann_id
    images, anns = [], []
    for i in range(n):
        w, h = _draw_size(rng, size, "coco")
        file_name = coco_file_name(folder.name, year, image_id)
        img = _canvas(rng, w, h)
        draw = ImageDraw.Draw(img)
        empty = empty_last and i == n - 1  # COCO has images without annotations
        for j in range(0 if empty else int(rng.integers(1, 4))):
            cid, _, _ = COCO_CATEGORIES[int(rng.integers(0, len(COCO_CATEGORIES)))]
            poly = _polygon(rng, w, h)
            draw.polygon(poly, fill=_colour(cid))
            mask = _mask_of(poly, w, h)
            x1, y1, x2, y2 = _box_of(mask)
            crowd = int(j > 0 and rng.random() < 0.25)
            if crowd:
                seg = {"size": [h, w], "counts": _uncompressed_rle(mask)}
                kinds["crowd_rle"] += 1
            elif j % 2 == 0:
                seg = [[round(v, 2) for xy in poly for v in xy]]
                kinds["polygon"] += 1
            else:
                rle = mask_utils.encode(np.asfortranarray(mask))
                seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
                kinds["rle"] += 1
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cid,
                         "segmentation": seg, "area": float(mask.sum()),
                         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                         "iscrowd": crowd})
            ann_id += 1
        img.save(folder / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h,
                       "license": 1, "coco_url": "", "date_captured": ""})
        image_id += 7
    js.write_text(json.dumps({
        "info": {"description": "generated tree (weaksam.dryrun.trees)", "year": year},
        "licenses": [], "images": images, "annotations": anns, "categories": cats}))
    return image_id, ann_id


def write_coco(coco: Path, n_train: int = 10, n_val: int = 6, seed: int = 0,
               size: Size = "small", year: int = 2014) -> dict[str, Any]:
    """Write ``coco/annotations/instances_{train,val}{year}.json`` and the image folders
    ``coco/{train,val}{year}``; returns ``{"train": (json, image folder), "val": (...),
    "kinds": {segmentation kind: count}}``. The last validation image has no annotation."""
    return _write_coco_pair(
        {"train": (coco / "annotations" / f"instances_train{year}.json", coco / f"train{year}",
                   n_train),
         "val": (coco / "annotations" / f"instances_val{year}.json", coco / f"val{year}",
                 n_val)}, seed, size, year)


def _write_coco_pair(spec: dict[str, tuple[Path, Path, int]], seed: int, size: Size,
                     year: int) -> dict[str, Any]:
    if year not in (2014, 2017):
        raise ValueError(f"COCO year must be 2014 or 2017, got {year!r}")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"kinds": {"polygon": 0, "rle": 0, "crowd_rle": 0}}
    image_id, ann_id = 9, 1
    for split, (js, folder, n) in spec.items():
        image_id, ann_id = _write_coco_split(js, folder, year, int(n), rng, size, image_id,
                                             ann_id, split == "val", out["kinds"])
        out[split] = (js, folder)
    return out


def _voc_split_key(split: str) -> str:
    """A profile's split spelling -> the key of :func:`write_vocdevkit`'s counts (``val`` ->
    ``val``, ``Segmentation/val`` -> ``Segmentation/val``, ``Main/val`` -> ``val``)."""
    folder, _, name = str(split).rpartition("/")
    return name if folder in ("", "Main") else f"{folder}/{name}"


def _voc12_counts(trainval: str, test: str, n_train: int, n_test: int
                  ) -> tuple[int, int, int, int]:
    """(Main/train, Main/val, segmented train, segmented val) sizes giving the profile's
    training split about ``n_train`` images and its test split ``n_test``, with most of
    Main/val and of train_aug without segmentation (as in VOC 2012)."""
    if test == "Segmentation/val":
        seg_val, n_val = n_test, 2 * n_test + 1
    elif test in ("val", "Segmentation/train", "Segmentation/trainval", "train", "trainval"):
        n_val, seg_val = n_test, max(1, (n_test - 1) // 2)
    else:
        raise ValueError(f"no VOC 2012 test split {test!r} (val, Segmentation/val, ...)")
    if trainval == "Segmentation/train_aug":
        n_tr = max(1, n_train - (n_val - seg_val))
    elif trainval == "trainval":
        n_tr = max(1, n_train - n_val)
    elif trainval in ("train", "Segmentation/train", "Segmentation/trainval"):
        n_tr = n_train
    else:
        raise ValueError(f"no VOC 2012 training split {trainval!r} (trainval, "
                         "Segmentation/train_aug, ...)")
    seg_tr = max(1, (n_tr - 1) // 2)
    if trainval == "Segmentation/train":
        n_tr, seg_tr = 2 * n_train + 1, n_train
    return n_tr, n_val, seg_tr, seg_val


def write_tree(profile_data: dict[str, Any], root: Path, n_train: int, n_test: int,
               size: str = "real", seed: int = 0) -> dict[str, Any]:
    """Write under ``root`` exactly the tree a profile's (resolved) ``data`` section reads.

    ``source: voc``: the VOCdevkit year folder ``voc_root`` (its name ``VOC2007`` or
    ``VOC2012`` gives the year) with the splits ``voc_trainval`` / ``voc_test``; ``source:
    coco``: ``coco_{trainval,test}_json`` and ``coco_{trainval,test}_image_root`` (the year, 2014
    or 2017, from the JSON's name). Relative paths are taken under ``root``. The training
    split gets ``n_train`` images and the test split ``n_test`` (VOC 2012: about, see
    :func:`_voc12_counts`; the other splits of the year are written too, as the real tree
    has them). Returns ``{"source", "paths": {data key: absolute path}, "counts": {"trainval"
    | "test": (images, objects, difficult)} (VOC) | {...: images} (COCO), "segmented": VOC
    names with a SegmentationObject PNG}``.
    """
    d = dict(profile_data)
    src = d.get("source") or ("voc" if d.get("voc_root") else
                              "coco" if d.get("coco_trainval_json") else None)
    root = Path(root)
    if src == "voc":
        voc_root = Path(str(d["voc_root"]))
        m = re.fullmatch(r"VOC(2007|2012)", voc_root.name)
        if m is None:
            raise ValueError(f"data.voc_root must end in VOC2007 or VOC2012, got {voc_root}")
        year = m.group(1)
        trainval, test = (str(d.get("voc_trainval", "trainval")), str(d.get("voc_test", "test")))
        tv_key, te_key = _voc_split_key(trainval), _voc_split_key(test)
        if year == "2007":
            fx = write_vocdevkit(root / voc_root.parent, n_train, n_test, seed, size, year,
                                 n_segmented=(max(1, n_train // 3), max(1, n_test // 3)))
        else:
            n_tr, n_val, seg_tr, seg_val = _voc12_counts(tv_key, te_key, n_train, n_test)
            fx = write_vocdevkit(root / voc_root.parent, n_tr, n_val, seed, size, year,
                                 n_segmented=(seg_tr, seg_val))
        for key in (tv_key, te_key):
            if key not in fx["counts"]:
                raise ValueError(f"VOC {year} has no split {key!r}: {sorted(fx['counts'])}")
        return {"source": "voc", "paths": {"voc_root": fx["root"]},
                "counts": {"trainval": fx["counts"][tv_key], "test": fx["counts"][te_key]},
                "segmented": fx["segmented"]}
    if src == "coco":
        spec: dict[str, tuple[Path, Path, int]] = {}
        years = set()
        for split, coco_split, n in (("trainval", "train", n_train), ("test", "val", n_test)):
            js, img = d.get(f"coco_{split}_json"), d.get(f"coco_{split}_image_root")
            if not js or not img:
                raise ValueError(f"data.coco_{split}_json and _image_root must be set")
            y = re.search(r"(2014|2017)", Path(str(js)).name)
            years.add(int(y.group(1)) if y else 2014)
            spec[coco_split] = (root / str(js), root / str(img), n)
        if len(years) != 1:
            raise ValueError(f"COCO training and test JSONs of different years: {sorted(years)}")
        _write_coco_pair(spec, seed, size, years.pop())
        return {"source": "coco",
                "paths": {f"coco_{s}_{k}": p for s, c in (("trainval", "train"),
                                                          ("test", "val"))
                          for k, p in zip(("json", "image_root"), spec[c][:2], strict=True)},
                "counts": {"trainval": n_train, "test": n_test}, "segmented": []}
    raise ValueError(f"data.source must be voc or coco for a generated tree, got {src!r}")
