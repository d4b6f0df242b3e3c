"""Selective Search baseline (weaksam/proposals/selective_search.py) and its stage
(pipeline/proposals_ss.py): box format, filtering, rank scores, determinism, empty images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import proposals_ss as stage
from weaksam.errors import InputError
from weaksam.proposals.selective_search import selective_search
from weaksam.proposals.store import load_proposals
from weaksam.utils.boxes import box_iou


def _scene(seed: int = 0, h: int = 96, w: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Grey noisy background with a red and a blue rectangle; returns (image, (2, 4) xyxy)."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(128, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    objs = np.array([[10, 12, 40, 50], [60, 30, 100, 80]])
    img[12:50, 10:40] = (220, 30, 30)
    img[30:80, 60:100] = (30, 40, 210)
    return img, objs


def test_boxes_scores_and_recall_of_obvious_objects():
    img, objs = _scene()
    p = selective_search(img, max_per_image=2001, min_size=4)
    n = len(p)
    assert n > 5 and p.boxes.dtype == np.float32 and p.boxes.shape == (n, 4)
    b = p.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= 112).all() and (b[:, 3] <= 96).all()
    assert ((b[:, 2] - b[:, 0]) >= 4).all() and ((b[:, 3] - b[:, 1]) >= 4).all()
    assert len(np.unique(b, axis=0)) == n  # no duplicates
    # Rank scores: (n - i) / n, first 1, strictly decreasing, all in (0, 1].
    np.testing.assert_allclose(p.scores, (n - np.arange(n)) / n, rtol=1e-6)
    assert (p.sources == 0).all()
    # Two flat-coloured rectangles are found exactly (x2, y2 exclusive).
    assert (box_iou(objs, b).max(axis=1) > 0.99).all()


def test_deterministic_and_capped():
    img, _ = _scene(1)
    a = selective_search(img, seed=3)
    b = selective_search(img, seed=3)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    capped = selective_search(img, seed=3, max_per_image=5)
    assert len(capped) == 5
    np.testing.assert_array_equal(capped.boxes, a.boxes[:5])  # the first 5 in rank order
    np.testing.assert_allclose(capped.scores, [1, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    big = selective_search(img, seed=3, min_size=30)
    w, h = big.boxes[:, 2] - big.boxes[:, 0], big.boxes[:, 3] - big.boxes[:, 1]
    assert ((w >= 30) & (h >= 30)).all() and len(big) < len(a)
    # Same set of boxes in any seed (only the ranking is random).
    other = selective_search(img, seed=4)
    assert {tuple(r) for r in other.boxes.tolist()} == {tuple(r) for r in a.boxes.tolist()}


def test_modes_and_bad_input():
    img, _ = _scene(2, 48, 48)
    assert len(selective_search(img, mode="quality")) >= 1
    assert len(selective_search(img, mode="single")) >= 1
    with pytest.raises(ValueError, match="mode"):
        selective_search(img, mode="slow")
    with pytest.raises(ValueError, match="uint8"):
        selective_search(img.astype(np.float32))
    empty = selective_search(img, min_size=1000)  # nothing survives: empty, not a crash
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def _workspace(root: Path, n: dict[str, int]) -> None:
    for split, count in n.items():
        images, anns = [], []
        (root / "data/images" / split).mkdir(parents=True)
        for k in range(count):
            iid = 100 * (split == "test") + k + 1
            img, objs = _scene(iid, 64, 72)
            Image.fromarray(img).save(root / "data/images" / split / f"{iid:06d}.png")
            images.append({"id": iid, "file_name": f"{iid:06d}.png", "width": 72, "height": 64})
            for j, (x1, y1, x2, y2) in enumerate(objs.tolist()):
                anns.append({"id": 10 * iid + j, "image_id": iid, "category_id": 1 + j,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": 1, "iscrowd": 0,
                             "difficult": 0})
        data = {"info": {"image_root": f"data/images/{split}"}, "images": images,
                "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
                "annotations": anns}
        (root / "data/annotations").mkdir(parents=True, exist_ok=True)
        (root / "data/annotations" / f"{split}.json").write_text(json.dumps(data))


PARAMS = {"seed": 0, "runtime": {"workers": 2},
          "proposals_ss": {"mode": "fast", "max_per_image": 50, "min_size": 4}}


@pytest.mark.slow
def test_stage_outputs_and_worker_independence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path, {"trainval": 4, "test": 2})
    m = stage.run(PARAMS)
    assert m["num_images"] == 6 and m["workers"] == 2
    assert m["total_seconds"] > 0
    assert m["seconds_per_image"] == pytest.approx(m["total_seconds"] / 6)
    saved = json.loads((tmp_path / "metrics/proposals_time_ss.json").read_text())
    assert set(saved) >= {"seconds_per_image", "total_seconds", "num_images"}
    tv = load_proposals("proposals/ss/trainval.npz")
    assert list(tv.images) == [1, 2, 3, 4] and tv.source_names == ["ss"]
    assert all(0 < len(p) <= 50 for p in tv.images.values())
    assert list(load_proposals("proposals/ss/test.npz").images) == [101, 102]
    first = {p.name: p.read_bytes() for p in (tmp_path / "proposals/ss").iterdir()}
    stage.run(dict(PARAMS, runtime={"workers": 1}))  # one process: same bytes
    assert {p.name: p.read_bytes() for p in (tmp_path / "proposals/ss").iterdir()} == first
    # Every proposal filtered out: empty entries for every image, not a crash.
    stage.run(dict(PARAMS, proposals_ss=dict(PARAMS["proposals_ss"], min_size=1000)))
    assert all(len(p) == 0 for p in load_proposals("proposals/ss/test.npz").images.values())


def test_stage_corrupt_image_leaves_previous_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path, {"trainval": 2, "test": 1})
    (tmp_path / "proposals/ss").mkdir(parents=True)
    (tmp_path / "proposals/ss/old.txt").write_text("previous run")
    (tmp_path / "data/images/test/000101.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="000101.png"):
        stage.run(dict(PARAMS, runtime={"workers": 1}))
    assert [p.name for p in (tmp_path / "proposals/ss").iterdir()] == ["old.txt"]
    assert not (tmp_path / "metrics").exists()
