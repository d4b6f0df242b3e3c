"""Tiny hand-built inputs shared by the WSOD tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from weaksam.vision.backbones import SmallCNN
from weaksam.wsod.train import TrainImage, WsodTrainConfig, train_wsod

# train_wsod's keyword arguments, not the config's
RUN_KEYS = ("seed", "checkpoint", "state_file", "fingerprint", "resume", "stop_after", "cache",
            "on_epoch", "device")


def run_wsod(model: torch.nn.Module, items: list[TrainImage], **kw: Any) -> dict[str, float]:
    """``train_wsod`` with the :data:`RUN_KEYS` of ``kw`` as its keyword arguments and the
    others as its :class:`WsodTrainConfig` (a missing required field is a TypeError)."""
    run = {k: kw.pop(k) for k in RUN_KEYS if k in kw}
    return train_wsod(model, items, WsodTrainConfig(**kw), **run)


def tiny_backbone() -> SmallCNN:
    """3 -> 4 (stride-2 stem) -> 8 channels, stride 4."""
    torch.manual_seed(0)
    return SmallCNN(widths=(4, 8), stem=4, convs=1)


def tiny_items(n: int = 6, size: int = 32, classes: int = 3, seed: int = 0) -> list[TrainImage]:
    """``n`` random 32 x 32 images, each with one class and 5 proposals (one covers the
    bright square that marks the class)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        c = i % classes
        px = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        x0 = 4 + 6 * c
        px[x0 : x0 + 10, x0 : x0 + 10, c] = 250
        lab = np.zeros(classes, np.float32)
        lab[c] = 1
        boxes = np.array([[x0, x0, x0 + 10, x0 + 10], [0, 0, 16, 16], [16, 16, 32, 32],
                          [0, 16, 16, 32], [x0 - 2, x0 - 2, x0 + 12, x0 + 12]], np.float32)
        items.append(TrainImage(i + 1, px, lab, np.clip(boxes, 0, size)))
    return items


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
