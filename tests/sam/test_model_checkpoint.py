"""Small SAM build and checkpoint loading (weaksam/sam/model.py, weaksam/sam/checkpoint.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from segment_anything import sam_model_registry

from tests.sam.tiny import TINY_SAM_DEPTH2
from weaksam.errors import InputError
from weaksam.sam.checkpoint import load_sam, save_small_sam
from weaksam.sam.model import build_small_sam, count_parameters

TINY = TINY_SAM_DEPTH2


def test_small_sam_shapes():
    sam = build_small_sam(TINY)
    x = torch.zeros(2, 3, 64, 64)
    emb = sam.image_encoder(x)
    assert emb.shape == (2, 32, 8, 8)  # (B, prompt_dim, img/patch, img/patch)
    pts = (torch.tensor([[[10.0, 20.0]]]), torch.ones(1, 1, dtype=torch.int))
    sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
    masks, iou = sam.mask_decoder(emb[:1], sam.prompt_encoder.get_dense_pe(), sparse, dense,
                                  multimask_output=True)
    assert masks.shape == (1, 3, 32, 32) and iou.shape == (1, 3)  # low-res = 4 x embedding


def test_small_sam_rejects_bad_sizes():
    with pytest.raises(ValueError):
        build_small_sam(replace(TINY, img_size=100, patch_size=8))
    with pytest.raises(ValueError):
        build_small_sam(replace(TINY, prompt_dim=60))
    with pytest.raises(ValueError, match="stem"):
        build_small_sam(replace(TINY, stem="resnet"))


def test_conv_stem_same_tokens_and_roundtrip(tmp_path):
    cfg = replace(TINY, stem="conv")
    torch.manual_seed(2)
    sam = build_small_sam(cfg)
    assert isinstance(sam.image_encoder.patch_embed.proj, torch.nn.Sequential)
    x = torch.rand(1, 3, 64, 64)
    assert sam.image_encoder(x).shape == (1, 32, 8, 8)  # the same grid as the linear patch
    save_small_sam(tmp_path / "c.pt", sam, cfg)
    back = load_sam("small", tmp_path / "c.pt")  # the stem comes from the stored config
    assert torch.equal(back.image_encoder(x), sam.image_encoder(x))


def test_small_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    sam = build_small_sam(TINY)
    save_small_sam(tmp_path / "s.pt", sam, TINY)
    back = load_sam("small", tmp_path / "s.pt")
    a, b = sam.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert count_parameters(back) == count_parameters(sam)


def test_small_checkpoint_config_must_name_every_field(tmp_path):
    # the architecture has no defaults: a stored config without a field names the file
    sam = build_small_sam(TINY)
    save_small_sam(tmp_path / "s.pt", sam, TINY)
    obj = torch.load(tmp_path / "s.pt")
    del obj["config"]["stem"]
    torch.save(obj, tmp_path / "old.pt")
    with pytest.raises(InputError, match="old.pt.*stem"):
        load_sam("small", tmp_path / "old.pt")


def test_official_layout_loads_through_registry(tmp_path):
    # vit_b with random weights from the registry's own builder, saved as a bare state dict
    # like sam_vit_b_01ec64.pth, loaded through load_sam and compared tensor by tensor.
    torch.manual_seed(2)
    ref = sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(ref.state_dict(), path)
    sam = load_sam("vit_b", path)
    assert sam.image_encoder.img_size == 1024
    a, b = ref.state_dict(), sam.state_dict()
    for k in ("image_encoder.patch_embed.proj.weight", "image_encoder.blocks.11.mlp.lin2.bias",
              "mask_decoder.iou_prediction_head.layers.2.weight"):
        assert torch.equal(a[k], b[k])
    assert not sam.training
    # the same file is not a vit_l, nor a small SAM: errors name the file
    with pytest.raises(InputError, match="sam_vit_b_random.pth"):
        load_sam("vit_l", path)
    with pytest.raises(InputError, match="small-SAM"):
        load_sam("small", path)


def test_missing_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_sam("small", tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_sam("vit_b", bad)
    with pytest.raises(ValueError):
        load_sam("vit_x", bad)
