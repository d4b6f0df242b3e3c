"""The prompts stage on a hand-built clues file: parquet schema, source filter, figure."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from weaksam.clues.store import ImageClues, build_clues, save_clues
from weaksam.errors import InputError


def _workspace(tmp_path, sources):
    (tmp_path / "data/annotations").mkdir(parents=True)
    (tmp_path / "data/images").mkdir(parents=True)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "data/images/1.png")
    coco = {"info": {"image_root": "data/images"},
            "images": [{"id": 1, "file_name": "1.png", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": []}
    (tmp_path / "data/annotations/trainval.json").write_text(json.dumps(coco))
    fine = np.zeros((1, 3, 4), np.float32)
    fine[0, 1, 1] = 1.0
    im = ImageClues(image_id=1, width=40, height=30, classes=np.array([2]),
                    class_scores=np.array([0.8], np.float32), cam_coarse=fine.copy(),
                    cam_fine=fine, cross=np.stack([fine, fine], axis=1))
    for split in ("trainval", "test"):
        save_clues(tmp_path / f"clues/{split}.npz",
                   build_clues([im], (3, 4), [0, 1], [1, 2], np.array([[0.1, 0.8]])))
    params = {"seed": 0, "prompts": {"sources": sources, "grid": 2, "kernel": 9, "tau": 0.9,
                                     "cross_kernel": 9, "cross_tau": 0.9, "cross_clusters": 2,
                                     "cross_points_per_cluster": 0,
                                     "cross_representative": "member", "num_figures": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def _run(monkeypatch, tmp_path):
    from pipeline import prompts

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["prompts"])
    prompts.main()


def test_prompts_stage_writes_contract(tmp_path, monkeypatch):
    _workspace(tmp_path, ["dense", "cam_fine", "cam_coarse", "cross"])
    _run(monkeypatch, tmp_path)
    df = pd.read_parquet(tmp_path / "prompts/trainval.parquet")
    assert list(df.columns) == ["image_id", "x", "y", "source", "class", "score"]
    assert str(df["x"].dtype) == "float32" and str(df["image_id"].dtype) == "int64"
    counts = df["source"].value_counts().to_dict()
    assert counts["dense"] == 4 and counts["cam_fine"] == 1 and counts["cross"] == 1
    assert set(df.loc[df.source == "dense", "class"]) == {-1}
    assert set(df.loc[df.source != "dense", "class"]) == {2}
    fine = df[df.source == "cam_fine"].iloc[0]
    assert 10 <= fine.x <= 20 and 10 <= fine.y <= 20  # token (1, 1) of 10 x 10 px tokens
    assert (tmp_path / "reports/figures/clues_prompts.png").stat().st_size > 0
    m = json.loads((tmp_path / "metrics/prompts.json").read_text())
    assert m["per_image_trainval"]["dense"] == 4


def test_prompts_stage_source_filter_and_bad_source(tmp_path, monkeypatch):
    _workspace(tmp_path, ["dense", "cam_fine"])
    _run(monkeypatch, tmp_path)
    df = pd.read_parquet(tmp_path / "prompts/test.parquet")
    assert set(df["source"]) == {"dense", "cam_fine"}
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["prompts"]["sources"] = ["dense", "sift"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(InputError, match="sift"):
        _run(monkeypatch, tmp_path)
