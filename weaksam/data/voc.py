"""PASCAL VOC 2007 / 2012 reader (VOCdevkit layout) into the COCO-format :class:`CocoIndex`.

Layout of ``root`` (e.g. ``VOCdevkit/VOC2007``)::

    Annotations/{name}.xml        one per image: size, objects (name, difficult, bndbox)
    JPEGImages/{name}.jpg         the images (``<filename>`` in the XML names the file)
    ImageSets/Main/{split}.txt    image names of the split, one per line
    ImageSets/Segmentation/{split}.txt   the segmented subset's splits (every image listed
                                  has SegmentationObject/{name}.png) and, by convention (the
                                  authors' release, SBD practice), train_aug.txt
    SegmentationObject/{name}.png instance masks of the segmented subset (optional)

A split is named ``name`` (``ImageSets/Main/name.txt``) or ``Folder/name``
(``ImageSets/Folder/name.txt``, e.g. ``Segmentation/val``: VOC 2012's 1449 instance-segmentation
val images, paper Table 2; ``Segmentation/train_aug``: the 10582 SBD-augmented training images).

Coordinates: VOC ``bndbox`` is 1-based and inclusive (``xmin = 1`` is the first column,
``xmax`` the last covered column). The index uses 0-based xyxy with x2/y2 exclusive
(docs/contracts.md), so ``[xmin - 1, ymin - 1, xmax, ymax]``; COCO ``bbox`` is then
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. :mod:`weaksam.data.export` applies
the inverse. Paper Sec. 4.1: VOC 2007 trains on trainval (5011 images) and tests on test
(4952), VOC 2012 trains on trainval; 20 classes; VOC AP ignores ``difficult`` objects.

Image ids: a name of digits (``000005``) becomes that integer; VOC 2012 names
``2008_000008`` drop the underscore (2008000008). Category ids are 1..20 in ``VOC_CLASSES``
order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from tqdm import tqdm

from weaksam.data.index import CocoIndex, clip_bbox, index_from_dict
from weaksam.errors import InputError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def voc_image_id(name: str) -> int:
    """Integer image id of a VOC image name (``000005`` -> 5, ``2008_000008`` -> 2008000008)."""
    digits = name.replace("_", "")
    if not digits.isdigit():
        raise ValueError(f"VOC image name {name!r} is not of the form digits[_digits]")
    return int(digits)


def split_file(root: str | Path, split: str) -> Path:
    """The list file of split ``split``: ``name`` -> ``root/ImageSets/Main/name.txt``,
    ``Folder/name`` -> ``root/ImageSets/Folder/name.txt`` (ValueError on any other form)."""
    parts = str(split).split("/")
    if len(parts) == 1:
        parts = ["Main", *parts]
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise ValueError(f"VOC split {split!r} is not of the form name or Folder/name "
                         "(e.g. val, Segmentation/val)")
    return Path(root) / "ImageSets" / parts[0] / f"{parts[1]}.txt"


def read_split_names(root: str | Path, split: str) -> list[str]:
    """Image names listed in the split file of ``split`` (:func:`split_file`); InputError if
    missing or empty."""
    try:
        path = split_file(root, split)
    except ValueError as e:
        raise InputError(Path(root) / "ImageSets", str(e)) from e
    if not path.is_file():
        other = [f"{d.name}/{split}" for d in sorted((Path(root) / "ImageSets").glob("*"))
                 if "/" not in str(split) and d.name != "Main" and (d / f"{split}.txt").is_file()]
        hint = f" (there is {', '.join(other)}: name the folder)" if other else ""
        raise InputError(path, f"split file of '{split}' not found{hint}")
    names = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise InputError(path, "empty split: no image names")
    return names


def _text(node: ET.Element, tag: str, path: Path, where: str = "") -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise InputError(path, f"missing <{tag}>{where}")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path, where: str = "") -> float:
    """The number in ``node/<tag>``; InputError naming ``path``, the tag and the text when it
    is missing, not a number or not finite."""
    text = _text(node, tag, path, where)
    try:
        value = float(text)
    except ValueError:
        raise InputError(path, f"non-numeric <{tag}> {text!r}{where}") from None
    if not np.isfinite(value):
        raise InputError(path, f"non-finite <{tag}> {text!r}{where}")
    return value


def parse_voc_xml(path: str | Path, classes: tuple[str, ...] = VOC_CLASSES) -> dict[str, Any]:
    """Parse one VOC annotation XML.

    Returns ``{"filename", "width", "height", "objects": [{"name", "category_id" (1-based
    index into ``classes``), "difficult" (0/1), "box": [x1, y1, x2, y2] 0-based exclusive}]}``;
    width/height are 0 when ``<size>`` is absent. InputError naming ``path`` and the problem
    when missing, unparsable, with an unknown class name, a missing or non-numeric size,
    coordinate or ``difficult``, or an inverted box.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(path, f"not valid XML ({e})") from e
    cat_of = {n: i + 1 for i, n in enumerate(classes)}
    size = root.find("size")
    width = height = 0
    if size is not None:
        width_f, height_f = (_number(size, t, path, " in <size>") for t in ("width", "height"))
        width, height = max(0, int(width_f)), max(0, int(height_f))  # 0: read from the image
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj, "name", path, f" of object {k + 1}")
        if name not in cat_of:
            raise InputError(path, f"unknown class name {name!r} (object {k + 1})")
        where = f" of object {k + 1} ({name!r})"
        diff_node = obj.find("difficult")
        difficult = 0
        if diff_node is not None and diff_node.text and diff_node.text.strip():
            difficult = _number(obj, "difficult", path, where)
        bb = obj.find("bndbox")
        if bb is None:
            raise InputError(path, f"no <bndbox>{where}")
        xmin, ymin, xmax, ymax = (_number(bb, t, path, where)
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise InputError(path, f"inverted box{where}: xmin {xmin:g}, ymin {ymin:g}, "
                                   f"xmax {xmax:g}, ymax {ymax:g} (max below min)")
        objects.append({"name": name, "category_id": cat_of[name],
                        "difficult": 1 if difficult else 0,
                        "box": [xmin - 1.0, ymin - 1.0, xmax, ymax]})
    fn = root.find("filename")
    filename = fn.text.strip() if fn is not None and fn.text else ""
    return {"filename": filename, "width": width, "height": height, "objects": objects}


def read_object_masks(path: Path, num_objects: int, size: tuple[int, int]
                      ) -> list[dict[str, Any]] | None:
    """Instance masks of one image from VOC's ``SegmentationObject/{name}.png`` (palette
    index k + 1 = the k-th object of the XML, 0 background, 255 void border: in no mask) as
    compressed RLE (``counts`` a str); None when the image has no such file (VOC segments
    only a subset). InputError on a size mismatch or an index beyond the XML's objects."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(path, f"corrupt or unreadable segmentation ({e})") from e
    if arr.shape[:2] != size:
        raise InputError(path, f"segmentation is {arr.shape[1]}x{arr.shape[0]}, image "
                               f"{size[1]}x{size[0]}")
    labels = set(np.unique(arr).tolist()) - {0, 255}
    if labels and max(labels) > num_objects:
        raise InputError(path, f"object index {max(labels)} but the XML has {num_objects}")
    out = []
    for k in range(num_objects):
        rle = mask_utils.encode(np.asfortranarray((arr == k + 1).astype(np.uint8)))
        out.append({"size": [int(v) for v in rle["size"]],
                    "counts": rle["counts"].decode("ascii")})
    return out


def load_voc(
    root: str | Path,
    split: str,
    *,
    classes: tuple[str, ...] = VOC_CLASSES,
    image_ext: str = ".jpg",
    progress: bool = True,
) -> CocoIndex:
    """Read split ``split`` of a VOC folder into a :class:`CocoIndex` (no masks).

    ``info.image_root`` is ``root/JPEGImages`` (images are not copied). The image file is the
    XML's ``<filename>``, else ``{name}{image_ext}``; a missing image file, or a missing
    ``<size>`` (then read from the image header), is checked here; corrupt pixels are caught
    by :func:`weaksam.data.index.read_image` when read.

    A box reaching outside its image is clipped to it (counted in ``CocoIndex.boxes_clipped``);
    one with nothing inside the image is refused (InputError naming its XML).
    """
    root = Path(root)
    names = read_split_names(root, split)
    img_dir = root / "JPEGImages"
    images, anns = [], []
    n_clipped = 0
    for name in tqdm(names, desc=f"VOC {split}", disable=None if progress else True):
        xml_path = root / "Annotations" / f"{name}.xml"
        rec = parse_voc_xml(xml_path, classes)
        file_name = rec["filename"] or f"{name}{image_ext}"
        img_path = img_dir / file_name
        if not img_path.is_file():
            alt = img_dir / f"{name}{image_ext}"
            if not alt.is_file():
                raise InputError(img_path, f"image of {xml_path.name} not found")
            file_name, img_path = alt.name, alt
        w, h = rec["width"], rec["height"]
        if w <= 0 or h <= 0:
            try:
                with Image.open(img_path) as im:
                    w, h = im.size
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(img_path, f"corrupt or unreadable image ({e})") from e
        try:
            image_id = voc_image_id(name)
        except ValueError as e:
            raise InputError(split_file(root, split), str(e)) from e
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h,
                       "voc_name": name})
        masks = read_object_masks(root / "SegmentationObject" / f"{name}.png",
                                  len(rec["objects"]), (h, w))
        for k, o in enumerate(rec["objects"]):
            x1, y1, x2, y2 = o["box"]
            clipped = clip_bbox([x1, y1, x2 - x1, y2 - y1], w, h)
            if clipped is None:
                raise InputError(xml_path, f"object {k + 1} ({o['name']!r}): box xmin "
                                           f"{x1 + 1:g}, ymin {y1 + 1:g}, xmax {x2:g}, ymax "
                                           f"{y2:g} has no area inside the {w} x {h} image")
            bbox, changed = clipped
            n_clipped += int(changed)
            seg = {} if masks is None else {"segmentation": masks[k]}
            anns.append({
                **seg,
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": o["category_id"],
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
                "difficult": o["difficult"],
            })
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(classes)]
    data = {"info": {"image_root": str(img_dir), "source": f"VOC {root} {split}"},
            "images": images, "categories": cats, "annotations": anns}
    idx = index_from_dict(data, split_file(root, split), image_root=img_dir)
    idx.boxes_clipped = n_clipped
    return idx
