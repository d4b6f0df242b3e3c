"""Oracle training sets (issue 24 item 3): ground truth, PGT true positives only, PGT + missed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weaksam.pgt.metrics import pgt_quality
from weaksam.pgt.oracle import match_pgt, oracle_pgt

GT = {
    "info": {"image_root": "data/images/trainval"},
    "images": [{"id": 1, "file_name": "1.png", "width": 64, "height": 64},
               {"id": 2, "file_name": "2.png", "width": 64, "height": 64},
               {"id": 3, "file_name": "3.png", "width": 64, "height": 64}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10]},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [40, 40, 10, 10], "difficult": 1},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10]},
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]},
    ],
}


def _ann(i, img, cat, bbox, score):
    return {"id": i, "image_id": img, "category_id": cat, "bbox": bbox, "area": 100.0,
            "iscrowd": 0, "score": score}


PGT = {"info": {"image_root": "data/images/trainval"}, "images": GT["images"],
       "categories": GT["categories"], "annotations": [
           # image 1, class 1: the higher-scoring second box takes GT 1 (TP), the first is a
           # duplicate on GT 1 (FP); GT 2 is missed
           _ann(1, 1, 1, [1, 0, 10, 10], 0.5),
           _ann(2, 1, 1, [0, 0, 10, 10], 0.9),
           # image 1, class 2: on the difficult box -> ignored (neither TP nor FP)
           _ann(3, 1, 2, [40, 40, 10, 10], 0.7),
           # image 2, class 2: IoU 25/175 -> FP, GT 4 missed; image 3: GT 5 missed
           _ann(4, 2, 2, [5, 5, 10, 10], 0.6),
           # image 3, class 2: a class not in the image -> FP
           _ann(5, 3, 2, [0, 0, 10, 10], 0.8),
       ]}


def _boxes(data):
    return [(a["image_id"], a["category_id"], a["bbox"]) for a in data["annotations"]]


def test_match_pgt_known_answer():
    status, covered = match_pgt(PGT, GT, 0.5)
    assert status == {1: 0, 2: 1, 3: -1, 4: 0, 5: 0}
    assert covered[1].tolist() == [True, False, True]  # GT 1 (TP), GT 3 (ignored match)
    assert covered[2].tolist() == [False] and covered[3].tolist() == [False]
    # the same counts as the PGT quality metrics
    m = pgt_quality(PGT, GT)
    assert (m["num_tp"], m["num_fp"], m["num_ignored"]) == (1, 3, 1)


def test_oracle_tp_keeps_only_true_positives():
    out = oracle_pgt(PGT, GT, "tp")
    assert _boxes(out) == [(1, 1, [0.0, 0.0, 10.0, 10.0])]
    assert out["annotations"][0]["score"] == 0.9 and "oracle" not in out["annotations"][0]
    assert [a["id"] for a in out["annotations"]] == [1]


def test_oracle_missed_adds_the_unmatched_ground_truth():
    out = oracle_pgt(PGT, GT, "missed")
    assert _boxes(out) == [
        (1, 1, [1.0, 0.0, 10.0, 10.0]), (1, 1, [0.0, 0.0, 10.0, 10.0]),
        (1, 2, [40.0, 40.0, 10.0, 10.0]),
        (1, 1, [20.0, 0.0, 10.0, 10.0]),          # GT 2, missed
        (2, 2, [5.0, 5.0, 10.0, 10.0]), (2, 2, [0.0, 0.0, 10.0, 10.0]),  # GT 4
        (3, 2, [0.0, 0.0, 10.0, 10.0]), (3, 1, [0.0, 0.0, 10.0, 10.0]),  # GT 5
    ]
    assert [a["id"] for a in out["annotations"]] == list(range(1, 9))
    added = [a for a in out["annotations"] if a.get("oracle") == "gt"]
    assert len(added) == 3 and all(a["score"] == 1.0 for a in added)
    # full recall: every non-difficult object is now matched
    assert pgt_quality(out, GT)["recall"] == pytest.approx(100.0)


def test_oracle_gt_is_every_ground_truth_box_in_pgt_format():
    crowd = dict(GT, annotations=[*GT["annotations"],
                                  {"id": 6, "image_id": 2, "category_id": 1,
                                   "bbox": [30, 30, 9, 9], "iscrowd": 1}])
    out = oracle_pgt(PGT, crowd, "gt")
    assert _boxes(out) == [(a["image_id"], a["category_id"], [float(v) for v in a["bbox"]])
                           for a in GT["annotations"]]  # difficult kept, crowd left out
    assert out["images"] == GT["images"] and out["categories"] == GT["categories"]
    assert out["info"]["image_root"] == "data/images/trainval"
    a = out["annotations"][0]
    assert set(a) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "score",
                      "oracle"} and a["area"] == 100.0


def test_oracle_sets_load_as_pgt(tmp_path: Path):
    """The retraining stages read the oracle sets with their PGT loader."""
    from weaksam.retrain.data import load_pgt

    for kind in ("gt", "tp", "missed"):
        p = tmp_path / f"{kind}.json"
        p.write_text(json.dumps(oracle_pgt(PGT, GT, kind)))
        t = load_pgt(p, [1, 2])
        assert t.num_boxes == {"gt": 5, "tp": 1, "missed": 8}[kind]


def test_unknown_kind_and_foreign_image():
    with pytest.raises(ValueError, match="unknown oracle kind"):
        oracle_pgt(PGT, GT, "all")
    bad = dict(PGT, annotations=[_ann(1, 9, 1, [0, 0, 1, 1], 1.0)])
    with pytest.raises(ValueError, match="image 9"):
        match_pgt(bad, GT)
