"""Generated data trees in the real layouts: each profile's tree loads through the readers the
data stage uses, splits and masks as in the real data sets, same bytes each time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from weaksam.data.coco import load_coco
from weaksam.data.voc import load_voc
from weaksam.dryrun.trees import COCO_CATEGORIES, write_coco, write_tree, write_vocdevkit
from weaksam.profiles import resolve_profile

ROOT = Path(__file__).resolve().parents[2]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _profile_data(name: str) -> dict:
    return resolve_profile(name, ROOT / "configs")["data"]


def test_voc2012_layout_and_masks(tmp_path):
    fx = write_vocdevkit(tmp_path / "VOCdevkit", 6, 7, seed=1, year="2012",
                         n_segmented=(2, 3))
    sets = fx["root"] / "ImageSets"
    read = lambda p: (sets / p).read_text().split()  # noqa: E731
    train, val, trainval = read("Main/train.txt"), read("Main/val.txt"), read("Main/trainval.txt")
    assert len(train) == 6 and len(val) == 7 and trainval == train + val
    assert all(n.startswith("2008_") for n in trainval)
    seg_train, seg_val = read("Segmentation/train.txt"), read("Segmentation/val.txt")
    assert set(seg_train) <= set(train) and set(seg_val) <= set(val)
    assert len(seg_train) == 2 and len(seg_val) == 3
    assert read("Segmentation/trainval.txt") == seg_train + seg_val
    aug = read("Segmentation/train_aug.txt")
    assert set(aug) == set(trainval) - set(seg_val)
    png = {p.stem for p in (fx["root"] / "SegmentationObject").glob("*.png")}
    assert png == set(seg_train + seg_val)
    assert sum(n not in png for n in val) > len(val) / 2        # most Main/val: no mask
    assert sum(n not in png for n in aug) > len(aug) / 2        # most train_aug: no mask
    # readers: Segmentation/val has a mask on every object, Main/val only on a few images
    idx = load_voc(fx["root"], "Segmentation/val", progress=False)
    assert len(idx) == 3 and all("segmentation" in a for a in idx.to_json()["annotations"])
    idx = load_voc(fx["root"], "val", progress=False)
    with_mask = {a["image_id"] for a in idx.to_json()["annotations"] if "segmentation" in a}
    assert len(idx) == 7 and len(with_mask) == 3


def test_real_and_small_sizes(tmp_path):
    fx = write_vocdevkit(tmp_path / "a", 4, 4, size="real")
    for p in (fx["root"] / "JPEGImages").glob("*.jpg"):
        w, h = Image.open(p).size
        assert 480 <= max(w, h) <= 500 and 333 <= min(w, h) <= 375
    fx = write_coco(tmp_path / "c", 3, 3, size="real", year=2017)
    for p in fx["train"][1].glob("*.jpg"):
        w, h = Image.open(p).size
        assert 600 <= max(w, h) <= 640 and 427 <= min(w, h) <= 480
    fx = write_vocdevkit(tmp_path / "b", 3, 3, size="small")
    for p in (fx["root"] / "JPEGImages").glob("*.jpg"):
        assert all(96 <= v <= 128 for v in Image.open(p).size)
    with pytest.raises(ValueError, match="size"):
        write_vocdevkit(tmp_path / "d", 1, 1, size="huge")


@pytest.mark.parametrize("year, pattern", [(2014, "COCO_train2014_{:012d}.jpg"),
                                           (2017, "{:012d}.jpg")])
def test_coco_layouts(tmp_path, year, pattern):
    fx = write_coco(tmp_path / "coco", 5, 4, year=year)
    assert fx["train"][0] == tmp_path / "coco" / "annotations" / f"instances_train{year}.json"
    raw = json.loads(fx["train"][0].read_text())
    assert [im["file_name"] for im in raw["images"]] == [pattern.format(im["id"])
                                                         for im in raw["images"]]
    assert {c["id"] for c in raw["categories"]} == {c for c, _, _ in COCO_CATEGORIES}
    val = json.loads(fx["val"][0].read_text())
    annotated = {a["image_id"] for a in val["annotations"]}
    assert any(im["id"] not in annotated for im in val["images"])   # an image without any
    idx = load_coco(*fx["val"])
    assert len(idx) == 4


@pytest.mark.parametrize("profile", ["paper_voc07", "paper_voc12", "paper_voc12_wsis",
                                     "paper_coco", "paper_coco17"])
def test_write_tree_is_what_the_profile_reads(tmp_path, profile):
    data = _profile_data(profile)
    out = write_tree(data, tmp_path / "a", n_train=5, n_test=3, size="small", seed=2)
    for split, n in (("trainval", 5), ("test", 3)):
        if data["source"] == "voc":
            idx = load_voc(tmp_path / "a" / data["voc_root"], data[f"voc_{split}"],
                           progress=False)
        else:
            idx = load_coco(tmp_path / "a" / data[f"coco_{split}_json"],
                            tmp_path / "a" / data[f"coco_{split}_image_root"])
        got = len(idx)
        assert got == (out["counts"][split][0] if data["source"] == "voc" else n)
        if profile == "paper_voc12_wsis" or data["source"] == "coco" or split == "test":
            assert got == n, (profile, split, got)
        if profile == "paper_voc12_wsis" and split == "test":  # every eval image has masks
            assert all("segmentation" in a for a in idx.to_json()["annotations"])
    # seeded: the same bytes again, another seed differs
    write_tree(data, tmp_path / "b", n_train=5, n_test=3, size="small", seed=2)
    write_tree(data, tmp_path / "c", n_train=5, n_test=3, size="small", seed=3)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_write_tree_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="VOC2007 or VOC2012"):
        write_tree({"source": "voc", "voc_root": "VOCdevkit/VOC2010"}, tmp_path, 2, 2)
    with pytest.raises(ValueError, match="synthetic"):
        write_tree({"source": "synthetic"}, tmp_path, 2, 2)
