"""Figures 4, 6, 8 (weaksam/report/figures.py and the figures stage): cosine similarity of
RoI features by hand, deterministic PNG bytes, and the stage on a hand-built workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from weaksam.proposals.store import ImageProposals, ProposalSet, save_proposals
from weaksam.report.figures import (
    cosine_matrix,
    mean_off_diagonal,
    plot_detections,
    plot_proposals,
    plot_similarity,
    roi_features,
    sample,
)
from weaksam.vision.backbones import SmallCNN


def test_cosine_matrix_by_hand():
    f = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    sim = cosine_matrix(f)
    np.testing.assert_allclose(sim, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    # off-diagonal of the first three: pairs (0,1)=1, (0,2)=0, (1,2)=0, twice each -> 2/6
    assert mean_off_diagonal(sim[:3, :3]) == pytest.approx(2 / 6)
    assert mean_off_diagonal(sim[:1, :1]) is None


def test_sample_is_seeded_sorted_and_capped():
    a, b = sample(500, 200, 3), sample(500, 200, 3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 200 and len(set(a.tolist())) == 200 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(sample(5, 200, 0), np.arange(5))
    assert len(sample(0, 10, 0)) == 0


class _Identity(nn.Module):
    """A 'backbone' whose features are the normalised image (stride 1, 3 channels)."""

    stride = 1
    out_channels = 3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_roi_features_shape_and_known_similarity():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)   # left half red, right half blue
    img[:, 20:] = (0, 0, 255)
    boxes = np.array([[0, 0, 20, 40], [2, 2, 18, 38], [20, 0, 40, 40]], np.float32)
    f = roi_features(_Identity(), img, boxes, short_side=40, max_size=100, roi_size=2,
                     roi_sampling=2)
    assert f.shape == (3, 3 * 2 * 2)
    sim = cosine_matrix(f)
    assert sim[0, 1] == pytest.approx(1.0, abs=1e-6)  # two boxes inside the same flat region
    assert sim[0, 2] < 0.5                            # red against blue (normalised pixels)
    pool = roi_features(_Identity(), img, boxes, short_side=40, max_size=100,
                        roi_op="roi_pool", roi_size=2)
    assert pool.shape == (3, 12)
    with pytest.raises(ValueError, match="roi_op"):
        roi_features(_Identity(), img, boxes, short_side=40, max_size=100, roi_op="bad")


def test_plots_are_byte_identical(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    boxes = np.array([[1, 2, 20, 25], [5, 5, 39, 29]], np.float32)
    for k in (1, 2):
        plot_similarity({"SS": np.eye(3), "WeakSAM": np.ones((2, 2))}, tmp_path / f"s{k}.png",
                        "t")
        plot_proposals([("image 1", img, {"SS": boxes, "WeakSAM": boxes[:1]})],
                       tmp_path / f"p{k}.png", "t")
        plot_detections([("image 1", img, boxes, ["a 0.90", "b 0.40"])], tmp_path / f"d{k}.png",
                        "t")
    for stem in "spd":
        a, b = (tmp_path / f"{stem}1.png").read_bytes(), (tmp_path / f"{stem}2.png").read_bytes()
        assert a[:8] == b"\x89PNG\r\n\x1a\n" and a == b


# ---- the figures stage on a hand-built workspace ----

def _workspace(root: Path) -> dict:
    (root / "data/annotations").mkdir(parents=True)
    (root / "data/images/test").mkdir(parents=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for iid in (1, 2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            root / f"data/images/test/{iid:06d}.png")
        images.append({"id": iid, "file_name": f"{iid:06d}.png", "width": 64, "height": 48})
        anns.append({"id": iid, "image_id": iid, "category_id": 1, "bbox": [4, 4, 20, 20],
                     "area": 400, "iscrowd": 0, "difficult": 0})
    (root / "data/annotations/test.json").write_text(json.dumps({
        "info": {"image_root": "data/images/test"}, "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "star"}]}))
    for key, n in (("ss", 30), ("weaksam", 6)):
        ps = ProposalSet([key])
        for iid in (1, 2):
            xy = rng.uniform(0, 30, (n, 2))
            wh = rng.uniform(5, 30, (n, 2))
            b = np.concatenate([xy, np.minimum(xy + wh, [64, 48])], 1).astype(np.float32)
            ps.images[iid] = ImageProposals(b, np.ones(n, np.float32), np.zeros(n, np.uint8))
        save_proposals(root / f"proposals/{key}/test.npz", ps)
    (root / "wsod/mist_weaksam").mkdir(parents=True)
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16), stem=8, convs=1)
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    state["mil_cls.weight"] = torch.zeros(2, 4)
    torch.save({"model": state, "epoch": 1}, root / "wsod/mist_weaksam/model.pt")
    dets = [{"image_id": 1, "category_id": 2, "bbox": [4, 4, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.1},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 20], "score": 0.5}]
    (root / "wsod/mist_weaksam/detections_test.json").write_text(json.dumps(dets))
    return {
        "seed": 0,
        "figures": {"split": "test", "run": "mist_weaksam", "image_index": 1,
                    "num_samples": 20, "num_images": 2, "score_thresh": 0.3},
        "backbone_pretrain": {"widths": [8, 16], "stem": 8, "convs": 1},
        "wsod": {"backbone": "small_cnn", "roi_op": "roi_align", "roi_size": 4,
                 "roi_sampling": 1, "test_scales": [48], "max_size": 100},
    }


def test_figures_stage(tmp_path, monkeypatch):
    from pipeline import figures as stage

    params = _workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    m = stage.run(params)
    assert m["fig4"]["image_id"] == 2  # image_index 1 of the images with both sets
    assert (m["fig4"]["ss"]["num_proposals"], m["fig4"]["ss"]["sampled"]) == (30, 20)
    assert (m["fig4"]["weaksam"]["num_proposals"], m["fig4"]["weaksam"]["sampled"]) == (6, 6)
    for k in ("ss", "weaksam"):
        assert -1.0 <= m["fig4"][k]["mean_cosine"] <= 1.0
    assert m["fig8"] == {"run": "mist_weaksam", "images": 2, "detections": 2,
                         "score_thresh": 0.3}
    assert json.loads(Path("metrics/figures.json").read_text()) == m
    first = {p: (tmp_path / "reports/figures" / p).read_bytes()
             for p in ("fig4_roi_similarity.png", "fig6_proposals.png", "fig8_detections.png")}
    stage.run(params)  # same inputs, same bytes
    for p, data in first.items():
        assert (tmp_path / "reports/figures" / p).read_bytes() == data

    params["backbone_pretrain"]["widths"] = [8, 32]
    with pytest.raises(Exception, match="model.pt: backbone weights do not match"):
        stage.run(params)
