"""Faster R-CNN with RoI drop: feature and image inputs, inference format, drop switch, seeded
sampling, the recorder, the paper-profile ResNet-50 FPN builder (local checkpoint only)."""

from __future__ import annotations

import pytest
import torch

from tests.retrain.conftest import DROP, tiny_frcnn, tiny_pgt, tiny_store
from weaksam.errors import InputError
from weaksam.retrain.data import FeatureSource
from weaksam.retrain.features import compute_features, load_features, save_features
from weaksam.retrain.frcnn import FrcnnConfig, build_frcnn, build_frcnn_r50_fpn
from weaksam.retrain.infer import to_results
from weaksam.vision.backbones import SmallCNN
from weaksam.vision.features import FeatureBatch


def _batch(n: int = 2):
    src = FeatureSource(tiny_store(n), tiny_pgt(n), flip=False)
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    return src.batch(list(range(n)), gens)


def test_losses_and_gradients_on_features():
    m = tiny_frcnn().train()
    feats, targets = _batch()
    losses = m(feats, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg"}
    sum(losses.values()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name


def test_eval_output_format():
    m = tiny_frcnn().eval()
    feats, _ = _batch()
    with torch.no_grad():
        dets = m(feats)
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape[1] == 4 and len(d["scores"]) == len(d["labels"])
        assert (d["labels"] >= 1).all() and (d["labels"] <= 3).all()
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 32).all()


def test_seeded_sampling_repeats_and_drop_switch_counts():
    m = tiny_frcnn().train()
    feats, targets = _batch()
    out = []
    for _ in range(2):
        m.set_sample_generators([torch.Generator().manual_seed(9) for _ in range(2)])
        out.append({k: v.item() for k, v in m(feats, targets).items()})
    assert out[0] == out[1]
    m.roi_heads.tau_cls = m.roi_heads.tau_reg = 0.0
    m.reset_drop_counts()
    m(feats, targets)
    assert m.drop_counts()["dropped"] == 0  # drop not active yet
    m.drop_active = True
    m(feats, targets)
    c = m.drop_counts()
    assert c["dropped"] > 0 and c["rois"] == 2 * 2 * 16


def test_recorder_gets_per_roi_losses_with_image_and_pgt_index():
    m = tiny_frcnn().train()
    rec = []
    m.roi_heads.recorder = rec.append
    feats, targets = _batch()
    m(feats, targets)
    r = rec[0]
    n = len(r["l_cls"])
    assert n == 32 and all(len(r[k]) == n for k in ("l_reg", "labels", "image_id", "gt_index"))
    assert set(r["image_id"].tolist()) == {1, 2}
    assert (r["l_reg"][r["labels"] == 0] == 0).all()


def test_image_input_with_a_backbone_matches_precomputed_maps():
    torch.manual_seed(0)
    bb = SmallCNN(widths=(4, 8), stem=4).eval()
    cfg = FrcnnConfig(anchor_sizes=(8, 16), roi_size=3, box_head_dim=16, rois_per_image=16)
    m = build_frcnn(3, cfg, DROP, backbone=bb, in_channels=8, stride=4).eval()
    imgs = [torch.randn(3, 32, 40), torch.randn(3, 32, 40)]  # same size: no batch padding
    with torch.no_grad():
        a = m(imgs)
        maps = [bb.forward_features(x[None])[0] for x in imgs]
        b = m(FeatureBatch(maps, [(32, 40), (32, 40)]))
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x["scores"], y["scores"], atol=1e-5)


def test_feature_cache_roundtrip(tmp_path):
    torch.manual_seed(0)
    bb = SmallCNN(widths=(4, 8), stem=4)
    px = [(torch.rand(30, 50, 3) * 255).byte().numpy() for _ in range(2)]
    store = compute_features(bb, [5, 9], lambda i: px[i], short_side=40, max_size=60, flip=True)
    assert store.sizes == [(36, 60), (36, 60)] and store.factors[0] == pytest.approx(1.2)
    assert tuple(store.map(0).shape) == (8, 9, 15)
    save_features(tmp_path / "f.pt", store)
    back = load_features(tmp_path / "f.pt")
    assert back.image_ids == [5, 9] and torch.equal(back.map(1, flip=True), store.map(1, True))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.pt"):
        load_features(tmp_path / "bad.pt")


def test_to_results_maps_back_to_the_original_frame():
    det = {"boxes": torch.tensor([[10.0, 20.0, 50.0, 90.0]]), "scores": torch.tensor([0.5]),
           "labels": torch.tensor([2])}
    r = to_results(7, det, factor=2.0, width=20, height=40, category_ids=[4, 8, 15])
    assert r == [{"image_id": 7, "category_id": 8, "bbox": [5.0, 10.0, 15.0, 30.0],
                  "score": 0.5}]


def test_r50_fpn_builder_reads_a_local_checkpoint_only(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(0)
    ck = tmp_path / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), ck)
    m = build_frcnn_r50_fpn(3, checkpoint=ck, rois_per_image=32, drop=DROP).train()
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])}]
    losses = m([torch.randn(3, 64, 64)], targets)
    assert torch.isfinite(sum(losses.values()))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="bad.pth"):
        build_frcnn_r50_fpn(3, checkpoint=tmp_path / "bad.pth", drop=DROP)
    with pytest.raises(InputError, match="not found"):
        build_frcnn_r50_fpn(3, checkpoint=tmp_path / "missing.pth", drop=DROP)


