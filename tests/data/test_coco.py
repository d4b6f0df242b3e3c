"""COCO instances reader: sparse category ids, masks kept, crowds as difficult, bad input."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from weaksam.data.coco import load_coco
from weaksam.data.index import read_image
from weaksam.errors import InputError


def _coco(tmp_path):
    imgs = tmp_path / "train2014"
    imgs.mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(imgs / "COCO_train2014_000000000009.jpg")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(imgs / "COCO_train2014_000000000025.jpg")
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((2, 3), np.uint8),
                                                       ((1, 3), (2, 3)))))
    data = {
        "info": {"description": "tiny"},
        "images": [
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 8, "height": 6},
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 5, "height": 5},
        ],
        "categories": [{"id": 90, "name": "toothbrush", "supercategory": "indoor"},
                       {"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 18, "name": "dog", "supercategory": "animal"}],
        "annotations": [
            {"id": 101, "image_id": 9, "category_id": 18, "bbox": [1.5, 1.0, 4.0, 3.0],
             "area": 10.5, "iscrowd": 0,
             "segmentation": [[1.5, 1.0, 5.5, 1.0, 5.5, 4.0, 1.5, 4.0]]},
            {"id": 102, "image_id": 9, "category_id": 1, "bbox": [2, 1, 3, 2], "area": 6,
             "iscrowd": 1,
             "segmentation": {"size": [6, 8], "counts": crowd["counts"].decode()}},
            {"id": 103, "image_id": 25, "category_id": 90, "bbox": [0, 0, 5, 5], "area": 25,
             "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]},
        ],
    }
    p = tmp_path / "instances_train2014.json"
    p.write_text(json.dumps(data))
    return p, imgs, data


def test_load_coco(tmp_path):
    p, imgs, data = _coco(tmp_path)
    idx = load_coco(p, imgs)
    assert idx.category_ids == [1, 18, 90]  # the data set's own ids, sorted
    assert idx.category_names == ["person", "dog", "toothbrush"]
    assert idx.cat_index == {1: 0, 18: 1, 90: 2}
    assert idx.image_ids == [9, 25]
    boxes, cats, diff = idx.gt_boxes(9)
    np.testing.assert_allclose(boxes, [[1.5, 1.0, 5.5, 4.0], [2, 1, 5, 3]])
    np.testing.assert_array_equal(cats, [18, 1])
    np.testing.assert_array_equal(diff, [False, True])  # the crowd is difficult
    assert idx.labels_of(25) == [90]
    # polygons become compressed RLE (str counts), equal to pycocotools' own conversion
    poly = idx.anns_of(9)[0]["segmentation"]
    ref = mask_utils.merge(mask_utils.frPyObjects(data["annotations"][0]["segmentation"], 6, 8))
    assert isinstance(poly["counts"], str) and poly["size"] == [6, 8]
    np.testing.assert_array_equal(
        mask_utils.decode({"size": poly["size"], "counts": poly["counts"].encode()}),
        mask_utils.decode(ref))
    rle = idx.anns_of(9)[1]["segmentation"]
    m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert m.sum() == 6 and m[1:3, 2:5].all()
    assert read_image(idx.image_path(25)).shape == (5, 5, 3)
    assert idx.to_json()["info"]["image_root"] == str(imgs)


def test_coco_bad_input(tmp_path):
    p, imgs, data = _coco(tmp_path)
    with pytest.raises(InputError, match="nothere.json"):
        load_coco(tmp_path / "nothere.json", imgs)
    with pytest.raises(InputError, match="val2014"):
        load_coco(p, tmp_path / "val2014")
    data["annotations"][2]["category_id"] = 91
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"instances_train2014\.json.*unknown category_id 91"):
        load_coco(p, imgs)
    data["annotations"] = []
    data["images"] = []
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"instances_train2014\.json.*empty split"):
        load_coco(p, imgs)
    p.write_text("[1, 2")
    with pytest.raises(InputError, match=r"instances_train2014\.json.*not valid JSON"):
        load_coco(p, imgs)


def test_bbox_outside_the_image_is_clipped_and_counted(tmp_path):
    """A COCO bbox beyond the image's width / height used to load unchanged; now clipped to
    the image and counted; one with nothing inside the image is refused naming the file."""
    p, imgs, data = _coco(tmp_path)
    data["annotations"][0]["bbox"] = [1.5, 1.0, 40.0, 3.0]     # x2 = 41.5 on an 8-wide image
    data["annotations"][2]["bbox"] = [-2.0, 0.0, 5.0, 9.0]     # left of and below a 5 x 5 image
    p.write_text(json.dumps(data))
    idx = load_coco(p, imgs)
    assert idx.anns_of(9)[0]["bbox"] == [1.5, 1.0, 6.5, 3.0]
    assert idx.anns_of(9)[1]["bbox"] == [2, 1, 3, 2]            # inside: untouched
    assert idx.anns_of(25)[0]["bbox"] == [0.0, 0.0, 3.0, 5.0]
    assert idx.anns_of(9)[0]["area"] == 10.5                    # the mask's area is kept
    assert idx.boxes_clipped == 2
    data["annotations"][1]["bbox"] = [8.0, 2.0, 4.0, 1.0]      # starts at the right border
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"instances_train2014\.json: annotation 102: bbox "
                                         r".* no area inside its 8 x 6 image 9"):
        load_coco(p, imgs)
