"""Sharded proposal generation (weaksam/proposals/shard.py): same bytes with 1 or 2 workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.sam.tiny import TINY_SAM
from weaksam.proposals.sam import PromptingConfig
from weaksam.proposals.shard import ImageTask, SamSpec, generate, merge, shard
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
