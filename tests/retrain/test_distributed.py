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
from pathlib import Path

import pytest
import torch

from tests.distributed import run_gloo
from tests.retrain.conftest import tiny_frcnn, tiny_pgt, tiny_schedule, tiny_store
from weaksam.retrain.data import FeatureSource
from weaksam.retrain.train import train_detector

KW = tiny_schedule(seed=3)


def _run(ckpt: Path) -> dict:
    """This rank's curve and first weights."""
    torch.set_num_threads(1)
    model = tiny_frcnn()
    curve: list[dict] = []
    train_detector(model, FeatureSource(tiny_store(8), tiny_pgt(8), flip=True), KW, checkpoint=ckpt,
                   on_epoch=lambda e, m: curve.append(m))
    w = model.roi_heads.box_predictor.cls_score.weight.flatten()[:20].tolist()
    return {"curve": curve, "w": w}


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    a = _run(tmp_path / "one.pt")
    b0, b1 = run_gloo(_run, tmp_path / "two.pt", tmp=tmp_path)
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
    runs = [json.dumps(run_gloo(_run, tmp_path / f"two{i}.pt", tmp=tmp_path)) for i in range(2)]
    assert runs[0] == runs[1]  # both ranks' curves and weights
