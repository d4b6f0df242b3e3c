"""torch.distributed (gloo, CPU, 2 processes) trains the retraining detector as one process does
with the same global batch.

Each process gets the images ``b[rank::2]`` of every global batch with the random draws of one
process (flip, anchor and RoI sampling from per-image generators), and its loss is scaled by
2 x b_local / B, so DDP's gradient average is the one-process gradient when every image gives
the same number of sampled anchors and RoIs (true here: 32 anchors and 16 RoIs per image).
Tolerance: float32 summation order (all-reduce vs one sum), amplified a little by SGD momentum.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.retrain.conftest import tiny_frcnn, tiny_pgt, tiny_schedule, tiny_store
from weaksam.retrain.data import FeatureSource
from weaksam.retrain.train import train_detector

KW = tiny_schedule(seed=3)


def _run(out: Path, ckpt: Path) -> None:
    torch.set_num_threads(1)
    model = tiny_frcnn()
    curve: list[dict] = []
    train_detector(model, FeatureSource(tiny_store(8), tiny_pgt(8), flip=True), KW, checkpoint=ckpt,
                   on_epoch=lambda e, m: curve.append(m))
    rank = dist.get_rank() if dist.is_initialized() else 0
    w = model.roi_heads.box_predictor.cls_score.weight.flatten()[:20].tolist()
    out.with_suffix(f".{rank}.json").write_text(json.dumps({"curve": curve, "w": w}))


def _worker(rank: int, world: int, init_file: str, out: str, ckpt: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        _run(Path(out), Path(ckpt))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    _run(tmp_path / "one", tmp_path / "one.pt")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "two"),
                            str(tmp_path / "two.pt")), nprocs=2, join=True)
    a = json.loads((tmp_path / "one.0.json").read_text())
    b0 = json.loads((tmp_path / "two.0.json").read_text())
    b1 = json.loads((tmp_path / "two.1.json").read_text())
    assert b0["w"] == b1["w"]  # DDP keeps the replicas identical
    assert len(a["curve"]) == len(b0["curve"]) == 2
    for ea, eb in zip(a["curve"], b0["curve"], strict=True):
        assert set(ea) == set(eb)
        for k in ea:
            assert eb[k] == pytest.approx(ea[k], rel=1e-4, abs=1e-6), k
    assert b0["w"] == pytest.approx(a["w"], rel=1e-3, abs=1e-5)
    assert (tmp_path / "two.pt").is_file()  # rank 0 wrote the checkpoint


@pytest.mark.slow
def test_two_gloo_processes_repeat_bit_for_bit(tmp_path):
    """A given process count gives the same bytes run after run (issue 22: the default profile
    retrains with 2 processes)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for i in range(2):
        mp.spawn(_worker, args=(2, str(tmp_path / f"init{i}"), str(tmp_path / f"two{i}"),
                                str(tmp_path / f"two{i}.pt")), nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"two0.{rank}.json").read_text() \
            == (tmp_path / f"two1.{rank}.json").read_text()
