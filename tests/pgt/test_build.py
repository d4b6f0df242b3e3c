"""COCO detections -> COCO PGT: format, edge cases, malformed detections files."""

from __future__ import annotations

import json

import pytest

from weaksam.data.index import index_from_dict
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.pgt.build import build_pgt, load_detections, parse_detections

GT = {
    "info": {"image_root": "imgs"},
    "images": [{"id": i, "file_name": f"{i:06d}.png", "width": 100, "height": 80, "extra": 1}
               for i in (1, 2, 3)],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 20]},
        {"id": 4, "image_id": 3, "category_id": 1, "bbox": [5, 5, 20, 20]},
    ],
}
DETS = [
    # image 1: class 1 two separate boxes (normalised 1 and 0), class 2 one box,
    # class 3 is not labelled
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
    {"image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.2},
    {"image_id": 1, "category_id": 1, "bbox": [60, 0, 10, 10], "score": 0.7},
    {"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.99},
    {"image_id": 1, "category_id": 2, "bbox": [50.5, 50, 10, 9.5], "score": 0.05},
    # image 2: labels {3}, only a class 1 detection -> no box; image 3: no detection at all
    {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9},
]


def _view():
    index = index_from_dict(GT, "gt.json", image_root="imgs")
    return index, WeakView(index)


def _build(dets, mode):
    index, view = _view()
    per = parse_detections(dets, "dets.json", index.image_ids, index.category_ids)
    return build_pgt(view, index.images, index.categories, "data/images/trainval", per, mode)


def test_adaptive_pgt_coco_format():
    pgt = _build(DETS, "adaptive")
    assert pgt["info"]["image_root"] == "data/images/trainval"
    assert pgt["images"] == [{"id": i, "file_name": f"{i:06d}.png", "width": 100, "height": 80}
                             for i in (1, 2, 3)]
    assert pgt["categories"] == GT["categories"]
    assert pgt["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0,
         "iscrowd": 0, "score": 0.8},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60.0, 0.0, 10.0, 10.0],
         "area": 100.0, "iscrowd": 0, "score": 0.7},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [50.5, 50.0, 10.0, 9.5], "area": 95.0,
         "iscrowd": 0, "score": 0.05},
    ]
    # the output is a valid split index of its own (what a retraining detector loads)
    assert len(index_from_dict(pgt, "pgt.json", image_root="imgs").annotations) == 3


def test_top1_pgt_one_box_per_labelled_class():
    pgt = _build(DETS, "top1")
    assert [(a["image_id"], a["category_id"], a["score"]) for a in pgt["annotations"]] == [
        (1, 1, 0.8), (1, 2, 0.05)]
    assert [a["id"] for a in pgt["annotations"]] == [1, 2]


def test_empty_detections_give_empty_pgt_with_all_images():
    for mode in ("top1", "adaptive"):
        pgt = _build([], mode)
        assert pgt["annotations"] == [] and len(pgt["images"]) == 3


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown PGT mode"):
        _build(DETS, "top2")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "JSON list"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]', "malformed"),
        ('[{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "image_id 9"),
        ('[{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1}]', "category_id 7"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}]', "bad bbox"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]', "bad bbox"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]', "not finite"),
    ],
)
def test_malformed_detections_file_names_the_file(tmp_path, content, problem):
    path = tmp_path / "detections_trainval.json"
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as e:
        load_detections(path, [1, 2], [1, 2])
    assert str(path) in str(e.value)


def test_missing_detections_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_detections(tmp_path / "none.json", [1], [1])


def test_empty_detections_file_is_valid(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([]))
    per = load_detections(path, [1, 2], [1])
    assert set(per) == {1, 2} and len(per[1].scores) == 0
