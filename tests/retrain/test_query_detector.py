"""RT-DETR query detector: loss equals transformers' own with drop off, query drop on the right
terms, empty targets, NaN, inference format, image input."""

from __future__ import annotations

import pytest
import torch
from transformers.loss.loss_rt_detr import RTDetrForObjectDetectionLoss

from weaksam.errors import TrainingError
from weaksam.retrain.frcnn import FeatureBatch
from weaksam.retrain.query_detector import QueryDetector, loss_outputs
from weaksam.wsod.backbone import SmallCNN

SIZES = [(120, 160), (150, 140)]  # input frames (H, W) px; maps 15 x 20 and 19 x 18
CANVAS = (152, 160)  # stride 8 x the padded map (19, 20)


def tiny(**kw: object) -> QueryDetector:
    torch.manual_seed(0)
    args = dict(num_classes=3, in_channels=[16], strides=[8], d_model=32, decoder_layers=2,
                num_queries=12, num_denoising=8, ffn_dim=64, heads=2)
    args.update(kw)
    return QueryDetector(**args)


def batch() -> tuple[FeatureBatch, list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(16, 15, 20, generator=g), torch.randn(16, 19, 18, generator=g)]
    feats = FeatureBatch(maps, SIZES)
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0], [30.0, 5.0, 150.0, 110.0],
                                [0.0, 0.0, 20.0, 30.0]]), "labels": torch.tensor([1, 3, 2])},
        {"boxes": torch.tensor([[40.0, 40.0, 100.0, 140.0]]), "labels": torch.tensor([2])},
    ]
    return feats, targets


def model_outputs(model: QueryDetector, feats: FeatureBatch, labels: list) -> object:
    rt = model.detector.model
    proj = [rt.encoder_input_proj[0](model.levels(feats).maps[0])]
    torch.manual_seed(3)  # denoising noise
    return rt(None, inputs_embeds=proj[0], encoder_outputs=rt.encoder(proj), labels=labels)


@pytest.mark.parametrize("drop", ["off", "tau100"])
def test_loss_equals_library_loss(drop: str) -> None:
    model = tiny(drop_percentile=100.0).train()
    model.drop_active = drop == "tau100"  # tau = 100 keeps every query (Table 11, first column)
    feats, targets = batch()
    labels = model.hf_targets(targets, CANVAS)
    out = model_outputs(model, feats, labels)
    ours = model.criterion(loss_outputs(out, model.config), labels)
    logits, boxes = out.intermediate_logits, out.intermediate_reference_points
    total, lib, _ = RTDetrForObjectDetectionLoss(
        logits[:, -1], labels, logits.device, boxes[:, -1], model.config, logits, boxes,
        enc_topk_logits=out.enc_topk_logits, enc_topk_bboxes=out.enc_topk_bboxes,
        denoising_meta_values=out.denoising_meta_values,
    )
    assert set(ours) == set(lib) and len(ours) == 3 * (2 + 1 + 2)  # final, aux, enc, 2 dn
    for k in lib:
        assert torch.allclose(ours[k], lib[k], rtol=0, atol=1e-6), k
    assert abs(float(sum(ours.values()).detach()) - float(total.detach())) < 1e-6


def test_drop_zeroes_matched_terms_but_not_denoising() -> None:
    model = tiny(drop_percentile=0.0).train()  # tau 0: only the lowest-loss matched query stays
    feats, targets = batch()
    labels = model.hf_targets(targets, CANVAS)
    out = model_outputs(model, feats, labels)
    model.drop_active = False
    full = model.criterion(loss_outputs(out, model.config), labels)
    model.drop_active = True
    dropped = model.criterion(loss_outputs(out, model.config), labels)
    for k in full:
        if "_dn_" in k:
            assert torch.equal(full[k], dropped[k]), k
        else:
            assert dropped[k] <= full[k] + 1e-7, k
    assert dropped["loss_bbox"] < full["loss_bbox"] and dropped["loss_giou"] < full["loss_giou"]
    counts = model.drop_counts()
    assert counts == {"rois": 24, "candidates": 4, "dropped": 3, "fg_rois": 4, "fg_dropped": 3}
    model.reset_drop_counts()
    assert set(model.drop_counts().values()) == {0}


def test_dropped_query_gets_no_box_gradient() -> None:
    model = tiny(drop_percentile=0.0).train()
    model.drop_active = True
    feats, targets = batch()
    one = FeatureBatch(feats.maps[1:], feats.image_sizes[1:])
    labels = model.hf_targets(targets[1:], model.levels(one).canvas)  # one target: it is kept
    out = model_outputs(model, one, labels)
    outputs = loss_outputs(out, model.config)
    boxes = outputs["pred_boxes"]
    boxes.retain_grad()
    losses = model.criterion(outputs, labels)
    (losses["loss_bbox"] + losses["loss_giou"]).backward()
    assert boxes.grad.abs().sum() > 0  # tau 0 with one candidate keeps it (loss <= itself)


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
        if all(len(t["labels"]) == 0 for t in tg):
            assert float(losses["loss_bbox"].detach()) == 0.0 and "loss_bbox_dn_0" not in losses


def test_nan_loss_raises_a_clear_error() -> None:
    model = tiny().train()
    model.drop_active = True
    feats, targets = batch()
    nan = FeatureBatch([torch.full_like(m, float("nan")) for m in feats.maps], feats.image_sizes)
    with pytest.raises(TrainingError, match="NaN"):
        model(nan, targets)
    # the criterion's own check, on per-query classification losses
    logits = torch.zeros(2, 12, 3)
    logits[0, 4, 1] = float("nan")
    outputs = {"logits": logits, "pred_boxes": torch.full((2, 12, 4), 0.5),
               "query_drop_role": "final"}
    indices = [(torch.tensor([0]), torch.tensor([0])), (torch.tensor([1]), torch.tensor([0]))]
    labels = model.hf_targets(targets, CANVAS)
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
    # same-size images: cached maps (one per image) give the loss the images give
    same = [torch.randn(3, 64, 80), torch.randn(3, 64, 80)]
    with torch.no_grad():
        maps = [backbone(x[None])[0] for x in same]
    gens = [torch.Generator().manual_seed(9)]
    model.set_sample_generators(gens)
    a = sum(model(FeatureBatch(maps, [(64, 80)] * 2), targets).values())
    model.set_sample_generators([torch.Generator().manual_seed(9)])
    b = sum(model(same, targets).values())
    assert torch.allclose(a, b, atol=1e-5)


def test_canvas_frame_round_trip() -> None:
    model = tiny().eval()
    # a target box normalised by the canvas, decoded back by the post-processing
    t = [{"boxes": torch.tensor([[16.0, 24.0, 96.0, 120.0]]), "labels": torch.tensor([2])}]
    hf = model.hf_targets(t, CANVAS)[0]
    assert torch.allclose(hf["boxes"], torch.tensor([[56 / 160, 72 / 152, 80 / 160, 96 / 152]]))
    logits = torch.full((1, 1, 3), -5.0)
    logits[0, 0, 1] = 5.0
    det = model.postprocess(logits, hf["boxes"][None], CANVAS, [SIZES[0]])[0]
    assert torch.allclose(det["boxes"][0], t[0]["boxes"][0], atol=1e-4)
    assert int(det["labels"][0]) == 2
