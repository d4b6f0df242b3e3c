"""Stages ``pgt`` and ``pgt_figure`` on a hand-built split: outputs, metrics, same bytes on a
rerun, a malformed detections file named in the error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline import pgt as pgt_stage
from pipeline import pgt_figure
from weaksam.errors import InputError

PARAMS = {"pgt": {"tau_s": 0.3, "tau_o": 0.85, "match_iou": 0.5, "figure_run": "mist_x",
                  "figure_images": 2}}


def _workspace(root, dets):
    (root / "data/annotations").mkdir(parents=True)
    (root / "data/images/trainval").mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(np.full((40, 50, 3), 90 * i, np.uint8)).save(
            root / f"data/images/trainval/{i:06d}.png")
    gt = {
        "info": {"image_root": "data/images/trainval"},
        "images": [{"id": i, "file_name": f"{i:06d}.png", "width": 50, "height": 40}
                   for i in (1, 2)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 0, "difficult": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "area": 100,
             "iscrowd": 0, "difficult": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400,
             "iscrowd": 0, "difficult": 0},
        ],
    }
    (root / "data/annotations/trainval.json").write_text(json.dumps(gt))
    (root / "wsod/mist_x").mkdir(parents=True)
    (root / "wsod/mist_x/detections_trainval.json").write_text(json.dumps(dets))


DETS = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 11], "score": 0.6},
    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},   # not labelled
    {"image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3], "score": 0.1},   # normalised 0
]


def test_pgt_stage_outputs_metrics_and_same_bytes(tmp_path, monkeypatch):
    _workspace(tmp_path, DETS)
    monkeypatch.chdir(tmp_path)
    m = pgt_stage.run(PARAMS, "mist_x", "adaptive")
    out = tmp_path / "pgt/mist_x_adaptive/trainval.json"
    pgt = json.loads(out.read_text())
    assert pgt["info"]["image_root"] == "data/images/trainval"
    assert [a["bbox"] for a in pgt["annotations"]] == [[0, 0, 10, 10], [20, 20, 10, 11]]
    assert (m["precision"], m["recall"], m["num_boxes"]) == (100.0, 200 / 3, 2)
    assert m["labelled_classes_without_box"] == 1  # image 2, class b: no detection
    assert (m["mode"], m["tau_s"], m["tau_o"]) == ("adaptive", 0.3, 0.85)
    saved = json.loads((tmp_path / "metrics/pgt_mist_x_adaptive.json").read_text())
    assert saved["recall"] == pytest.approx(200 / 3)
    first = out.read_bytes()
    pgt_stage.run(PARAMS, "mist_x", "adaptive")
    assert out.read_bytes() == first
    m1 = pgt_stage.run(PARAMS, "mist_x", "top1")
    assert (m1["num_boxes"], m1["recall"]) == (1, 100 / 3)

    ids = pgt_figure.run(PARAMS, out=tmp_path / "fig.png")
    assert ids == [1, 2]  # image 1: 1 top-1 box vs 2 adaptive; then the first remaining
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_pgt_stage_empty_detections_write_empty_pgt(tmp_path, monkeypatch):
    _workspace(tmp_path, [])
    monkeypatch.chdir(tmp_path)
    m = pgt_stage.run(PARAMS, "mist_x", "adaptive")
    assert json.loads((tmp_path / "pgt/mist_x_adaptive/trainval.json").read_text())[
        "annotations"] == []
    assert m["num_boxes"] == 0 and m["labelled_classes_without_box"] == 2


def test_pgt_stage_malformed_detections_name_the_file(tmp_path, monkeypatch):
    _workspace(tmp_path, [])
    (tmp_path / "wsod/mist_x/detections_trainval.json").write_text('[{"image_id": 1}]')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="wsod/mist_x/detections_trainval.json"):
        pgt_stage.run(PARAMS, "mist_x", "adaptive")
    assert not (tmp_path / "pgt/mist_x_adaptive").exists()
