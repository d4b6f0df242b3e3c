"""CluesViT: shapes, gradients, attention recording and the fine-CAM propagation."""

from __future__ import annotations

import pytest
import torch
from timm.layers.attention import Attention

from weaksam.clues.model import CluesViT, RecordingAttention
from weaksam.errors import InputError

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
            cross_layers=[0, 1])


def _model(c: int = 3) -> CluesViT:
    torch.manual_seed(0)
    return CluesViT(num_classes=c, **TINY)


def test_shapes_and_every_parameter_gets_a_gradient():
    m = _model(3)
    x = torch.randn(2, 3, 32, 32)
    out = m(x, with_cross=True)
    assert out["cam_coarse"].shape == (2, 3, 4, 4)
    assert out["cam_fine"].shape == (2, 3, 4, 4)
    assert out["cross"].shape == (2, 2, 1, 3, 4, 4)
    for k in ("logits_coarse", "logits_fine", "logits_tokens"):
        assert out[k].shape == (2, 3)
    losses = m.losses(out, torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    losses["loss"].backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_other_input_size_resamples_positions():
    m = _model(2)
    out = m(torch.randn(1, 3, 48, 40), with_cross=True)
    assert out["cam_fine"].shape == (1, 2, 6, 5)
    assert out["cross"].shape == (1, 2, 1, 2, 6, 5)


def test_recording_attention_matches_timm_attention():
    torch.manual_seed(0)
    ref = Attention(16, num_heads=2, qkv_bias=True)
    rec = RecordingAttention(16, num_heads=2, qkv_bias=True)
    rec.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 16)
    assert torch.allclose(ref(x), rec(x), atol=1e-5)
    a = rec.last_attn
    assert a.shape == (2, 2, 5, 5)
    assert torch.allclose(a.sum(-1), torch.ones(2, 2, 5), atol=1e-5)


def test_fine_cam_is_row_normalised_propagation_of_coarse_cam():
    m = _model(2).eval()
    x = torch.randn(1, 3, 32, 32)
    seen = {}

    def grab(_mod, _inp, _out):
        seen.setdefault("attn", []).append(_mod.last_attn.detach().clone())

    hooks = [blk.attn.register_forward_hook(grab) for blk in m.vit.blocks]
    with torch.no_grad():
        out = m(x)
    for h in hooks:
        h.remove()
    w = m.fusion_weights()
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    c = 2
    fused = sum((a[0] * w[li].view(-1, 1, 1)).sum(0) for li, a in enumerate(seen["attn"]))
    p2p = fused[c:, c:]
    p2p = p2p / p2p.sum(-1, keepdim=True)
    coarse = out["cam_coarse"][0].flatten(1)  # (C, nm)
    expect = (p2p @ coarse.clamp_min(0).T).T.view(2, 4, 4)
    assert torch.allclose(out["cam_fine"][0], expect, atol=1e-5)
    assert torch.allclose(out["logits_fine"][0], (p2p @ coarse.T).T.mean(-1), atol=1e-5)
    # uniform coarse CAM stays uniform after propagation (rows sum to 1)
    assert torch.allclose(p2p.sum(-1), torch.ones(16), atol=1e-5)


def test_cross_is_class_to_patch_attention_head_mean():
    m = _model(2).eval()
    seen = []
    hooks = [blk.attn.register_forward_hook(lambda mod, i, o: seen.append(mod.last_attn.clone()))
             for blk in m.vit.blocks]
    with torch.no_grad():
        out = m(torch.randn(1, 3, 32, 32), with_cross=True)
    for h in hooks:
        h.remove()
    for k, layer in enumerate(m.cross_layers):
        a = seen[layer][0]  # (Hd, T, T), class tokens first
        expect = a[:, :2, 2:].mean(0).view(2, 4, 4)
        assert torch.allclose(out["cross"][0, k, 0], expect, atol=1e-6)
    assert all(blk.attn.last_attn is None for blk in m.vit.blocks)  # weights not kept


def test_cross_each_head_is_the_papers_ca_tensor():
    """Paper Sec. 3.1: CA in R^{K x H x N x N x C}, one class-to-patch map per layer and head;
    the release reads attn_weights[:, :, 8:10] (b, head, layer, C, n, m) per head."""
    m = _model(2).eval()
    seen = []
    hooks = [blk.attn.register_forward_hook(lambda mod, i, o: seen.append(mod.last_attn.clone()))
             for blk in m.vit.blocks]
    with torch.no_grad():
        out = m(torch.randn(1, 3, 32, 32), with_cross=True, cross_heads="each")
    for h in hooks:
        h.remove()
    assert out["cross"].shape == (1, len(m.cross_layers), m.num_heads, 2, 4, 4)
    for k, layer in enumerate(m.cross_layers):
        for head in range(m.num_heads):
            expect = seen[layer][0, head, :2, 2:].view(2, 4, 4)  # rows: class tokens
            assert torch.allclose(out["cross"][0, k, head], expect, atol=1e-6)
    # each head's map sums to at most 1 over patches (a softmax row restricted to patches)
    assert (out["cross"].flatten(-2).sum(-1) <= 1 + 1e-5).all()
    with pytest.raises(ValueError):
        m(torch.randn(1, 3, 32, 32), with_cross=True, cross_heads="max")


def test_bad_arguments_and_checkpoint(tmp_path):
    with pytest.raises(ValueError):
        CluesViT(num_classes=2, **{**TINY, "cross_layers": [5]})
    m = _model(2)
    with pytest.raises(InputError, match="missing.pth"):
        m.load_deit_checkpoint(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"foo": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="bad.pth"):
        m.load_deit_checkpoint(bad)


def test_deit_checkpoint_roundtrip(tmp_path):
    # a DeiT-style state dict: 1 class token, pos_embed with a class entry, patch grid 2 x 2
    src = CluesViT(num_classes=2, **{**TINY, "img_size": 16})
    sd = {k: v.clone() for k, v in src.vit.state_dict().items()}
    cls = torch.randn(1, 1, 32)
    sd["pos_embed"] = torch.cat([torch.randn(1, 1, 32), sd["pos_embed"]], dim=1)
    sd["cls_token"] = cls
    sd["head.weight"] = torch.zeros(1000, 32)
    path = tmp_path / "deit.pth"
    torch.save({"model": sd}, path)
    dst = _model(2)  # 4 x 4 grid: positions are resampled
    dst.load_deit_checkpoint(path)
    assert torch.equal(dst.cls_tokens[0, 1], cls[0, 0])
    assert torch.equal(dst.vit.blocks[0].attn.qkv.weight, src.vit.blocks[0].attn.qkv.weight)
    assert dst.vit.pos_embed.shape == (1, 16, 32)


def test_conv_stem_same_grid_and_bad_patch():
    torch.manual_seed(0)
    m = CluesViT(num_classes=2, **{**TINY, "stem": "conv"})
    out = m(torch.randn(1, 3, 32, 40), with_cross=True)
    assert out["cam_fine"].shape == (1, 2, 4, 5)
    convs = [x for x in m.vit.patch_embed.proj if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) == 3 and convs[-1].out_channels == 32  # 2^3 = patch 8
    with pytest.raises(ValueError):
        CluesViT(num_classes=2, **{**TINY, "patch_size": 6, "img_size": 36, "stem": "conv"})
    with pytest.raises(ValueError):
        CluesViT(num_classes=2, **{**TINY, "stem": "resnet"})
