"""Deformable DETR query detector: loss equals transformers' own with drop off, query drop on
the matched terms, empty targets, NaN, inference format, image input, box frames."""

from __future__ import annotations

import pytest
import torch
from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss

from weaksam.errors import TrainingError
from weaksam.retrain.query_detector import ROLE, QueryDetector, resnet50_levels
from weaksam.vision.backbones import SmallCNN
from weaksam.vision.features import FeatureBatch

SIZES = [(120, 160), (150, 140)]  # input frames (H, W) px; maps 15 x 20 and 19 x 18


def tiny(**kw: object) -> QueryDetector:
    torch.manual_seed(0)
    args = dict(num_classes=3, in_channels=[16], strides=[8], d_model=32, decoder_layers=2,
                num_queries=12, ffn_dim=64, heads=2)
    args.update(kw)
    return QueryDetector(**args)


def batch() -> tuple[FeatureBatch, list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(16, 15, 20, generator=g), torch.randn(16, 19, 18, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [30.0, 5.0, 150.0, 110.0],
                                [0.0, 0.0, 20.0, 30.0]]), "labels": torch.tensor([1, 3, 2])},
        {"boxes": torch.tensor([[40.0, 40.0, 100.0, 140.0]]), "labels": torch.tensor([2])},
    ]
    return FeatureBatch(maps, SIZES), targets


def record_loss_inputs(model: QueryDetector) -> list[tuple]:
    """Wrap the library model's ``loss_function`` to keep the arguments it is called with."""
    calls: list[tuple] = []
    ours = model.detector.loss_function

    def recorder(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append((args, kwargs))
        return ours(*args, **kwargs)

    model.detector.loss_function = recorder
    return calls


@pytest.mark.parametrize("drop", ["off", "tau100"])
def test_loss_equals_library_loss(drop: str) -> None:
    model = tiny(drop_percentile=100.0).train()
    model.drop_active = drop == "tau100"  # tau = 100 keeps every query (Table 11, first column)
    calls = record_loss_inputs(model)
    feats, targets = batch()
    ours = model(feats, targets)
    (args, kwargs), = calls
    total, lib, _ = DeformableDetrForObjectDetectionLoss(*args, **kwargs)
    weight = {"ce": 1.0, "bbox": 5.0, "giou": 2.0}
    decoder_terms = [k for k in ours if not k.endswith("_enc")]
    assert sorted(decoder_terms) == sorted(k for k in lib if not k.startswith("cardinality"))
    assert len(decoder_terms) == 6 and len(ours) == 9  # final, 1 auxiliary layer, encoder
    for k in decoder_terms:
        expect = lib[k] * weight[k.split("_")[1]]
        assert torch.allclose(ours[k], expect, rtol=0, atol=1e-6), k
    ours_total = sum(ours[k] for k in decoder_terms).detach()
    assert abs(float(ours_total) - float(total.detach())) < 1e-6


def test_encoder_term_is_the_library_loss_on_binary_targets() -> None:
    model = tiny().train()
    feats, targets = batch()
    out = {}

    def keep(module, args, kwargs, output):  # noqa: ANN001, ANN202
        out["o"] = output

    handle = model.detector.register_forward_hook(keep, with_kwargs=True)
    ours = model(feats, targets)
    handle.remove()
    o = out["o"]
    labels = model.hf_targets(targets, SIZES)
    binary = [{"class_labels": torch.zeros_like(t["class_labels"]), "boxes": t["boxes"]}
              for t in labels]
    enc = {"logits": o.enc_outputs_class, "pred_boxes": o.enc_outputs_coord_logits.sigmoid()}
    lib = model.criterion(enc, binary)  # drop off: the library terms (test above)
    assert torch.allclose(ours["loss_ce_enc"], lib["loss_ce"], atol=1e-6)
    assert torch.allclose(ours["loss_bbox_enc"], 5 * lib["loss_bbox"], atol=1e-6)
    assert torch.allclose(ours["loss_giou_enc"], 2 * lib["loss_giou"], atol=1e-6)


def test_drop_lowers_matched_terms_and_counts() -> None:
    model = tiny(drop_percentile=0.0).train()  # tau 0: only the lowest-loss matched query stays
    feats, targets = batch()
    torch.manual_seed(0)
    full = model(feats, targets)
    model.drop_active = True
    dropped = model(feats, targets)
    for k in full:
        assert dropped[k] <= full[k] + 1e-6, k
    assert dropped["loss_bbox"] < full["loss_bbox"] and dropped["loss_giou"] < full["loss_giou"]
    # last decoder layer: 2 x 12 queries, 4 matched, all but the lowest-loss one dropped
    assert model.drop_counts() == {"rois": 24, "dropped": 3, "fg_rois": 4, "fg_dropped": 3,
                                   "candidates": 4}
    model.reset_drop_counts()
    assert set(model.drop_counts().values()) == {0}
    # a single matched query is kept (its loss is <= the percentile of itself)
    one = FeatureBatch(feats.maps[1:], feats.image_sizes[1:])
    assert model(one, targets[1:])["loss_bbox"] > 0


def test_images_without_targets() -> None:
    model = tiny().train()
    model.drop_active = True
    feats, targets = batch()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    for tg in ([targets[0], empty], [empty, empty]):
        losses = model(feats, tg)
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        loss.backward()
    assert float(losses["loss_bbox"].detach()) == 0.0 and float(losses["loss_ce"].detach()) > 0


def test_nan_raises_a_clear_error() -> None:
    model = tiny().train()
    model.drop_active = True
    feats, targets = batch()
    nan = FeatureBatch([torch.full_like(m, float("nan")) for m in feats.maps], feats.image_sizes)
    with pytest.raises(TrainingError, match="NaN"):
        model(nan, targets)
    # the criterion's own check, on per-query classification losses
    logits = torch.zeros(2, 12, 3)
    logits[0, 4, 1] = float("nan")
    outputs = {"logits": logits, "pred_boxes": torch.full((2, 12, 4), 0.5), ROLE: "final"}
    indices = [(torch.tensor([0]), torch.tensor([0])), (torch.tensor([1]), torch.tensor([0]))]
    labels = model.hf_targets(targets, SIZES)
    with pytest.raises(TrainingError, match="1 of 24 per-query classification losses are NaN"):
        model.criterion.query_weights(outputs, indices, labels)


def test_inference_format_and_label_check() -> None:
    model = tiny(detections_per_image=7).eval()
    feats, targets = batch()
    with torch.no_grad():
        dets = model(feats)
    assert len(dets) == 2
    for d, (h, w) in zip(dets, SIZES, strict=True):
        assert d["boxes"].shape == (7, 4) and d["scores"].shape == (7,)
        assert d["labels"].min() >= 1 and d["labels"].max() <= 3
        assert (d["boxes"][:, 2] <= w).all() and (d["boxes"][:, 3] <= h).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
    model.train()
    bad = [dict(targets[0], labels=torch.tensor([0, 1, 2])), targets[1]]
    with pytest.raises(ValueError, match="1..3"):
        model(feats, bad)


def test_image_input_frozen_backbone_and_cached_maps() -> None:
    torch.manual_seed(0)
    backbone = SmallCNN(widths=(8, 16), stem=8)
    model = tiny(backbone=backbone, strides=[backbone.stride]).train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    images = [torch.randn(3, h, w) for h, w in SIZES]  # normalised images of two sizes
    _, targets = batch()
    loss = sum(model(images, targets).values())
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    with pytest.raises(ValueError, match="pass images, not a FeatureBatch"):
        model(batch()[0], targets)
    # same-size images: cached maps (one per image) give the detector without a backbone (same
    # seed, so the same transformer) the loss the images give the one with it
    torch.manual_seed(0)
    SmallCNN(widths=(8, 16), stem=8)
    cached = tiny(strides=[backbone.stride]).train()
    same = [torch.randn(3, 64, 80), torch.randn(3, 64, 80)]
    with torch.no_grad():
        maps = [backbone(x[None])[0] for x in same]
    a = sum(cached(FeatureBatch(maps, [(64, 80)] * 2), targets).values())
    b = sum(model(same, targets).values())
    assert torch.allclose(a, b, atol=1e-5)


def test_box_frames_round_trip() -> None:
    model = tiny().eval()
    # a target box normalised by its image's (H, W), decoded back by the post-processing
    t = [{"boxes": torch.tensor([[16.0, 24.0, 96.0, 120.0]]), "labels": torch.tensor([2])}]
    hf = model.hf_targets(t, [SIZES[0]])[0]
    assert torch.allclose(hf["boxes"], torch.tensor([[56 / 160, 72 / 120, 80 / 160, 96 / 120]]))
    logits = torch.full((1, 1, 3), -5.0)
    logits[0, 0, 1] = 5.0
    det = model.postprocess(logits, hf["boxes"][None], [SIZES[0]])[0]
    assert torch.allclose(det["boxes"][0], t[0]["boxes"][0], atol=1e-4)
    assert int(det["labels"][0]) == 2


def test_resnet50_levels_paper_profile() -> None:
    torch.manual_seed(0)
    backbone = resnet50_levels(None)  # no checkpoint: random weights, nothing downloaded
    model = tiny(backbone=backbone, in_channels=backbone.in_channels,
                 strides=backbone.strides, train_backbone=True, extra_levels=1).train()
    pixels, mask, _ = model.pixel_inputs([torch.randn(3, 64, 70)])  # padded to 96 = 3 x 32
    assert pixels.shape == (1, 3, 64, 96) and mask.shape == (1, 8, 12)
    assert mask[0, :, :9].all() and not mask[0, :, 9:].any()  # ceil(70 / 8) = 9 image cells
    maps = model.feature_levels(pixels)
    assert [tuple(m.shape[1:]) for m in maps] == [(512, 8, 12), (1024, 4, 6), (2048, 2, 3)]
    _, targets = batch()
    loss = sum(model([torch.randn(3, h, w) for h, w in SIZES], targets).values())
    loss.backward()
    assert backbone.layer4[0].conv1.weight.grad is not None  # fine-tuned
    frozen = [*backbone.stem.parameters(), *backbone.layer1.parameters()]
    assert all(p.grad is None for p in frozen)  # stem + layer1 frozen
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
