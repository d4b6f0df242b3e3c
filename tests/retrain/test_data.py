"""PGT loading (empty file, categories, degenerate boxes) and the batch sources' geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.retrain.conftest import tiny_pgt, tiny_store
from weaksam.errors import InputError
from weaksam.retrain.data import (
    FeatureSource,
    ImageSource,
    RandomCropConfig,
    crop_branch,
    drop_small_images,
    load_pgt,
)


def _pgt_file(path, anns):
    data = {"info": {"image_root": "."},
            "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                       {"id": 2, "file_name": "b.png", "width": 40, "height": 30}],
            "categories": [{"id": 3, "name": "x"}, {"id": 7, "name": "y"}],
            "annotations": anns}
    path.write_text(json.dumps(data))
    return path


def test_empty_pgt_file_is_an_input_error_naming_it(tmp_path):
    p = _pgt_file(tmp_path / "trainval.json", [])
    with pytest.raises(InputError, match="no annotations") as e:
        load_pgt(p)
    assert str(p) in str(e.value)


def test_pgt_labels_follow_sorted_category_ids_and_skip_degenerate_boxes(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5], "score": 0.9},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0.5, 9]},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 4, 4]}]
    pgt = load_pgt(_pgt_file(tmp_path / "t.json", anns), category_ids=[7, 3])
    assert pgt.category_ids == [3, 7]
    assert pgt.boxes[1].tolist() == [[1.0, 2.0, 11.0, 7.0]]
    assert pgt.labels[1].tolist() == [2] and pgt.labels[2].tolist() == [1]
    assert pgt.num_boxes == 2
    with pytest.raises(InputError, match="categories"):
        load_pgt(tmp_path / "t.json", category_ids=[3, 7, 9])


def test_feature_source_flips_boxes_with_the_maps():
    store = tiny_store(2)
    src = FeatureSource(store, tiny_pgt(2), flip=True)
    flips = []
    for seed in range(40):
        feats, targets = src.batch([0], [torch.Generator().manual_seed(seed)])
        flipped = not torch.equal(feats.maps[0], store.map(0))
        flips.append(flipped)
        expect = [[16.0, 4.0, 28.0, 16.0]] if flipped else [[4.0, 4.0, 16.0, 16.0]]
        assert targets[0]["boxes"].tolist() == expect
        assert targets[0]["labels"].tolist() == [1] and int(targets[0]["image_id"]) == 1
    assert 5 < sum(flips) < 35


def test_image_source_rescales_boxes():
    pgt = tiny_pgt(2)
    px = np.zeros((32, 48, 3), np.uint8)
    src = ImageSource([1, 2], lambda iid: px, pgt, scales=[64], max_size=200, flip=False)
    images, targets = src.batch([1], [torch.Generator().manual_seed(0)])
    assert tuple(images[0].shape) == (3, 64, 96)
    assert targets[0]["boxes"].tolist() == [[8.0, 8.0, 32.0, 32.0]]


# --- issue 23: the DINO release's data side (dino-base-voc.py: filter_cfg, random-crop branch)

def test_release_min_size_drops_boxes_with_a_side_under_32_px(tmp_path):
    # mmdet XMLDataset: a box with w < bbox_min_size or h < bbox_min_size is ignored in training
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 32, 32]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 31.5, 100]},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 100, 20]}]
    p = _pgt_file(tmp_path / "t.json", anns)
    assert load_pgt(p).num_boxes == 3
    pgt = load_pgt(p, min_size=32)
    assert pgt.boxes[1].tolist() == [[0.0, 0.0, 32.0, 32.0]] and len(pgt.boxes[2]) == 0
    # filter_empty_gt: image 2 has no box left, so no source trains on it
    src = ImageSource([1, 2], lambda iid: np.zeros((30, 40, 3), np.uint8), pgt, scales=[64],
                      max_size=200, flip=False)
    assert src.image_ids == [1]


def test_images_with_a_side_under_min_size_are_dropped():
    pgt = tiny_pgt(3)
    out = drop_small_images(pgt, {1: (40, 31), 2: (32, 32), 3: (20, 100)}, 32)
    assert [len(out.boxes[i]) for i in (1, 2, 3)] == [0, 1, 0]
    assert [len(out.labels[i]) for i in (1, 2, 3)] == [0, 1, 0]
    assert drop_small_images(pgt, {1: (40, 31)}, 1.0) is pgt


def _coordinate_image(h: int, w: int) -> torch.Tensor:
    """(3, h, w): channel 0 holds each pixel's x, channel 1 its y (crop offsets readable)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys, torch.zeros_like(xs)])


def test_crop_branch_translates_clips_and_drops_boxes_exactly():
    # scale 100 of a 100 x 160 image (factor 1), crop 50 x 50, final short side 50 (factor 1):
    # the output is the crop itself, its first pixel tells the offset
    img = _coordinate_image(100, 160)
    boxes = torch.tensor([[10.0, 10.0, 40.0, 30.0], [0.0, 0.0, 160.0, 100.0],
                          [60.0, 20.0, 130.0, 90.0], [150.0, 0.0, 160.0, 10.0]])
    labels = torch.tensor([1, 2, 3, 4])
    crop = RandomCropConfig(prob=1.0, scales=(100,), max_size=1000, size=(50, 50))
    kept_counts = set()
    for seed in range(30):
        x, b, lab = crop_branch(img, boxes, labels, 50, 1000, crop,
                                torch.Generator().manual_seed(seed))
        assert tuple(x.shape) == (3, 50, 50)
        left, top = float(x[0, 0, 0]), float(x[1, 0, 0])
        want = boxes - torch.tensor([left, top, left, top])
        want[:, 0::2] = want[:, 0::2].clamp(0, 50)
        want[:, 1::2] = want[:, 1::2].clamp(0, 50)
        keep = (want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])
        assert torch.equal(b, want[keep]) and torch.equal(lab, labels[keep])
        assert 2 in lab.tolist()  # the whole-image box always survives, clipped
        kept_counts.add(len(lab))
    assert len(kept_counts) > 1  # some crops drop boxes, some keep more


def test_crop_branch_sizes_and_rescales_boxes_with_the_image():
    # 300 x 400 image: short side 200 -> 200 x 267; crop h, w in [60, 90]; final short side 45
    img = torch.zeros(3, 300, 400)
    img[0, 60:240, 80:320] = 1.0  # an object filling the box below
    boxes, labels = torch.tensor([[80.0, 60.0, 320.0, 240.0]]), torch.tensor([5])
    crop = RandomCropConfig(prob=1.0, scales=(200,), max_size=4200, size=(60, 90))
    sizes = set()
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        x, b, lab = crop_branch(img, boxes, labels, 45, 1000, crop, g)
        assert min(x.shape[1:]) == 45
        sizes.add(tuple(x.shape[1:]))
        if len(b):  # the bright pixels of the output lie in the box
            ys, xs = torch.nonzero(x[0] > 0.5, as_tuple=True)
            x1, y1, x2, y2 = b[0].tolist()
            assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1
            assert ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1
        # inside the frame (up to the rounding of the rescaled size, < 0.5 px)
        assert (b >= 0).all() and (b[:, 0::2] <= x.shape[2] + 0.5).all()
        assert (b[:, 1::2] <= x.shape[1] + 0.5).all()
    assert len(sizes) > 3  # crop aspect ratios vary


def test_image_source_crop_branch_probability_and_off_draws_as_before():
    pgt = tiny_pgt(2)
    px = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    plain = ImageSource([1, 2], lambda iid: px, pgt, scales=[32, 48], max_size=200, flip=True)
    off = ImageSource([1, 2], lambda iid: px, pgt, scales=[32, 48], max_size=200, flip=True,
                      crop=RandomCropConfig())
    half = ImageSource([1, 2], lambda iid: px, pgt, scales=[32, 48], max_size=200, flip=True,
                       crop=RandomCropConfig(prob=0.5, scales=(64,), size=(20, 40)))
    crops = 0
    for seed in range(40):
        a = plain.batch([0], [torch.Generator().manual_seed(seed)])
        b = off.batch([0], [torch.Generator().manual_seed(seed)])
        assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[1][0]["boxes"], b[1][0]["boxes"])
        c = half.batch([0], [torch.Generator().manual_seed(seed)])
        crops += int(c[0][0].shape != a[0][0].shape or not torch.equal(c[0][0], a[0][0]))
        assert min(c[0][0].shape[1:]) in (32, 48)
    assert 8 < crops < 32


def test_paper_profile_has_the_release_dino_data_side_and_the_default_keeps_it_off():
    import yaml

    from weaksam.profiles import deep_merge, resolve_profile

    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "params.yaml").read_text())
    m = base["retrain"]["detr"]["model"]
    assert m["crop"]["prob"] == 0.0 and m["filter_min_size"] == 1.0
    voc07 = deep_merge(base, resolve_profile("paper_voc07", root / "configs"))
    m, s = voc07["retrain"]["detr"]["model"], voc07["retrain"]["detr"]["schedule"]
    assert m["crop"] == {"prob": 0.5, "scales": [400, 500, 600], "max_size": 4200,
                         "size": [384, 600]}
    assert m["filter_min_size"] == 32
    # RepeatDataset x 3: 14 repeated epochs are 42 passes; milestones 8, 10, 12 of 14
    assert s["epochs"] == 42 and s["prelim_epochs"] == 9
    assert [round(f * 14, 6) for f in s["lr_steps"]] == [8, 10, 12]
    voc12 = deep_merge(base, resolve_profile("paper_voc12", root / "configs"))
    s = voc12["retrain"]["detr"]["schedule"]
    assert s["epochs"] == 36 and [round(f * 12, 6) for f in s["lr_steps"]] == [8, 10]
