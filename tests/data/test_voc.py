"""VOC reader and exporter: a hand-written VOCdevkit tree with known numbers, a round trip,
and every bad-input case naming its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weaksam.data.export import export_voc
from weaksam.data.index import index_from_dict, read_image
from weaksam.data.synthetic import CLASS_NAMES, generate_split
from weaksam.data.voc import VOC_CLASSES, load_voc, parse_voc_xml, split_file, voc_image_id
from weaksam.errors import InputError

XML_A = """<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <size><width>20</width><height>10</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>3</xmin><ymin>2</ymin><xmax>5</xmax><ymax>4</ymax></bndbox></object>
</annotation>
"""
# no <size> (read from the image), no <difficult> (0), VOC 2012 style name
XML_B = """<annotation>
  <filename>2008_000008.jpg</filename>
  <object><name>tvmonitor</name>
    <bndbox><xmin>7</xmin><ymin>4</ymin><xmax>7</xmax><ymax>9</ymax></bndbox></object>
</annotation>
"""


def _voc_tree(root: Path) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "000005.xml").write_text(XML_A)
    (root / "Annotations" / "2008_000008.xml").write_text(XML_B)
    Image.fromarray(np.full((10, 20, 3), 90, np.uint8)).save(root / "JPEGImages" / "000005.jpg")
    Image.fromarray(np.full((12, 8, 3), 30, np.uint8)).save(root / "JPEGImages" /
                                                            "2008_000008.jpg")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000005\n2008_000008\n")
    return root


def test_hand_written_voc(tmp_path):
    idx = load_voc(_voc_tree(tmp_path / "VOC"), "trainval", progress=False)
    assert idx.num_classes == 20 and idx.category_names == list(VOC_CLASSES)
    assert idx.image_ids == [5, 2008000008]
    assert (idx.image(5)["width"], idx.image(5)["height"]) == (20, 10)
    assert (idx.image(2008000008)["width"], idx.image(2008000008)["height"]) == (8, 12)
    boxes, cats, diff = idx.gt_boxes(5)
    # 1-based inclusive [1, 1, 20, 10] covers the whole 20x10 image -> [0, 0, 20, 10]
    # [3, 2, 5, 4] covers columns 2..4, rows 1..3 (0-based) -> [2, 1, 5, 4]
    np.testing.assert_array_equal(boxes, [[0, 0, 20, 10], [2, 1, 5, 4]])
    np.testing.assert_array_equal(cats, [VOC_CLASSES.index("dog") + 1,
                                         VOC_CLASSES.index("person") + 1])
    np.testing.assert_array_equal(diff, [False, True])
    a = idx.anns_of(5)[1]
    assert a["bbox"] == [2.0, 1.0, 3.0, 3.0] and a["area"] == 9.0
    boxes, cats, diff = idx.gt_boxes(2008000008)
    np.testing.assert_array_equal(boxes, [[6, 3, 7, 9]])  # one column wide
    np.testing.assert_array_equal(diff, [False])
    assert idx.labels_of(2008000008) == [20]
    assert read_image(idx.image_path(5)).shape == (10, 20, 3)
    assert idx.image_root == tmp_path / "VOC" / "JPEGImages"


def test_voc_image_id():
    assert voc_image_id("000005") == 5
    assert voc_image_id("2008_000008") == 2008000008
    with pytest.raises(ValueError):
        voc_image_id("abc")


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_export_then_read_round_trip(tmp_path, fmt):
    d = generate_split("trainval", 6, tmp_path / "imgs", str(tmp_path / "imgs"), seed=0,
                       progress=False, image_min=64, image_max=80)
    src = index_from_dict(d, tmp_path / "src.json")
    out = export_voc(src, tmp_path / "VOCexp", "trainval", image_format=fmt, progress=False)
    back = load_voc(out, "trainval", classes=CLASS_NAMES, image_ext=f".{fmt}", progress=False)
    assert back.image_ids == src.image_ids
    assert back.category_names == src.category_names
    for iid in src.image_ids:
        b0, c0, d0 = src.gt_boxes(iid)
        b1, c1, d1 = back.gt_boxes(iid)
        np.testing.assert_array_equal(b0, b1)
        np.testing.assert_array_equal(c0, c1)
        np.testing.assert_array_equal(d0, d1)
        assert back.image(iid)["width"] == src.image(iid)["width"]
        a, b = read_image(src.image_path(iid)), read_image(back.image_path(iid))
        if fmt == "png":
            np.testing.assert_array_equal(a, b)
        else:
            assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 8


def test_missing_annotation_file(tmp_path):
    root = _voc_tree(tmp_path / "VOC")
    (root / "Annotations" / "2008_000008.xml").unlink()
    with pytest.raises(InputError, match=r"2008_000008\.xml.*not found"):
        load_voc(root, "trainval", progress=False)


def test_unknown_class_name(tmp_path):
    root = _voc_tree(tmp_path / "VOC")
    (root / "Annotations" / "000005.xml").write_text(XML_A.replace("<name>dog", "<name>dragon"))
    with pytest.raises(InputError, match=r"000005\.xml.*unknown class name 'dragon'"):
        load_voc(root, "trainval", progress=False)


def test_empty_and_missing_split(tmp_path):
    root = _voc_tree(tmp_path / "VOC")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n\n")
    with pytest.raises(InputError, match=r"test\.txt.*empty split"):
        load_voc(root, "test", progress=False)
    with pytest.raises(InputError, match=r"val\.txt.*not found"):
        load_voc(root, "val", progress=False)


def test_split_in_another_imagesets_folder(tmp_path):
    root = _voc_tree(tmp_path / "VOC")
    (root / "ImageSets" / "Segmentation").mkdir()
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000008\n")
    assert split_file(root, "val") == root / "ImageSets" / "Main" / "val.txt"
    assert split_file(root, "Segmentation/val") == root / "ImageSets/Segmentation/val.txt"
    idx = load_voc(root, "Segmentation/val", progress=False)
    assert idx.image_ids == [2008000008]
    # the bare name looks in Main only, and says where the file is
    with pytest.raises(InputError, match=r"Main/val\.txt.*there is Segmentation/val"):
        load_voc(root, "val", progress=False)
    for bad in ("../val", "a/b/c", "Segmentation/"):
        with pytest.raises(InputError, match="not of the form"):
            load_voc(root, bad, progress=False)


def test_missing_and_corrupt_image(tmp_path):
    root = _voc_tree(tmp_path / "VOC")
    jpg = root / "JPEGImages" / "000005.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[:40])  # corrupt: loads as an index, fails when read
    idx = load_voc(root, "trainval", progress=False)
    with pytest.raises(InputError, match=r"000005\.jpg"):
        read_image(idx.image_path(5))
    jpg.unlink()
    with pytest.raises(InputError, match=r"000005\.jpg.*not found"):
        load_voc(root, "trainval", progress=False)


def test_malformed_xml(tmp_path):
    p = tmp_path / "bad.xml"
    p.write_text("<annotation><object><name>dog</name>")
    with pytest.raises(InputError, match=r"bad\.xml.*not valid XML"):
        parse_voc_xml(p)
    p.write_text(XML_A.replace("<xmax>20</xmax>", "<xmax>oops</xmax>"))
    with pytest.raises(InputError, match=r"bad\.xml.*non-numeric <xmax> 'oops'"):
        parse_voc_xml(p)
    p.write_text(XML_A.replace("<xmin>3</xmin>", "<xmin>9</xmin>"))
    with pytest.raises(InputError, match=r"bad\.xml.*inverted box"):
        parse_voc_xml(p)


@pytest.mark.parametrize("edit, problem", [
    (("<name>dog", "<name>unicorn"), r"unknown class name 'unicorn' \(object 1\)"),
    (("<xmin>3</xmin>", "<xmin>9</xmin>"), r"inverted box of object 2 \('person'\): xmin 9"),
    (("<xmax>20</xmax>", "<xmax>2O</xmax>"), r"non-numeric <xmax> '2O' of object 1 \('dog'\)"),
    (("<ymin>2</ymin>", "<ymin>nan</ymin>"), r"non-finite <ymin> 'nan' of object 2"),
    (("<width>20</width>", "<width>twenty</width>"), r"non-numeric <width> 'twenty' in <size>"),
    (("<difficult>1</difficult>", "<difficult>yes</difficult>"),
     r"non-numeric <difficult> 'yes' of object 2"),
    (("<ymax>4</ymax>", "<ymax></ymax>"), r"missing <ymax> of object 2"),
])
def test_xml_errors_name_file_and_real_problem(tmp_path, edit, problem):
    """Every value error used to read "malformed number (...)", whatever the problem."""
    p = tmp_path / "000006.xml"
    p.write_text(XML_A.replace(*edit))
    with pytest.raises(InputError, match=r"000006\.xml: " + problem) as e:
        parse_voc_xml(p)
    assert "malformed number" not in str(e.value)


def test_box_outside_the_image_is_clipped_and_counted(tmp_path):
    """A bndbox reaching outside its image (xmax 9999 on a 20-pixel-wide image) used to load
    unchanged; now clipped and counted, and one with nothing inside the image refused."""
    root = _voc_tree(tmp_path / "VOC")
    xml = root / "Annotations" / "000005.xml"
    xml.write_text(XML_A.replace("<xmax>20</xmax>", "<xmax>9999</xmax>"))
    idx = load_voc(root, "trainval", progress=False)
    boxes, _, _ = idx.gt_boxes(5)
    np.testing.assert_array_equal(boxes, [[0, 0, 20, 10], [2, 1, 5, 4]])
    assert idx.boxes_clipped == 1
    assert idx.anns_of(5)[0]["area"] == 200
    xml.write_text(XML_A.replace("<xmin>3</xmin><ymin>2</ymin><xmax>5</xmax>",
                                 "<xmin>30</xmin><ymin>2</ymin><xmax>45</xmax>"))
    with pytest.raises(InputError, match=r"000005\.xml: object 2 \('person'\).*xmin 30.*"
                                         r"no area inside the 20 x 10 image"):
        load_voc(root, "trainval", progress=False)
    xml.write_text(XML_A)
    assert load_voc(root, "trainval", progress=False).boxes_clipped == 0
