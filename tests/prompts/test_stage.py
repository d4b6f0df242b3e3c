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


def test_prompts_stage_output_does_not_depend_on_the_worker_count(tmp_path, monkeypatch):
    """runtime.workers 2 shares the images among two spawned processes (issue 22): the parquet
    files are byte for byte those of one process, 11 images of random clues."""
    rng = np.random.default_rng(0)
    out = {}
    for workers in (1, 2):
        ws = tmp_path / str(workers)
        ws.mkdir()
        _workspace(ws, ["dense", "cam_fine", "cam_coarse", "cross"])
        ims = [ImageClues(image_id=i, width=40, height=30, classes=np.array([1 + i % 2]),
                          class_scores=np.array([0.8], np.float32),
                          cam_coarse=(c := np.random.default_rng(i).random((1, 3, 4),
                                                                          ).astype(np.float32)),
                          cam_fine=c[:, ::-1].copy(),
                          cross=np.stack([c, c * 0.5], axis=1))
               for i in range(1, 12)]
        for split in ("trainval", "test"):
            save_clues(ws / f"clues/{split}.npz",
                       build_clues(ims, (3, 4), [0, 1], [1, 2], rng.random((11, 2))))
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["runtime"] = {"workers": workers}
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        _run(monkeypatch, ws)
        out[workers] = [(ws / f"prompts/{s}.parquet").read_bytes() for s in ("trainval", "test")]
        assert json.loads((ws / "metrics/prompts.json").read_text())["workers"] == workers
    assert out[1] == out[2]
    assert len(pd.read_parquet(tmp_path / "2/prompts/trainval.parquet")["image_id"].unique()) == 11
