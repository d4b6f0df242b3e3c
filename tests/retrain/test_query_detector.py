"""Deformable DETR query detector: loss equals transformers' own with drop off, query drop on
the matched terms, empty targets, NaN, inference format, image input, box frames."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import torch
from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss

from weaksam.errors import TrainingError
from weaksam.retrain.query_detector import (
    ROLE,
    QueryDetector,
    QueryDetectorConfig,
    resnet50_levels,
)
from weaksam.vision.backbones import SmallCNN
from weaksam.vision.features import FeatureBatch

SIZES = [(120, 160), (150, 140)]  # input frames (H, W) px; maps 15 x 20 and 19 x 18


def tiny(**kw: object) -> QueryDetector:
    """A small detector; ``kw``: QueryDetectorConfig fields or QueryDetector arguments."""
    torch.manual_seed(0)
    fields = {f.name for f in dataclasses.fields(QueryDetectorConfig)}
    cfg = dict(d_model=32, decoder_layers=2, num_queries=12, ffn_dim=64, heads=2)
    cfg.update({k: v for k, v in kw.items() if k in fields})
    args = dict(num_classes=3, in_channels=[16], strides=[8])
    args.update({k: v for k, v in kw.items() if k not in fields})
    return QueryDetector(cfg=QueryDetectorConfig(**cfg), **args)


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


def _train_without_boxes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Losses of ``model`` on one image without boxes, then on two; each finite, backward runs;
    the last step's terms returned."""
    feats, targets = batch()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    for tg in ([targets[0], empty], [empty, empty]):
        losses = model(feats, tg)
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        loss.backward()
    return losses


def test_images_without_targets() -> None:
    model = tiny().train()
    model.drop_active = True
    losses = _train_without_boxes(model)
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
    model = tiny(detections_per_img=7).eval()
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


# --- DINO's parts (Zhang et al. 2022): contrastive denoising, mixed query selection,
# look-forward-twice -------------------------------------------------------------------------

def dino(**kw: object) -> QueryDetector:
    args = dict(dn_queries=12, mixed_query_selection=True, look_forward_twice=True,
                refined_query_pos=True, class_query_selection=True)
    args.update(kw)
    return tiny(**args)


def test_dino_parts_are_off_by_default() -> None:
    model = tiny()
    assert model.denoising_labels is None
    assert type(model.detector.model.decoder).__name__ == "DeformableDetrDecoder"
    assert not any(w in k for k in model.state_dict()
                   for w in ("content_queries", "denoising", "query_pos_head", "head.head"))
    assert isinstance(model.detector.model.decoder.class_embed[-1], torch.nn.Linear)


def test_denoising_attention_mask_blocks() -> None:
    model = dino(mixed_query_selection=False, look_forward_twice=False).train()
    feats, targets = batch()
    dn = model.make_denoising(model.hf_targets(targets, SIZES))
    # G_max = 3 boxes: 12 // 3 = 4 groups of 3 positive + 3 negative queries, N = 24, Q = 12
    assert dn.groups == 4 and dn.size == 24 and dn.content.shape == (2, 24, 32)
    blocked = torch.isinf(dn.attention_mask[0, 0])  # (36, 36), True: query row cannot see key
    assert blocked.shape == (36, 36)
    assert blocked[24:, :24].all() and not blocked[24:, 24:].any()  # matching: no dn queries
    assert not blocked[:24, 24:].any()  # dn queries see the matching queries
    for g in range(4):
        rows = slice(6 * g, 6 * g + 6)
        assert not blocked[rows, rows].any()
        assert blocked[rows, :6 * g].all() and blocked[rows, 6 * g + 6:24].all()


def test_denoising_queries_do_not_change_matching_queries_and_groups_are_apart() -> None:
    model = dino(mixed_query_selection=False, look_forward_twice=False).eval()
    feats, targets = batch()
    pixels, mask, _ = model.pixel_inputs(feats)
    dn = model.make_denoising(model.hf_targets(targets, SIZES))
    with torch.no_grad():
        alone = model.detector(pixel_values=pixels, pixel_mask=mask).logits
        joint = model.detector(pixel_values=pixels, pixel_mask=mask, denoising=dn).logits
        content = dn.content.clone()
        content[:, 6:12] += 1.0  # group 1 only
        moved = model.detector(pixel_values=pixels, pixel_mask=mask,
                               denoising=replace(dn, content=content)).logits
    assert joint.shape == (2, 36, 3)
    torch.testing.assert_close(joint[:, 24:], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(moved[:, 24:], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(moved[:, :6], joint[:, :6], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(moved[:, 12:24], joint[:, 12:24], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(moved[:, 6:12], joint[:, 6:12])


def test_denoising_loss_uses_each_query_s_own_target() -> None:
    model = dino(dn_label_noise=0.0, dn_box_noise=0.0, mixed_query_selection=False,
                 look_forward_twice=False).train()
    feats, targets = batch()
    labels = model.hf_targets(targets, SIZES)
    dn = model.make_denoising(labels)
    # zero noise: positive and negative anchors are the target boxes, labels unchanged
    for g in range(4):
        for half in (0, 3):
            torch.testing.assert_close(dn.reference[0, 6 * g + half:6 * g + half + 3],
                                       labels[0]["boxes"], rtol=0, atol=1e-5)
    (q0, t0), (q1, t1) = dn.matches(labels)
    assert q0.tolist() == [0, 1, 2, 6, 7, 8, 12, 13, 14, 18, 19, 20]
    assert t0.tolist() == [0, 1, 2] * 4
    assert q1.tolist() == [0, 6, 12, 18] and t1.tolist() == [0] * 4
    calls = record_loss_inputs(model)
    torch.manual_seed(3)
    terms = model(feats, targets)
    (args, _), = calls
    boxes = args[6][-1, :, :24]  # last layer's boxes of the dn queries, (B, N, 4)
    l1 = ((boxes[0, q0] - labels[0]["boxes"][t0]).abs().sum()
          + (boxes[1, q1] - labels[1]["boxes"][t1]).abs().sum())
    torch.testing.assert_close(terms["loss_bbox_dn"], 5.0 * l1 / (4 * 4))
    logits = args[5][-1, :, :24]  # negatives and padding slots: "no object" (all-zero target)
    onehot = torch.zeros_like(logits)
    onehot[0, q0, labels[0]["class_labels"][t0]] = 1.0
    onehot[1, q1, labels[1]["class_labels"][t1]] = 1.0
    p = logits.sigmoid()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    focal = ce * (1 - (p * onehot + (1 - p) * (1 - onehot))) ** 2
    focal = (0.25 * onehot + 0.75 * (1 - onehot)) * focal
    torch.testing.assert_close(terms["loss_ce_dn"], focal.sum() / 16)
    assert {"loss_ce_dn_0", "loss_bbox_dn_0", "loss_giou_dn_0"} <= set(terms)


def test_denoising_terms_never_drop() -> None:
    model = dino(drop_percentile=0.0, drop_queries="all").train()
    feats, targets = batch()
    torch.manual_seed(3)
    off = model(feats, targets)
    model.drop_active = True
    torch.manual_seed(3)
    on = model(feats, targets)
    assert on["loss_ce"] < off["loss_ce"]  # tau = 0: the matching queries drop
    for k in off:
        if "_dn" in k:
            torch.testing.assert_close(on[k], off[k])


def first_layer_content(model: QueryDetector, feats: FeatureBatch) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    hook = model.detector.model.decoder.layers[0].register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        model(feats)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("mixed", [True, False])
def test_mixed_query_selection_content_is_learned(mixed: bool) -> None:
    model = dino(dn_queries=0, look_forward_twice=False,
                 mixed_query_selection=mixed).eval()
    feats, _ = batch()
    other = FeatureBatch([m * 2.0 + 1.0 for m in feats.maps], SIZES)
    a, b = first_layer_content(model, feats), first_layer_content(model, other)
    if mixed:
        weight = model.detector.model.decoder.content_queries.weight
        torch.testing.assert_close(a, weight.detach().expand(2, -1, -1))
        torch.testing.assert_close(b, a)
    else:  # two-stage Deformable DETR: content projected from the encoder's proposals
        assert not torch.allclose(a, b)


@pytest.mark.parametrize("twice", [True, False])
def test_look_forward_twice_gradient_reaches_previous_box_head(twice: bool) -> None:
    model = dino(dn_queries=0, mixed_query_selection=False,
                 look_forward_twice=twice).train()
    feats, _ = batch()
    pixels, mask, _ = model.pixel_inputs(feats)
    out = model.detector(pixel_values=pixels, pixel_mask=mask)
    # last layer's (layer 1's) boxes; the loop's reference of layer 1 stays detached
    assert not out.intermediate_reference_points.requires_grad or twice
    out.pred_boxes.sum().backward()
    head = model.detector.bbox_embed[0]  # layer 0's box head, its parameters tied to the decoder's
    assert head.layers[-1].weight is model.detector.model.decoder.bbox_embed[0].layers[-1].weight
    reached = sum(float(q.grad.abs().sum()) for q in head.parameters() if q.grad is not None)
    assert (reached > 0) == twice


def test_look_forward_twice_keeps_the_predictions() -> None:
    feats, _ = batch()
    once = dino(dn_queries=0, mixed_query_selection=False, look_forward_twice=False)
    twice = dino(dn_queries=0, mixed_query_selection=False, look_forward_twice=True)
    twice.load_state_dict(once.state_dict())
    with torch.no_grad():
        a, b = once.eval()(feats), twice.eval()(feats)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x["boxes"], y["boxes"])
        torch.testing.assert_close(x["scores"], y["scores"])


def test_dino_trains_every_parameter() -> None:
    model = dino().train()
    feats, targets = batch()
    sum(model(feats, targets).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_dino_trains_on_a_crop_without_boxes() -> None:
    # the release's random crop may leave an image with no box (allow_negative_crop=True)
    _train_without_boxes(dino().train())


def sine_embedding(boxes: torch.Tensor, d: int) -> torch.Tensor:
    """DINO's (DAB-DETR's) sine embedding of boxes (..., 4) (cx, cy, w, h) in [0, 1], written
    from its definition: per coordinate in the order (cy, cx, w, h), d / 2 channels, channel j
    = sin (j even) or cos (j odd) of 2 pi v / 10000^(2 floor(j / 2) / (d / 2))."""
    n = d // 2
    j = torch.arange(n)
    freq = 10000.0 ** (2 * (j // 2) / n)
    parts = []
    for c in (1, 0, 2, 3):
        a = boxes[..., c, None] * 2 * torch.pi / freq
        parts.append(torch.where(j % 2 == 0, a.sin(), a.cos()))
    return torch.cat(parts, dim=-1)


def layer_inputs(model: QueryDetector, feats: FeatureBatch) -> list[dict[str, torch.Tensor]]:
    """The positional query and reference points each decoder layer receives."""
    seen: list[dict[str, torch.Tensor]] = []

    def keep(mod, args, kwargs):  # noqa: ANN001, ANN202
        pos = kwargs.get("object_queries_position_embeddings", args[1] if len(args) > 1 else None)
        ref = kwargs.get("reference_points", args[2] if len(args) > 2 else None)
        seen.append({"pos": pos.detach().clone(), "ref": ref.detach().clone()})

    hooks = [layer.register_forward_pre_hook(keep, with_kwargs=True)
             for layer in model.detector.model.decoder.layers]
    with torch.no_grad():
        out = model.detector(pixel_values=model.pixel_inputs(feats)[0],
                             pixel_mask=model.pixel_inputs(feats)[1])
    for h in hooks:
        h.remove()
    seen.append({"out": out})
    return seen


def test_refined_query_pos_is_the_mlp_of_each_layer_s_input_box() -> None:
    model = dino(dn_queries=0, decoder_layers=3).eval()
    with torch.no_grad():  # trained-like box heads (their last layer starts at zero)
        for head in model.detector.model.decoder.bbox_embed:
            head.layers[-1].weight.normal_(0.0, 0.1)
    feats, _ = batch()
    *layers, last = layer_inputs(model, feats)
    out = last["out"]
    decoder = model.detector.model.decoder
    w1, w2 = decoder.query_pos_head.layers
    boxes = [out.init_reference_points] + list(out.intermediate_reference_points.unbind(1))
    assert len(layers) == 3
    for i, seen in enumerate(layers):
        # layer i's reference points: the box entering it (initial anchor, then layer i-1's
        # refined box) times the valid ratios of each level
        ratios = model.detector.model.get_valid_ratio(model.pixel_inputs(feats)[1].bool())
        torch.testing.assert_close(seen["ref"][:, :, 0], boxes[i] * ratios.repeat(1, 2)[:, None])
        sine = sine_embedding(seen["ref"][:, :, 0], 32)  # (B, Q, 2d)
        expected = torch.relu(sine @ w1.weight.T + w1.bias) @ w2.weight.T + w2.bias
        torch.testing.assert_close(seen["pos"], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(layers[0]["pos"], layers[1]["pos"])  # follows the refined box
    assert not torch.allclose(layers[1]["pos"], layers[2]["pos"])


def test_without_refined_query_pos_every_layer_gets_the_initial_anchor_s_query() -> None:
    model = dino(dn_queries=0, decoder_layers=3, refined_query_pos=False).eval()
    with torch.no_grad():
        for head in model.detector.model.decoder.bbox_embed:
            head.layers[-1].weight.normal_(0.0, 0.1)
    feats, _ = batch()
    *layers, _ = layer_inputs(model, feats)
    assert model.detector.model.decoder.query_pos_head is None
    for seen in layers[1:]:
        torch.testing.assert_close(seen["pos"], layers[0]["pos"], rtol=0, atol=0)


def test_refined_query_pos_gradient_reaches_its_mlp_and_denoising_queries_use_it() -> None:
    model = dino().train()
    feats, targets = batch()
    torch.manual_seed(3)
    terms = model(feats, targets)
    sum(v for k, v in terms.items() if "_dn" in k).backward()  # denoising terms alone
    head = model.detector.model.decoder.query_pos_head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    # content and positions both replaced: the two-stage projection is out of training
    assert not any(p.requires_grad for p in model.detector.model.pos_trans.parameters())


def encoder_run(model: QueryDetector, feats: FeatureBatch) -> tuple[object, torch.Tensor]:
    """(library output, encoder class-head input (B, T, d)) of one forward."""
    seen: list[torch.Tensor] = []
    head = model.detector.model.decoder.class_embed[-1]
    hook = head.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    with torch.no_grad():
        out = model.detector(pixel_values=model.pixel_inputs(feats)[0],
                             pixel_mask=model.pixel_inputs(feats)[1])
    hook.remove()
    return out, seen[0]


@pytest.mark.parametrize("by_class", [True, False])
def test_query_selection_ranks_proposals_by_the_best_class_logit(by_class: bool) -> None:
    model = dino(dn_queries=0, class_query_selection=by_class).eval()
    linear = model.detector.model.decoder.class_embed[-1]
    linear = linear.head if by_class else linear
    with torch.no_grad():  # constructed: class 0 (objectness channel) and the best class disagree
        g = torch.Generator().manual_seed(5)
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g))
        linear.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    feats, _ = batch()
    out, x = encoder_run(model, feats)
    logits = x @ linear.weight.T + linear.bias  # (B, T, C)
    by_max = logits.max(-1).values.topk(12, dim=1).indices
    by_first = logits[..., 0].topk(12, dim=1).indices
    assert all(set(a.tolist()) != set(b.tolist()) for a, b in zip(by_max, by_first, strict=True))
    expected = by_max if by_class else by_first
    anchors = out.enc_outputs_coord_logits.gather(1, expected[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(out.init_reference_points, anchors.sigmoid())
    if by_class:
        torch.testing.assert_close(out.enc_outputs_class[..., 1:], logits, rtol=1e-5, atol=1e-5)


def test_class_query_selection_trains_the_encoder_head_on_the_classes() -> None:
    model = dino(dn_queries=0).train()
    feats, targets = batch()
    out = {}
    handle = model.detector.register_forward_hook(
        lambda mod, args, kwargs, output: out.setdefault("o", output), with_kwargs=True)
    ours = model(feats, targets)
    handle.remove()
    o = out["o"]
    labels = model.hf_targets(targets, SIZES)
    # DINO: the Q proposals selected by their best class logit, their C logits, true classes
    top = o.enc_outputs_class[..., 1:].max(-1).values.topk(12, dim=1).indices
    enc = {"logits": o.enc_outputs_class[..., 1:].gather(1, top[..., None].expand(-1, -1, 3)),
           "pred_boxes": o.enc_outputs_coord_logits.sigmoid().gather(
               1, top[..., None].expand(-1, -1, 4))}
    lib = model.criterion(enc, labels)
    torch.testing.assert_close(ours["loss_ce_enc"], lib["loss_ce"])
    torch.testing.assert_close(ours["loss_bbox_enc"], 5 * lib["loss_bbox"])
    torch.testing.assert_close(ours["loss_giou_enc"], 2 * lib["loss_giou"])
    swapped = [{**t, "labels": 4 - t["labels"]} for t in targets]  # 1 <-> 3: other classes
    assert not torch.allclose(model(feats, swapped)["loss_ce_enc"], ours["loss_ce_enc"])
    ours["loss_ce_enc"].backward()
    head = model.detector.model.decoder.class_embed[-1].head
    assert (head.weight.grad.abs().sum(1) > 0).all()  # every class row
