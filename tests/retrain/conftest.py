"""Tiny hand-built retraining inputs: a feature store of 8-channel maps and PGT targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from weaksam.retrain.data import PgtTargets
from weaksam.retrain.features import FeatureStore
from weaksam.retrain.frcnn import FrcnnConfig, build_frcnn
from weaksam.retrain.roi_drop import RoiDropConfig
from weaksam.retrain.train import DetectorTrainConfig

STRIDE = 4
# Eq. 1 with the paper's thresholds and torchvision's beta (the tiny tests' drop)
DROP = RoiDropConfig(tau_cls=4.0, tau_reg=1.0, normalize="none", rule="either",
                     smooth_l1_beta=1.0 / 9.0)


def tiny_store(n: int = 6, channels: int = 8, size: int = 32, seed: int = 0) -> FeatureStore:
    """``n`` images of size x size px (factor 1), maps (channels, size/4, size/4) with a bright
    channel where a 12 x 12 px object sits, plus their flipped maps."""
    g = torch.Generator().manual_seed(seed)
    maps, flips = [], []
    for i in range(n):
        m = torch.randn(channels, size // STRIDE, size // STRIDE, generator=g) * 0.1
        c = i % 3
        m[c, 1:4, 1:4] += 3.0  # object at px (4, 4, 16, 16)
        maps.append(m.half())
        flips.append(m.flip(-1).half())
    return FeatureStore(list(range(1, n + 1)), [(size, size)] * n, [1.0] * n, maps, flips,
                        {"stride": STRIDE})


def tiny_pgt(n: int = 6, empty: tuple[int, ...] = ()) -> PgtTargets:
    """One 12 x 12 px box per image, class (i % 3) + 1; images in ``empty`` have none."""
    boxes, labels = {}, {}
    for i in range(n):
        iid = i + 1
        if iid in empty:
            boxes[iid], labels[iid] = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        else:
            boxes[iid] = np.array([[4.0, 4.0, 16.0, 16.0]], np.float32)
            labels[iid] = np.array([i % 3 + 1], np.int64)
    return PgtTargets(Path("pgt.json"), [1, 2, 3], boxes, labels)


def tiny_schedule(**kw) -> DetectorTrainConfig:
    """A short SGD schedule (no warm-up, no milestones, no clipping); ``kw`` overrides."""
    base = dict(epochs=2, batch_size=4, lr=0.01, optimizer="sgd", momentum=0.9,
                weight_decay=1e-4, warmup_iters=0, warmup_factor=0.001, lr_steps=(), gamma=0.1,
                grad_clip=0.0, seed=0)
    return DetectorTrainConfig(**{**base, **kw})


def tiny_frcnn(**drop_kw) -> torch.nn.Module:
    """A small Faster R-CNN on 8-channel stride-4 maps; ``drop_kw`` overrides :data:`DROP`."""
    torch.manual_seed(0)
    cfg = FrcnnConfig(anchor_sizes=(8, 16), rpn_pre_nms_train=60, rpn_post_nms_train=30,
                      rpn_pre_nms_test=30, rpn_post_nms_test=20, rpn_batch_per_image=32,
                      roi_size=3, box_head_dim=16, rois_per_image=16)
    return build_frcnn(3, cfg, replace(DROP, **drop_kw), backbone=None, in_channels=8,
                       stride=STRIDE)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
