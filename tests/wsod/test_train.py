"""Training loop: skipping images without proposals, NaN guard with an intact checkpoint,
determinism, learning on a tiny hand-built task, and inference on an empty proposal list."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.wsod.conftest import tiny_backbone, tiny_items
from weaksam.errors import TrainingError
from weaksam.wsod.infer import detect_image, detect_split
from weaksam.wsod.mist import MIST
from weaksam.wsod.oicr import OICR
from weaksam.wsod.train import FeatureCache, TrainImage, train_wsod

KW = dict(batch_size=2, lr=1e-2, weight_decay=0.0, optimizer="adam", train_scales=[32],
          max_size=64, flip=True, seed=0)
DET = dict(scales=[32], max_size=64, flip=True, nms_iou=0.3, score_thresh=0.0, max_det=10)


def _oicr(**kw) -> OICR:
    torch.manual_seed(0)
    return OICR(tiny_backbone(), 3, roi_size=2, hidden=16, **kw)


def test_images_without_proposals_are_skipped_and_get_no_detections(caplog):
    items = tiny_items(4)
    items[1] = TrainImage(items[1].image_id, items[1].pixels, items[1].labels,
                          np.zeros((0, 4), np.float32))
    losses = []
    with caplog.at_level(logging.WARNING):
        train_wsod(_oicr(), items, epochs=1, on_epoch=lambda e, m: losses.append(m), **KW)
    assert "image 2 has no proposals: skipped in training" in caplog.text
    assert np.isfinite(losses[0]["loss"])
    model = _oicr()
    b, s, lab = detect_image(model, items[1].pixels, items[1].boxes, **DET)
    assert b.shape == (0, 4) and len(s) == 0 and len(lab) == 0
    res = detect_split(model, [it.image_id for it in items], lambda i: items[i].pixels,
                       {it.image_id: it.boxes for it in items}, [1, 2, 3], **DET)
    assert {r["image_id"] for r in res} == {1, 3, 4}
    assert all(r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in res)


def test_no_usable_image_is_an_error():
    items = [TrainImage(1, np.zeros((8, 8, 3), np.uint8), np.ones(3, np.float32),
                        np.zeros((0, 4), np.float32))]
    with pytest.raises(TrainingError, match="no training image has proposals"):
        train_wsod(_oicr(), items, epochs=1, **KW)


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "model.pt"
    model = _oicr()
    train_wsod(model, tiny_items(4), epochs=1, checkpoint=ckpt, **KW)
    good = ckpt.read_bytes()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0
    with torch.no_grad():
        model.mil_cls.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite loss .* last good checkpoint kept"):
        train_wsod(model, tiny_items(4), epochs=1, checkpoint=ckpt, **KW)
    assert ckpt.read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name != "model.pt"]  # no temp files left


def test_same_seed_same_losses_and_learning_lowers_the_loss():
    runs = []
    for _ in range(2):
        curve: list[float] = []
        train_wsod(_oicr(), tiny_items(6), epochs=6,
                   on_epoch=lambda e, m, c=curve: c.append(m["loss"]), **KW)
        runs.append(curve)
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0]


def test_warm_feature_cache_gives_the_cold_curve_without_backbone_calls():
    items = tiny_items(4)
    kw = {**KW, "train_scales": [24, 32]}  # 24: a real rescale; 32: the image as it is
    curves, calls = [], []
    for warm in (False, True):
        model = _oicr(freeze_backbone=True)
        cache = FeatureCache(model.backbone, enabled=True)
        if warm:
            cache.warm(items, kw["train_scales"], kw["max_size"], kw["flip"])
            assert len(cache._store) == 4 * 2 * 2  # images x scales x flips
        n, forward = [0], model.backbone.forward_features

        def counted(x, n=n, forward=forward):
            n[0] += 1
            return forward(x)

        model.backbone.forward_features = counted
        curve: list[float] = []
        train_wsod(model, items, epochs=3, cache=cache,
                   on_epoch=lambda e, m, c=curve: c.append(m["loss"]), **kw)
        curves.append(curve)
        calls.append(n[0])
    assert curves[0] == curves[1]
    assert calls[0] > 0 and calls[1] == 0


def test_mist_trains_with_dropblock_after_warmup():
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16)
    seen: list[dict] = []
    train_wsod(model, tiny_items(4), epochs=2, cdb_start_epoch=1,
               on_epoch=lambda e, m: seen.append(m), **KW)
    assert model.cdb_active  # switched on at epoch 1
    assert all(np.isfinite(v) for m in seen for v in m.values())
    b, s, lab = detect_image(model, tiny_items(1)[0].pixels, tiny_items(1)[0].boxes, **DET)
    assert len(b) == len(s) == len(lab) > 0
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= 32)  # regressed boxes clipped


def test_duplicate_proposals_give_one_detection_per_class_after_nms():
    model = _oicr()
    it = tiny_items(1)[0]
    boxes = np.repeat(it.boxes[:1], 3, axis=0)  # three copies of one box
    b, s, lab = detect_image(model, it.pixels, boxes, **DET)
    assert sorted(lab.tolist()) == [0, 1, 2]  # one per class (3 classes), copies suppressed
    assert np.allclose(b, boxes[0])  # OICR does not regress: detections are proposals
    assert np.all((s > 0) & (s < 1))
