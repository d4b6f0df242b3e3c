"""FLOP counts of weaksam.dryrun.flops against analytic counts (2 FLOPs per multiply-add)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from torch import nn

from weaksam.dryrun import flops as F


def test_conv_flops_equal_the_analytic_count():
    conv = F.on_meta(lambda: nn.Conv2d(3, 8, kernel_size=3, padding=1))
    # 8 output channels x 10 x 12 outputs, each 3 x 3 x 3 multiply-adds
    assert F.count_flops(conv, F.meta(1, 3, 10, 12)) == 2 * 8 * 10 * 12 * 27


def test_linear_flops_equal_the_analytic_count():
    fc = F.on_meta(lambda: nn.Linear(5, 7))
    assert F.count_flops(fc, F.meta(4, 5)) == 2 * 4 * 5 * 7


def test_vgg16_trunk_at_224_matches_the_known_count():
    # VGG16's 13 convolutions at 224 px: 15.35 G multiply-adds (the often-quoted 15.5 GMAC
    # adds the three FC layers, 0.12 G), i.e. ~30.9 GFLOP at 2 FLOPs per multiply-add
    g = F.vgg16_trunk_gflops((224, 224))
    assert g == pytest.approx(30.9, rel=0.03)
    # conv5 at stride 8 (dilated, pool4 removed) sees 4x the cells of stride 16
    assert F.vgg16_trunk_gflops((224, 224), dilated=True) > g


def test_wsod_head_flops_equal_the_analytic_count():
    r, h, c, k, s = 10, 64, 20, 3, 7
    got = F.wsod_head_gflops("oicr", c, r, roi_size=s, hidden=h, refine_times=k) * 1e9
    # fc6 (512 s^2 -> H), fc7 (H -> H), WSDDN cls + det (H -> C each), K refine (H -> C + 1)
    macs = r * (512 * s * s * h + h * h + h * (2 * c + k * (c + 1)))
    assert got == pytest.approx(2 * macs)
    mist = F.wsod_head_gflops("mist", c, r, roi_size=s, hidden=h, refine_times=k) * 1e9
    assert mist == pytest.approx(got + 2 * r * h * k * 4 * (c + 1))  # + K box regressors


def test_sam_decoder_flops_are_per_prompt():
    assert F.sam_decoder_gflops("vit_b", prompts=2) == pytest.approx(
        F.sam_decoder_gflops("vit_b", prompts=4))


def test_small_sam_flops_come_from_the_params_architecture():
    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    small = params["sam_pretrain"]["model"]
    enc = F.sam_encoder_gflops("small", small)
    assert 0 < enc < F.sam_encoder_gflops("vit_b")
    assert F.sam_decoder_gflops("small", small=small) > 0
    with pytest.raises(ValueError, match="architecture"):
        F.sam_encoder_gflops("small")


def test_rescaled_hw_follows_short_side_and_max_size():
    assert F.rescaled_hw((375, 500), 480, 2000) == (480, 640)
    assert F.rescaled_hw((375, 500), 1200, 1333) == (1000, 1333)
