"""torch.distributed (gloo, CPU, 2 processes) trains the WSIS models (issue 22): each rank takes
its share of every global batch and the gradients are summed over the ranks.

One process and two differ only in how the models normalise their losses inside a batch
(Mask R-CNN's RPN and RoI losses are means over the batch's sampled anchors / RoIs, here over
each rank's part), in the random anchor / RoI samples each process draws, and in float
summation order: the epoch losses agree within 15 % (a wrong share weighting would double
them); a given process count repeats bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.distributed import run_gloo
from tests.wsis.conftest import schedule
from tests.wsis.test_models import _mask_rcnn, _views, make_toy
from weaksam.wsis.train import train_instance_model

SCHEDULE = schedule(epochs=1, seed=3)


def _run(out: Path, ckpt: Path) -> None:
    torch.set_num_threads(1)
    toy = make_toy()
    views = _views(toy, [-1], flips=(False, True))  # 8 views: batches of 3, 3, 2
    model = _mask_rcnn(toy[0])
    curve: list[dict] = []
    train_instance_model(model, views, SCHEDULE, checkpoint=ckpt, fingerprint="fp",
                         on_epoch=lambda e, m: curve.append(m))
    rank = dist.get_rank() if dist.is_initialized() else 0
    w = [v for p in model.parameters() if p.requires_grad for v in p.flatten()[:4].tolist()]
    out.with_suffix(f".{rank}.json").write_text(json.dumps({"curve": curve, "w": w}))


def _spawn(tmp_path: Path, tag: str) -> None:
    run_gloo(_run, tmp_path / tag, tmp_path / f"{tag}.pt", tmp=tmp_path)


@pytest.mark.slow
def test_two_gloo_processes_follow_one_and_repeat(tmp_path):
    _run(tmp_path / "one", tmp_path / "one.pt")
    _spawn(tmp_path, "two")
    _spawn(tmp_path, "again")
    a = json.loads((tmp_path / "one.0.json").read_text())
    b0 = json.loads((tmp_path / "two.0.json").read_text())
    b1 = json.loads((tmp_path / "two.1.json").read_text())
    assert b0["w"] == b1["w"]  # the replicas stay identical
    assert (tmp_path / "two.0.json").read_text() == (tmp_path / "again.0.json").read_text()
    assert (tmp_path / "two.pt").is_file()  # rank 0 wrote the checkpoint
    for ea, eb in zip(a["curve"], b0["curve"], strict=True):
        assert set(ea) == set(eb)
        for k in ea:
            assert eb[k] == pytest.approx(ea[k], rel=0.15, abs=1e-3), k  # not 2x: shares weighted
