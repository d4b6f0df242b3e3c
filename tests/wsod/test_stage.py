"""Stage helpers of pipeline/wsod.py: proposal sources (Table 4 filters), per-image prep, and a
stopped stage resumed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.wsod import load_source, prepare_boxes
from tests.stage_main import run_stage
from weaksam.errors import InputError
from weaksam.proposals.store import ImageProposals, ProposalSet, save_proposals

ROOT = Path(__file__).resolve().parents[2]


def _props() -> ProposalSet:
    ps = ProposalSet(["dense", "cam_fine", "cam_coarse", "cross"])
    ps.images[7] = ImageProposals(
        np.array([[0, 0, 10, 10], [-5, 2, 30, 40], [3, 3, 4, 20], [1, 1, 9, 9], [2, 2, 8, 8]],
                 np.float32),
        np.array([0.5, 0.9, 0.99, 0.5, 0.7], np.float32),
        np.array([0, 1, 2, 3, 0], np.uint8))
    ps.images[8] = ImageProposals.empty()
    return ps


def test_prepare_boxes_clips_filters_and_caps_by_score():
    ps = _props()
    b = prepare_boxes(ps, 7, width=20, height=20, cap=3, min_size=2)
    # box 2 is 1 px wide -> dropped; box 1 clipped to the 20 x 20 image; order by score,
    # ties (0.5, 0.5) in file order; cap 3 keeps the three best
    assert b.tolist() == [[0, 2, 20, 20], [2, 2, 8, 8], [0, 0, 10, 10]]
    assert b.dtype == np.float32
    assert prepare_boxes(ps, 8, 20, 20, 3, 2).shape == (0, 4)
    assert prepare_boxes(ps, 99, 20, 20, 3, 2).shape == (0, 4)  # image absent from the file


def test_load_source_filters_weaksam_by_table4_variant(tmp_path):
    save_proposals(tmp_path / "weaksam" / "trainval.npz", _props())
    dense = load_source("dense", "trainval", tmp_path)
    assert len(dense.images[7]) == 2
    dfc = load_source("dense_fine_coarse", "trainval", tmp_path)
    assert len(dfc.images[7]) == 4
    assert len(load_source("weaksam", "trainval", tmp_path).images[7]) == 5
    with pytest.raises(InputError, match="ss/trainval.npz: proposals file not found"):
        load_source("ss", "trainval", tmp_path)


def test_prepare_boxes_wetectron_reads_as_the_release_mist():
    # pkl_trans.py: uint16 cast (floor); wetectron voc.py: first of identical boxes, clip to
    # [0, W-1] x [0, H-1], drop empty, keep sides x2 - x1 + 1 >= 20
    ps = ProposalSet(["dense"])
    boxes = np.array([[0.7, 0.2, 30.9, 30.5],    # -> [0, 0, 30, 30], kept
                      [0.1, 0.9, 30.2, 30.0],    # same integer box -> duplicate, dropped
                      [5.0, 5.0, 23.5, 40.0],    # w = 23 - 5 + 1 = 19 -> dropped
                      [5.0, 5.0, 24.0, 90.0],    # w 20; y2 clipped to 49 -> kept
                      [10.0, 10.0, 80.0, 30.0]],  # x2 clipped to 39 -> kept
                     np.float32)
    ps.images[3] = ImageProposals(boxes=boxes, scores=np.ones(5, np.float32),
                                  sources=np.zeros(5, np.uint8))
    b = prepare_boxes(ps, 3, width=40, height=50, cap=10, min_size=20, style="wetectron")
    assert b.tolist() == [[0, 0, 30, 30], [5, 5, 24, 49], [10, 10, 39, 30]]
    # plain keeps both near-duplicates and drops the 19-px-wide box (no + 1)
    plain = prepare_boxes(ps, 3, 40, 50, 10, 20)
    assert plain[:, 0].tolist() == pytest.approx([0.7, 0.1, 10.0])
    with pytest.raises(ValueError, match="proposal style"):
        prepare_boxes(ps, 3, 40, 50, 10, 20, style="mmdet")


def test_paper_profile_proposals_per_method_follow_the_release():
    from pathlib import Path

    import yaml

    from weaksam.profiles import deep_merge, resolve_profile
    from weaksam.wsod.recipes import method_setting
    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "params.yaml").read_text())
    assert method_setting(base["wsod"], "mist", "proposal_style") == "plain"
    p = deep_merge(base, resolve_profile("paper_voc07", root / "configs"))
    assert (method_setting(p["wsod"], "mist", "proposal_style"),
            method_setting(p["wsod"], "mist", "min_proposal_size")) == ("wetectron", 20)
    assert (method_setting(p["wsod"], "oicr", "proposal_style"),
            method_setting(p["wsod"], "oicr", "min_proposal_size")) == ("plain", 0)


@pytest.mark.slow
def test_stage_stopped_and_rerun_ends_as_an_unbroken_run(tmp_path, monkeypatch):
    """``wsod --stop-after 0`` then a rerun (resumed after epoch 0 from
    ``checkpoints/wsod_oicr_ss/last.pt``) gives the model, detections and DVCLive files of an
    unbroken run, byte for byte; each epoch is logged once."""
    from pipeline.common import deep_merge, load_params

    params = deep_merge(load_params(ROOT / "params.yaml"),
                        yaml.safe_load((ROOT / "configs/tiny.yaml").read_text()))
    params["data"].update(num_trainval=6, num_test=2)
    params["wsod"]["oicr"]["epochs"] = 3
    params["wsod"]["batch_size"] = 2
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(["pipeline.data"], a, monkeypatch)
    run_stage(["pipeline.backbone_pretrain"], a, monkeypatch)
    rng = np.random.default_rng(0)
    for split in ("trainval", "test"):
        ps = ProposalSet(["ss"])
        for im in json.loads((a / f"data/annotations/{split}.json").read_text())["images"]:
            xy = rng.random((12, 2)) * [im["width"] / 2, im["height"] / 2]
            wh = 8 + rng.random((12, 2)) * [im["width"] / 2, im["height"] / 2]
            ps.images[im["id"]] = ImageProposals(np.hstack([xy, xy + wh]).astype(np.float32),
                                                 rng.random(12).astype(np.float32),
                                                 np.zeros(12, np.uint8))
        save_proposals(a / f"proposals/ss/{split}.npz", ps)
    shutil.copytree(a, b)
    run = ["pipeline.wsod", "--method", "oicr", "--source", "ss"]
    run_stage([*run, "--stop-after", "0"], a, monkeypatch)  # "killed" after epoch 0
    assert (a / "checkpoints/wsod_oicr_ss/last.pt").is_file()
    assert not (a / "wsod/oicr_ss/detections_test.json").exists()
    run_stage(run, a, monkeypatch)  # resumes at epoch 1
    run_stage(run, b, monkeypatch)  # unbroken
    for f in ("wsod/oicr_ss/model.pt", "wsod/oicr_ss/detections_test.json",
              "wsod/oicr_ss/detections_trainval.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    live = sorted(p.relative_to(b) for p in (b / "dvclive/wsod_oicr_ss").rglob("*.*"))
    assert len(live) > 3
    for f in live:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    with open(a / "dvclive/wsod_oicr_ss/plots/metrics/train/loss.tsv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")] == [0, 1, 2]
