"""Device plumbing of the WSOD stages (runs on the CPU): the device and DDP backend come from
params, and no tensor of training, inference or backbone pre-training lands elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

import pipeline.wsod as stage
from tests.wsod.conftest import run_wsod, tiny_backbone, tiny_items
from tests.wsod.test_pretrain import _view
from weaksam.wsod.infer import detect_image
from weaksam.wsod.mist import MIST
from weaksam.wsod.pretrain import BackbonePretrainConfig, pretrain_backbone

ROOT = Path(__file__).resolve().parents[2]


class _Devices(TorchDispatchMode):
    """Records the device of every tensor any torch op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.seen.add(t.device.type)
        return out


def _params(runtime: str = "cpu", wsod: str | None = None) -> dict:
    return {"runtime": {"device": runtime}, "wsod": {"device": wsod}}


def test_stage_device_from_runtime_or_the_wsod_override():
    assert stage.stage_device(_params("cpu")) == torch.device("cpu")
    assert stage.stage_device(_params("cuda:0", wsod="cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            stage.stage_device(_params("cpu", wsod="cuda"))


def test_ddp_backend_follows_the_stage_device_not_the_machine(monkeypatch):
    calls: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # CUDA present ...
    assert stage.join_process_group(torch.device("cpu")) == 1  # ... CPU tensors: gloo
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(str(d)))
    assert stage.join_process_group(torch.device("cuda", 1)) == 1
    assert calls == ["gloo", "cuda:1", "nccl"]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert stage.join_process_group(torch.device("cpu")) == 0 and len(calls) == 3


def test_no_wsod_tensor_leaves_the_named_device(tmp_path):
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="released", cdb_block=2)
    items = tiny_items(4)
    with _Devices() as mode:
        run_wsod(model, items, epochs=1, batch_size=2, lr=1e-2, weight_decay=0.0,
                 optimizer="sgd", train_scales=[32], max_size=64, flip=True, seed=0,
                 schedule="multistep", iterations=2, warmup_iters=1,
                 cdb_adversary="second_pass", device=torch.device("cpu"))
        detect_image(model, items[0].pixels, items[0].boxes, scales=[32], max_size=64,
                     flip=True, nms_iou=0.3, score_thresh=0.0, max_det=10)
        cfg = BackbonePretrainConfig(widths=(4, 8), stem=4, convs=1, pool="avg",
                                     image_size=16, min_crop=1.0, epochs=1, batch_size=8,
                                     lr=1e-2, weight_decay=0.0)
        pretrain_backbone(_view(tmp_path), cfg, seed=0, device="cpu")
    assert mode.seen == {"cpu"}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_wsod_code_never_picks_a_device_itself():
    files = [*sorted((ROOT / "weaksam" / "wsod").glob("*.py")), ROOT / "pipeline" / "wsod.py",
             ROOT / "pipeline" / "backbone_pretrain.py"]
    # checks of the device it was given (device.type == "cuda") are fine; choosing one is not
    pattern = re.compile(r"\.cuda\(|cuda\.is_available|device\([\"']cuda|to\([\"']cuda"
                         r"|device=[\"']cuda")
    hits = [f"{f.name}: {line.strip()}" for f in files
            for line in f.read_text().splitlines() if pattern.search(line)]
    assert hits == []
