"""torch.distributed (gloo, CPU, 2 processes) trains the CAM network (issue 22): every rank
augments the whole global batch from the same generator, trains on its share ``r::2`` with its
BCE weighted by the share, and the gradients are summed over the ranks.

The BCE is a mean over the batch's images and classes, so two processes take the one-process
step up to the order of float additions. After two epochs (6 AdamW steps of 4, 4 and 1 images,
so one step leaves rank 1 without an image, lr 1e-3) measured: weights within 4.8e-6 absolute,
epoch losses within 2.5e-8 relative. Tolerances: weights 1e-4 absolute (Adam's per-element
normalisation turns float noise in a near-zero gradient into a step of either sign), losses and
held-out mAP 1e-6 relative. Without the share weighting (each rank's mean BCE summed) the
weights differ by 1e-3 and the losses by 1.8e-4: both checks fail. The replicas stay
bit-identical, a given process count repeats bit for bit, and only rank 0 evaluates and writes
the checkpoint.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.clues.test_train import TINY, _data
from tests.distributed import run_gloo
from weaksam.clues.model import CluesViT
from weaksam.clues.train import CluesTrainConfig, fit

CFG = CluesTrainConfig(epochs=2, batch_size=4, lr=1e-3, weight_decay=0.05, warmup_epochs=1,
                       shift=2, seed=0)


def _run(out: Path, ckpt: Path) -> None:
    """Train; each rank is given its own checkpoint path ``<ckpt>.<rank>`` and writes its model
    and history to ``<out>.<rank>.pt``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CluesViT(num_classes=3, **TINY)
    x, y = _data()
    rank = dist.get_rank() if dist.is_initialized() else 0
    hist = fit(model, x[:9], y[:9], x[9:], y[9:], CFG, checkpoint=ckpt.with_suffix(f".{rank}"),
               fingerprint="fp")
    out.with_suffix(f".{rank}.pt").write_bytes(_bytes({"model": model.state_dict(),
                                                        "history": hist}))


def _spawn(tmp_path: Path, tag: str) -> None:
    run_gloo(_run, tmp_path / tag, tmp_path / f"{tag}.ckpt", tmp=tmp_path)


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def _bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.slow
def test_two_gloo_processes_take_the_one_process_step_and_repeat(tmp_path):
    _run(tmp_path / "one", tmp_path / "one.ckpt")
    _spawn(tmp_path, "two")
    _spawn(tmp_path, "again")
    one, two0, two1 = (_load(tmp_path / f) for f in ("one.0.pt", "two.0.pt", "two.1.pt"))
    assert (tmp_path / "two.0.pt").read_bytes() == (tmp_path / "again.0.pt").read_bytes()
    ck, ck_again = _load(tmp_path / "two.0"), _load(tmp_path / "again.0")
    assert _bytes(ck) == _bytes(ck_again)  # torch.save names its archive after the file
    for k, a in one["model"].items():
        assert torch.equal(two0["model"][k], two1["model"][k]), k  # replicas stay identical
        assert torch.allclose(two0["model"][k], a, rtol=0, atol=1e-4), k
    assert len(two0["history"]) == len(one["history"]) == 2
    for ea, eb in zip(one["history"], two0["history"], strict=True):
        assert set(ea) == set(eb)  # rank 0 evaluates the held-out images
        for k in ea:
            assert eb[k] == pytest.approx(ea[k], rel=1e-6), k
    assert "val_map" not in two1["history"][0]  # the other rank only trains
    assert not (tmp_path / "two.1").exists()  # rank 0 alone writes the checkpoint
    for k, v in ck["model"].items():
        assert torch.equal(v, two0["model"][k]), k
