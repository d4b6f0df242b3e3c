"""The synthetic VOC-like generator: determinism, ranges, masks vs boxes, occlusion rules."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from weaksam.data.index import index_from_dict, read_image
from weaksam.data.synthetic import (
    CLASS_NAMES,
    ID_OFFSET,
    categories,
    encode_rle,
    generate_image,
    generate_split,
)
from weaksam.utils.boxes import masks_to_boxes

KW = dict(image_min=96, image_max=128, min_instances=1, max_instances=5)


def _split(tmp_path, name, seed, n=6, split="trainval"):
    d = generate_split(split, n, tmp_path / name, "imgs", seed=seed, progress=False, **KW)
    return d, tmp_path / name


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    d1, p1 = _split(tmp_path, "a", seed=3)
    d2, p2 = _split(tmp_path, "b", seed=3)
    d3, p3 = _split(tmp_path, "c", seed=4)
    files = sorted(f.name for f in p1.iterdir())
    assert files == [f"{i:06d}.png" for i in range(1, 7)]
    assert all((p1 / f).read_bytes() == (p2 / f).read_bytes() for f in files)
    assert json.dumps(d1, sort_keys=True) == json.dumps(d2, sort_keys=True)
    assert all((p1 / f).read_bytes() != (p3 / f).read_bytes() for f in files)
    assert json.dumps(d1["annotations"]) != json.dumps(d3["annotations"])


def test_image_depends_only_on_seed_split_index(tmp_path):
    d, p = _split(tmp_path, "a", seed=1, n=5)
    alone = generate_image(1, "trainval", 4, **KW)  # the 5th image, generated on its own
    np.testing.assert_array_equal(read_image(p / "000005.png"), alone.image)
    other_split = generate_image(1, "test", 4, **KW)
    assert other_split.image.shape != alone.image.shape or \
        not np.array_equal(other_split.image, alone.image)
    dt, _ = _split(tmp_path, "t", seed=1, n=2, split="test")
    assert [im["id"] for im in dt["images"]] == [ID_OFFSET["test"] + 1, ID_OFFSET["test"] + 2]


def test_counts_ranges_and_every_class(tmp_path):
    n = 30
    d, p = _split(tmp_path, "a", seed=0, n=n)
    idx = index_from_dict(d, tmp_path / "trainval.json", image_root=p)
    assert len(idx) == n and idx.num_classes == len(CLASS_NAMES) == 10
    assert idx.category_names == list(CLASS_NAMES)
    for iid in idx.image_ids:
        rec = idx.image(iid)
        assert 96 <= rec["width"] <= 128 and 96 <= rec["height"] <= 128
        img = read_image(idx.image_path(iid))
        assert img.shape == (rec["height"], rec["width"], 3)
        assert 1 <= len(idx.anns_of(iid)) <= 5
    seen = {c for iid in idx.image_ids for c in idx.labels_of(iid)}
    assert seen == set(range(1, 11))
    counts = [len(idx.anns_of(i)) for i in idx.image_ids]
    assert len(set(counts)) >= 3  # varied counts, not a constant


def test_masks_consistent_with_boxes_and_visibility(tmp_path):
    d, p = _split(tmp_path, "a", seed=2, n=12)
    by_img: dict[int, list] = {}
    for a in d["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    for im in d["images"]:
        anns = by_img[im["id"]]
        masks = np.stack([mask_utils.decode({"size": a["segmentation"]["size"],
                                             "counts": a["segmentation"]["counts"].encode()})
                          for a in anns]).astype(bool)
        assert masks.shape[1:] == (im["height"], im["width"])
        boxes, valid = masks_to_boxes(masks)
        assert valid.all()
        for a, b, m in zip(anns, boxes, masks, strict=True):
            x, y, w, h = a["bbox"]
            np.testing.assert_array_equal([x, y, x + w, y + h], b)  # tight box of visible mask
            assert a["area"] == m.sum() > 0
            assert a["iscrowd"] == 0 and a["difficult"] in (0, 1)
            assert isinstance(a["segmentation"]["counts"], str)
        # visible masks never overlap (occluded pixels belong to the object on top)
        assert masks.sum(0).max() == 1


def test_occlusion_difficult_and_min_visible():
    fr, diff = [], []
    for i in range(60):
        s = generate_image(0, "trainval", i, min_visible=0.2, difficult_visible=0.4, **KW)
        fr.append(s.visible_fraction)
        diff.append(s.difficult)
    fr, diff = np.concatenate(fr), np.concatenate(diff)
    assert (fr >= 0.2 - 0.02).all()  # placements below min_visible were redrawn
    np.testing.assert_array_equal(diff, fr < 0.4)
    assert diff.any() and (~diff).any()  # some instances are partially occluded and difficult
    assert ((fr < 1.0) & (fr > 0.0)).sum() >= 5  # overlaps happen


def test_class_appearance_is_distinct():
    """A fully visible disc is red, a fully visible square blue (class colour, Sec. of module)."""
    means: dict[int, list] = {1: [], 2: []}
    for i in range(80):
        s = generate_image(5, "trainval", i, **KW)
        for m, c, f in zip(s.masks, s.category_ids, s.visible_fraction, strict=True):
            if c in means and f == 1.0:
                means[int(c)].append(s.image[m].mean(0))
    red, blue = np.mean(means[1], 0), np.mean(means[2], 0)
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60
    assert blue[2] > blue[0] + 60 and blue[2] > blue[1] + 60


def test_encode_rle_round_trip_and_categories():
    m = np.zeros((5, 7), bool)
    m[1:3, 2:6] = True
    rle = encode_rle(m)
    assert rle["size"] == [5, 7] and isinstance(rle["counts"], str)
    back = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(back.astype(bool), m)
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == 8
    assert [c["id"] for c in categories()] == list(range(1, 11))


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_image(0, "val", 0)
    with pytest.raises(ValueError):
        generate_image(0, "trainval", 0, min_instances=3, max_instances=2)

