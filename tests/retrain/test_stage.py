"""The retraining stage scripts: an empty PGT file fails before training (the message names
it, no checkpoint or output is written); the figure helpers' binning and error flags."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import retrain, retrain_prelim
from weaksam.errors import InputError
from weaksam.retrain.figures import bin_stats, normalise_per_step, roi_errors

ROOT = Path(__file__).resolve().parents[2]


def _workspace(tmp: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["threads"] = 1
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    data = {"info": {"image_root": "data/images"},
            "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 9, 9],
                             "area": 81, "iscrowd": 0}]}
    (tmp / "data" / "annotations").mkdir(parents=True)
    (tmp / "data" / "annotations" / "trainval.json").write_text(json.dumps(data))
    pgt = dict(data, annotations=[])
    (tmp / "pgt" / "mist_weaksam_adaptive").mkdir(parents=True)
    (tmp / "pgt" / "mist_weaksam_adaptive" / "trainval.json").write_text(json.dumps(pgt))


def test_empty_pgt_fails_before_training_naming_the_file(tmp_path, monkeypatch):
    _workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    for stage, extra in ((retrain_prelim, []), (retrain, ["--variant", "drop"])):
        monkeypatch.setattr(sys, "argv", [stage.__name__, "--detector", "frcnn", "--pgt",
                                          "mist_weaksam_adaptive", *extra])
        with pytest.raises(InputError) as e:
            stage.main()
        assert str(e.value) == ("pgt/mist_weaksam_adaptive/trainval.json: PGT file has no "
                                "annotations: nothing to retrain on")
        assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "retrain").exists()


def test_normalise_per_step_and_bins():
    v = np.array([1.0, 3.0, 2.0, 10.0, 4.0])
    step = np.array([0, 0, 1, 1, 1])
    n = normalise_per_step(v, step, np.ones(5, bool))
    assert n.tolist() == pytest.approx([0.5, 1.5, 2 / 8, 10 / 8, 4 / 8])  # + 1e-8
    s = bin_stats(np.array([0.05, 0.1, 0.55, 1.7]), np.array([True, False, True, True]), 2)
    assert s["count"] == [2, 2] and s["error_rate"] == [50.0, 100.0]
    assert s["edges"] == [0.0, 0.5, 1.0]


def test_roi_errors_use_same_class_ground_truth_at_iou_07():
    pgt_boxes = {1: np.array([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 7]])}
    pgt_labels = {1: np.array([1, 2, 1])}
    gt = {1: (np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), np.array([1, 1]))}
    err = roi_errors(np.array([1, 1, 1, 1]), np.array([0, 1, 2, 0]), pgt_boxes, pgt_labels, gt)
    # box 1 has the wrong class; box 2 has IoU 0.7 (not < 0.7): correct
    assert err.tolist() == [False, True, False, False]
