"""WSIS models and loop (weaksam/wsis/{data,mask_rcnn,mask2former,train}.py): targets follow
rescale and flip, frozen levels, losses and gradients, predictions at the original size,
resume equals an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.wsis.conftest import schedule
from weaksam.eval.mask_ap import decode_segmentation, encode_mask
from weaksam.vision.backbones import SmallCNN
from weaksam.wsis.data import Targets, build_views, instance_targets, scale_targets, stage_features
from weaksam.wsis.mask2former import Mask2FormerModelConfig, build_mask2former
from weaksam.wsis.mask_rcnn import MaskRcnnModelConfig, build_small_mask_rcnn
from weaksam.wsis.train import collate, predict_results, train_instance_model

H, W = 40, 56


def _masks() -> np.ndarray:
    m = np.zeros((2, H, W), bool)
    m[0, 4:20, 6:30] = True
    m[1, 22:36, 30:50] = True
    return m


def test_instance_targets_boxes_from_masks_and_empty_dropped() -> None:
    m = _masks()
    coco = {"images": [{"id": 1, "width": W, "height": H}, {"id": 2, "width": W, "height": H}],
            "annotations": [
                {"image_id": 1, "category_id": 7, "segmentation": encode_mask(m[0])},
                {"image_id": 1, "category_id": 9, "segmentation": encode_mask(m[1])},
                {"image_id": 1, "category_id": 9, "segmentation": encode_mask(m[1] & False)},
                {"image_id": 1, "category_id": 7, "segmentation": encode_mask(m[0]),
                 "iscrowd": 1}]}
    t = instance_targets(coco, [7, 9])
    assert t[1].labels.tolist() == [1, 2]
    np.testing.assert_array_equal(t[1].boxes, [[6, 4, 30, 20], [30, 22, 50, 36]])
    assert t[2].masks.shape == (0, H, W) and t[2].boxes.shape == (0, 4)


def test_scale_targets_flip_keeps_boxes_on_masks() -> None:
    m = _masks()
    t = Targets(np.array([[6, 4, 30, 20], [30, 22, 50, 36]], np.float32),
                np.array([1, 2]), m)
    boxes, labels, masks = scale_targets(t, 2.0, (80, 112), flip=True)
    assert masks.shape == (2, 80, 112) and masks.dtype == torch.uint8
    for b, mk in zip(boxes, masks, strict=True):
        ys, xs = torch.nonzero(mk, as_tuple=True)
        assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == \
            b.tolist()
    assert labels.tolist() == [1, 2]


def test_stage_features_strides() -> None:
    net = SmallCNN(widths=(8, 16, 32), stem=8).eval()
    levels = stage_features(net, torch.zeros(1, 3, 64, 80))
    assert [tuple(x.shape[1:]) for x in levels] == [(8, 32, 40), (16, 16, 20), (32, 8, 10)]


@pytest.fixture(scope="module")
def toy():
    return make_toy()


def make_toy():
    """A frozen tiny CNN, 4 random images with 2 box-shaped instances each."""
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16, 32), stem=8).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for i in range(1, 5)}
    m = _masks()
    targets = {i: Targets(np.array([[6, 4, 30, 20], [30, 22, 50, 36]], np.float32),
                          np.array([1, 1 + i % 2]), m) for i in images}
    return net, images, targets


def _views(toy, levels, flips=(False,), with_targets=True):
    net, images, targets = toy
    return build_views(list(images), images.__getitem__, targets if with_targets else None,
                       short_side=48, max_size=96, flips=flips,
                       features=lambda x: stage_features(net, x), levels=levels)


def _mask_rcnn(net):
    torch.manual_seed(1)
    cfg = MaskRcnnModelConfig(anchor_sizes=(8, 16, 32), rpn_batch_size=16, roi_batch_size=16,
                              representation=16, mask_layers=(8,), mask_dim=8,
                              score_thresh=0.0, max_det=5)
    return build_small_mask_rcnn(net, 2, cfg)


def test_mask_rcnn_losses_train_heads_only(toy) -> None:
    net = toy[0]
    model = _mask_rcnn(net).train()
    views = _views(toy, [-1], flips=(False, True))
    assert len(views) == 8 and views[0].image is None and views[0].features[0].dtype == \
        torch.float16
    losses = model(collate(views[:3]))
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in net.parameters())
    grads = [p.grad for n, p in model.named_parameters() if "mask_predictor" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mask_rcnn_predictions_at_original_size(toy) -> None:
    model = _mask_rcnn(toy[0])
    views = _views(toy, [-1], with_targets=False)
    res = predict_results(model, views, {i: (H, W) for i in toy[1]}, [10, 20], max_det=5)
    assert res, "an untrained model with score_thresh 0 still predicts"
    for r in res:
        assert r["category_id"] in (10, 20) and 0 <= r["score"] <= 1
        m = decode_segmentation(r["segmentation"], H, W)
        assert m.any()
    assert max(sum(r["image_id"] == i for r in res) for i in toy[1]) <= 5


def test_mask2former_losses_and_instances(toy) -> None:
    torch.manual_seed(2)
    cfg = Mask2FormerModelConfig(hidden_dim=32, num_queries=4, decoder_layers=2,
                                 encoder_layers=1, heads=2, ffn_dim=32, train_points=64,
                                 max_det=6, score_thresh=0.0)
    model = build_mask2former([16, 32], 2, cfg, stride=4)
    views = _views(toy, [1, 2])
    views[1].boxes, views[1].labels = views[1].boxes[:0], views[1].labels[:0]  # no instance
    views[1].masks = views[1].masks[:0]
    model.train()
    losses = model(collate(views))
    assert set(losses) == {"loss_cross_entropy", "loss_mask", "loss_dice"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.extra[0][0].weight.grad is not None
    out = model.instances(collate(views, with_targets=False), [v.factor for v in views],
                          [(H, W)] * len(views))
    assert len(out) == 4 and out[0]["masks"].shape[1:] == (H, W)
    assert len(out[0]["scores"]) <= 6 and set(out[0]["labels"].tolist()) <= {1, 2}


def test_resume_equals_uninterrupted(toy, tmp_path) -> None:
    net = toy[0]
    views = _views(toy, [-1], flips=(False, True))
    two, one = schedule(epochs=2, weight_decay=1e-4, seed=3), schedule(epochs=1, seed=3)
    kw = dict(fingerprint="fp")
    full = _mask_rcnn(net)
    train_instance_model(full, views, two, checkpoint=tmp_path / "a.pt", **kw)
    part = _mask_rcnn(net)
    train_instance_model(part, views, one, checkpoint=tmp_path / "b.pt", **kw)
    resumed = _mask_rcnn(net)  # a fresh process: same init, then the checkpoint of epoch 0
    t = train_instance_model(resumed, views, two, checkpoint=tmp_path / "b.pt", **kw)
    assert t["resumed_after"] == 0
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=n)
    other = _mask_rcnn(net)  # other params: the checkpoint is not used
    t = train_instance_model(other, views, one, checkpoint=tmp_path / "b.pt",
                             **{**kw, "fingerprint": "other"})
    assert t["resumed_after"] is None


def test_paper_profile_models_train_from_images() -> None:
    """R50-FPN Mask R-CNN and Mask2Former R50 (random trunks here; the paper profile loads a
    local ImageNet checkpoint) take padded images instead of cached maps."""
    from weaksam.wsis.mask2former import build_mask2former_resnet50
    from weaksam.wsis.mask_rcnn import build_resnet50_fpn_mask_rcnn

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for i in (1, 2)}
    m = _masks()
    targets = {i: Targets(np.array([[6, 4, 30, 20], [30, 22, 50, 36]], np.float32),
                          np.array([1, 2]), m) for i in images}
    views = build_views(list(images), images.__getitem__, targets, short_side=64, max_size=96)
    assert views[0].features is None and views[0].image.shape[0] == 3
    for model in (build_resnet50_fpn_mask_rcnn(2, None),
                  build_mask2former_resnet50(2, None, Mask2FormerModelConfig(num_queries=5))):
        model.train()
        losses = model(collate(views, multiple=32))
        assert torch.isfinite(sum(losses.values()))


def test_mask2former_config_does_not_warn_about_its_feature_levels_backbone() -> None:
    """The FeatureLevels backbone config sizes the pixel decoder (our levels are its input):
    transformers' "not a supported model" warning is not shown, and the logger's level is
    restored afterwards."""
    import logging

    from transformers import Mask2FormerConfig

    from weaksam.wsis.mask2former import _config

    log = logging.getLogger(Mask2FormerConfig.__module__)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=logging.DEBUG)
    log.addHandler(handler)
    before = log.level
    once = getattr(logging.Logger, "warning_once", None)  # transformers' once-per-message cache
    if hasattr(once, "cache_clear"):
        once.cache_clear()
    try:
        cfg = _config(3, [8, 16, 16, 16])
    finally:
        log.removeHandler(handler)
    assert cfg.backbone_config.channels == [8, 16, 16, 16]
    assert not [r for r in seen if "not a supported model" in r.getMessage()]
    assert log.level == before
    assert log.level == before


def test_mask2former_backbone_is_parameter_free_feature_levels() -> None:
    """transformers builds the FeatureLevels backbone from the config (no placeholder network):
    no parameter, its channels size the pixel decoder's input projections."""
    from weaksam.vision.levels import FeatureLevels

    cfg = Mask2FormerModelConfig(hidden_dim=32, num_queries=4, decoder_layers=2,
                                 encoder_layers=1, heads=2, ffn_dim=32, train_points=64)
    model = build_mask2former([16, 32], 2, cfg, stride=4)
    enc = model.hf.model.pixel_level_module.encoder
    assert isinstance(enc, FeatureLevels) and enc.channels == [16, 32, 32, 32]
    assert not list(enc.parameters()) and not list(enc.buffers())
    dec = model.hf.model.pixel_level_module.decoder
    # the decoder projects the 3 coarsest levels (strides 8..32) to hidden_dim
    assert [p[0].in_channels for p in dec.input_projections] == [32, 32, 32]
    assert dec.adapter_1[0].in_channels == 16  # lateral conv of the stride-4 level
    assert not any(n.startswith("hf.model.pixel_level_module.encoder")
                   for n in model.state_dict())


def test_build_views_without_short_side_keeps_the_original_size() -> None:
    """``short_side`` None (views that large-scale jitter rescales at every step): factor 1,
    the image and targets at the original pixels."""
    m = _masks()
    img = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    t = {1: Targets(np.array([[6, 4, 30, 20], [30, 22, 50, 36]], np.float32), np.array([1, 2]),
                    m)}
    (v,) = build_views([1], {1: img}.__getitem__, t, short_side=None, max_size=None)
    assert v.size == (H, W) and v.factor == 1.0 and v.image.shape == (3, H, W)
    assert torch.equal(v.masks, torch.from_numpy(m).to(torch.uint8))
    assert v.boxes.tolist() == [[6, 4, 30, 20], [30, 22, 50, 36]]
