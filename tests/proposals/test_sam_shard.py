"""Sharded proposal generation (weaksam/proposals/shard.py): same bytes with 1 or 2 workers."""

from __future__ import annotations

import concurrent.futures as cf
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.sam.tiny import TINY_SAM
from weaksam.proposals import shard as shard_mod
from weaksam.proposals.sam import PromptingConfig
from weaksam.proposals.shard import (
    ImageTask,
    SamSpec,
    generate,
    merge,
    shard,
    worker_devices,
)
from weaksam.proposals.store import ImageProposals, load_proposals, save_proposals
from weaksam.sam.checkpoint import save_small_sam
from weaksam.sam.model import build_small_sam

TINY = TINY_SAM


def test_shard_round_robin():
    assert shard(7, 0, 2) == [0, 2, 4, 6]
    assert shard(7, 1, 2) == [1, 3, 5]
    assert sorted(shard(5, 0, 3) + shard(5, 1, 3) + shard(5, 2, 3)) == list(range(5))
    with pytest.raises(ValueError):
        shard(3, 2, 2)


def test_merge_orders_and_detects_missing():
    e = ImageProposals.empty()
    out = merge([{3: e}, {1: e, 2: e}], [1, 2, 3])
    assert list(out.images) == [1, 2, 3]
    with pytest.raises(RuntimeError):
        merge([{1: e}], [1, 2])


@pytest.mark.slow
def test_one_and_two_workers_give_same_bytes(tmp_path):
    torch.manual_seed(0)
    sam = build_small_sam(TINY)
    with torch.no_grad():
        for p in sam.mask_decoder.parameters():
            p.mul_(3.0)
    ckpt = tmp_path / "sam.pt"
    save_small_sam(ckpt, sam, TINY)
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(5):
        h, w = int(rng.integers(40, 60)), int(rng.integers(40, 60))
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        n = 0 if i == 2 else 9  # image 2 has no prompts
        pts = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1).astype(np.float32)
        tasks.append(ImageTask(100 + i, str(path), pts, rng.integers(0, 4, n).astype(np.uint8),
                               np.full(n, -1)))
    spec = SamSpec("small", str(ckpt))
    cfg = PromptingConfig(batch_size=4)
    one = generate(tasks, spec, cfg, workers=1)
    two = generate(tasks, spec, cfg, workers=2)
    save_proposals(tmp_path / "one.npz", one)
    save_proposals(tmp_path / "two.npz", two)
    # every array identical (the .npz zip headers also carry a write timestamp, see report)
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a.files == b.files
        for k in a.files:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    back = load_proposals(tmp_path / "one.npz")
    assert list(back.images) == [100, 101, 102, 103, 104]
    assert len(back.images[102]) == 0 and len(back.images[100]) > 0
    assert back.source_names == ["dense", "cam_fine", "cam_coarse", "cross"]


def test_worker_devices_one_sam_per_card(monkeypatch, caplog):
    """runtime.workers 4 with device cuda (the paper profiles): never two SAM copies on a card."""
    assert worker_devices("cpu", 4) == ["cpu"] * 4
    assert worker_devices("cpu", 0) == ["cpu"]
    for gpus, expect in ((0, ["cuda"]), (1, ["cuda"]), (2, ["cuda:0", "cuda:1"]),
                         (8, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"])):
        monkeypatch.setattr(torch.cuda, "device_count", lambda n=gpus: n)
        assert worker_devices("cuda", 4) == expect, gpus
    assert worker_devices("cuda:1", 4) == ["cuda:1"]  # one named card: one process
    assert worker_devices("cuda", 1) == ["cuda"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with caplog.at_level(logging.INFO, logger="weaksam.proposals.shard"):
        worker_devices("cuda", 4)
    assert "1 process(es) instead of runtime.workers 4 (1 CUDA device(s) visible" in caplog.text


class _InlinePool:
    """A ProcessPoolExecutor stand-in that runs each job at submit, in this process."""

    def __init__(self, workers, mp_context=None):
        self.workers = workers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        f = cf.Future()
        f.set_result(fn(*args))
        return f


@pytest.mark.parametrize("gpus", [1, 2])
def test_generate_on_cuda_starts_one_process_per_gpu(monkeypatch, gpus):
    calls = []

    def fake_run_shard(tasks, rank, world, spec, config):
        calls.append((rank, world, spec.device))
        return {tasks[i].image_id: ImageProposals.empty() for i in shard(len(tasks), rank, world)}

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(shard_mod, "run_shard", fake_run_shard)
    monkeypatch.setattr(shard_mod.cf, "ProcessPoolExecutor", _InlinePool)
    tasks = [ImageTask(i, f"{i}.png", np.zeros((0, 2), np.float32), np.zeros(0, np.uint8),
                       np.zeros(0, np.int64)) for i in range(6)]
    out = generate(tasks, SamSpec("vit_h", "sam.pth", "cuda"), PromptingConfig(), workers=4)
    assert list(out.images) == list(range(6))
    expect = [(0, 1, "cuda")] if gpus == 1 else [(0, 2, "cuda:0"), (1, 2, "cuda:1")]
    assert calls == expect
