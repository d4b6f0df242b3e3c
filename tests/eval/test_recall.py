"""Proposal recall (weaksam/eval/recall.py) and the recall stage (pipeline/recall.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import recall as stage
from tests.eval.conftest import coco_gt
from weaksam.errors import InputError
from weaksam.eval.recall import proposal_recall, recall_key
from weaksam.proposals.store import ImageProposals, ProposalSet, save_proposals


def _props(per_image: dict[int, list[tuple[list[float], int]]], names: list[str]) -> ProposalSet:
    ps = ProposalSet(names)
    for iid, rows in per_image.items():
        if not rows:
            ps.images[iid] = ImageProposals.empty()
            continue
        b = np.array([r[0] for r in rows], np.float32)
        ps.images[iid] = ImageProposals(b, np.linspace(1, 0.5, len(b)).astype(np.float32),
                                        np.array([r[1] for r in rows], np.uint8))
    return ps


GT = coco_gt({
    1: [(1, (0, 0, 10, 10), 0), (1, (20, 20, 30, 30), 1)],  # the difficult box never counts
    2: [(1, (0, 0, 10, 10), 0), (2, (0, 0, 20, 20), 0)],
    3: [(2, (50, 50, 60, 60), 0)],                          # no proposals at all
}, {1: "a", 2: "b"})

PROPS = _props({
    1: [([0, 0, 10, 8], 0), ([20, 20, 30, 30], 0)],  # IoU 0.8 with the normal box
    2: [([0, 0, 10, 10], 1), ([0, 0, 19, 20], 0)],   # 1.0 and 380/400 = 0.95
    3: [],
}, ["dense", "cross"])


def test_recall_by_hand():
    out = proposal_recall(GT, PROPS)
    # 4 non-difficult GT boxes; best IoUs 0.8, 1.0, 0.95, 0.
    assert out["num_images"] == 3 and out["num_gt"] == 4
    assert out["num_per_image"] == pytest.approx(4 / 3)
    assert out["recall@0.5"] == pytest.approx(75.0)
    assert out["recall@0.75"] == pytest.approx(75.0)
    assert out["recall@0.9"] == pytest.approx(50.0)
    # Only the "dense" source: image 2 keeps the 0.95 box, which also covers the small box at
    # IoU 100/380 < 0.5.
    dense = proposal_recall(GT, PROPS.filter_sources(["dense"]), iou_thrs=[0.5, 0.26])
    assert dense["recall@0.5"] == pytest.approx(50.0)
    assert dense["recall@0.26"] == pytest.approx(75.0)
    assert recall_key(0.75) == "recall@0.75" and recall_key(0.5) == "recall@0.5"


def test_missing_image_entry_raises():
    ps = _props({1: [], 2: []}, ["ss"])
    with pytest.raises(InputError, match="no proposals entry"):
        proposal_recall(GT, ps)


def test_recall_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gt = dict(GT, info={"image_root": str(tmp_path)})
    (tmp_path / "data/annotations").mkdir(parents=True)
    (tmp_path / "data/annotations/trainval.json").write_text(json.dumps(gt))
    save_proposals(tmp_path / "proposals/ss/trainval.npz", _props({1: [], 2: [], 3: []}, ["ss"]))
    wsam = _props({1: [([0, 0, 10, 8], 0)], 2: [([0, 0, 10, 10], 1)], 3: []},
                  ["dense", "cam_fine", "cam_coarse", "cross"])
    save_proposals(tmp_path / "proposals/weaksam/trainval.npz", wsam)
    params = {"eval": {"recall_ious": [0.5, 0.75, 0.9]}}
    ss = stage.run(params, "ss")
    assert ss["recall@0.5"] == 0.0 and ss["num_per_image"] == 0.0
    assert json.loads((tmp_path / "metrics/recall_ss.json").read_text()) == ss
    dense = stage.run(params, "dense")
    assert dense["recall@0.5"] == pytest.approx(25.0)  # only image 1's box at IoU 0.8
    stage.run(params, "weaksam")
    full = json.loads((tmp_path / "metrics/recall_weaksam.json").read_text())
    assert full["recall@0.5"] == pytest.approx(50.0)
    assert set(full) >= {"num_images", "num_per_image", "recall@0.5", "recall@0.75",
                         "recall@0.9"}
    (tmp_path / "proposals/ss/trainval.npz").unlink()
    with pytest.raises(InputError, match="proposals/ss/trainval.npz"):
        stage.run(params, "ss")
