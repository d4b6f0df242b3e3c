"""Export a :class:`CocoIndex` as a VOCdevkit tree (the inverse of :mod:`weaksam.data.voc`).

Writes ``Annotations/{name}.xml``, ``JPEGImages/{name}.{jpg|png}`` and appends the split's
names to ``ImageSets/Main/{split}.txt``; ``name`` is the image id zero-padded to 6 digits.
Boxes go from 0-based exclusive xyxy to VOC's 1-based inclusive integers:
``xmin = round(x1) + 1, ymin = round(y1) + 1, xmax = round(x2), ymax = round(y2)``.
Masks are not exported (VOC detection annotations carry none).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from weaksam.data.index import CocoIndex, read_image


def _sub(parent: ET.Element, tag: str, text: str | int) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


def voc_xml(index: CocoIndex, image_id: int, file_name: str) -> ET.ElementTree:
    """The VOC annotation XML of one image of ``index``."""
    rec = index.image(image_id)
    ann = ET.Element("annotation")
    _sub(ann, "folder", "VOC")
    _sub(ann, "filename", file_name)
    size = ET.SubElement(ann, "size")
    _sub(size, "width", int(rec["width"]))
    _sub(size, "height", int(rec["height"]))
    _sub(size, "depth", 3)
    _sub(ann, "segmented", 0)
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    boxes, cats, diff = index.gt_boxes(image_id)
    for b, c, d in zip(boxes, cats, diff, strict=True):
        obj = ET.SubElement(ann, "object")
        _sub(obj, "name", names[int(c)])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", int(d))
        bb = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (round(float(v)) for v in b)
        _sub(bb, "xmin", x1 + 1)
        _sub(bb, "ymin", y1 + 1)
        _sub(bb, "xmax", x2)
        _sub(bb, "ymax", y2)
    ET.indent(ann)
    return ET.ElementTree(ann)


def export_voc(
    index: CocoIndex,
    out_root: str | Path,
    split: str,
    *,
    image_format: str = "jpg",
    jpeg_quality: int = 95,
    progress: bool = True,
) -> Path:
    """Write ``index`` into the VOC folder ``out_root`` as split ``split``; returns ``out_root``.

    ``image_format``: ``jpg`` or ``png`` (lossless). Images are read through
    :func:`read_image`, so a corrupt source image raises InputError naming it.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', not {image_format!r}")
    out_root = Path(out_root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out_root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    bar = tqdm(index.image_ids, desc=f"export VOC {split}", disable=None if progress else True)
    for iid in bar:
        name = f"{iid:06d}"
        file_name = f"{name}.{image_format}"
        rgb = read_image(index.image_path(iid))
        im = Image.fromarray(rgb)
        if image_format == "jpg":
            im.save(out_root / "JPEGImages" / file_name, quality=jpeg_quality)
        else:
            im.save(out_root / "JPEGImages" / file_name)
        voc_xml(index, iid, file_name).write(out_root / "Annotations" / f"{name}.xml",
                                             encoding="utf-8")
        names.append(name)
    with open(out_root / "ImageSets" / "Main" / f"{split}.txt", "a") as f:
        f.writelines(n + "\n" for n in names)
    return out_root
