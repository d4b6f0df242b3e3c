"""Data-parallel pre-training of the small SAM (weaksam/sam/train.py, pipeline/sam_pretrain.py
through pipeline.launch): two gloo processes, each on half of a step's images, compute the
one-process step.

Tolerance: relative 1e-5 on gradients and losses (weights after 3 AdamW steps: see the
test). Each process draws exactly the images and prompts of its block (per-image generators)
and the gradients are summed then divided by the step's prompt count, so the only difference is
the order of float32 additions (two partial sums plus an all-reduce against one sum; batched
matrix products over 2 images instead of 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

from tests.distributed import run_gloo
from tests.sam.tiny import TINY_SAM
from weaksam.sam.model import build_small_sam
from weaksam.sam.train import PretrainConfig, batch_losses, pretrain, shard, step_batch

ROOT = Path(__file__).resolve().parents[2]
CFG = PretrainConfig(steps=3, batch_images=4, prompts_per_image=5, warmup_steps=1, lr=3e-3,
                     corpus_seed=11)


def _fresh_sam():
    torch.manual_seed(0)
    return build_small_sam(TINY_SAM)


def _run(rank: int, world: int) -> dict | None:
    """Step 0's gradients, then a 3-step run: its logged losses and final weights (rank 0)."""
    from weaksam.sam.train import step_gradients

    torch.set_num_threads(1)
    sam = _fresh_sam().train()
    vals = step_gradients(sam, CFG, 0, rank, world)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in sam.named_parameters()}
    curve: list[dict] = []
    sam = _fresh_sam()
    pretrain(sam, CFG, on_step=lambda s, v: curve.append(v), log_every=1)  # rank, W: world()
    if rank != 0:
        return None
    return {"step0": vals, "grads": grads, "curve": curve, "state": sam.state_dict()}


def _ranked() -> dict | None:
    """:func:`_run` on this process of the gloo group."""
    return _run(dist.get_rank(), dist.get_world_size())


def _two(tmp_path: Path) -> dict:
    first, other = run_gloo(_ranked, tmp=tmp_path)
    assert other is None
    return first


def test_shards_cover_the_step_once():
    for n, w in ((4, 2), (5, 2), (7, 3), (4, 1)):
        blocks = [list(shard(n, r, w)) for r in range(w)]
        assert sum(blocks, []) == list(range(n))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    # the union of the two blocks' samples and generators is the one-process batch
    s1, g1 = step_batch(CFG, 2, 64)
    s2 = step_batch(CFG, 2, 64, 0, 2)[0] + step_batch(CFG, 2, 64, 1, 2)[0]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(s1, s2, strict=True))
    assert [g.random() for g in g1] == [np.random.default_rng([11, 2, b]).random()
                                        for b in range(4)]


def test_step_gradients_one_process_equal_batch_losses():
    # the sum-then-divide step is the mean loss of batch_losses on the same draws
    torch.set_num_threads(1)
    sam = _fresh_sam().train()
    samples, rngs = step_batch(CFG, 0, 64)
    out = batch_losses(sam, samples, rngs, CFG)
    out["loss"].backward()
    ref = {n: p.grad.clone() for n, p in sam.named_parameters() if p.grad is not None}
    from weaksam.sam.train import step_gradients

    vals = step_gradients(sam, CFG, 0)
    assert vals["loss"] == pytest.approx(out["loss"].item(), rel=1e-6)
    assert vals["prompts"] == len(out["mask"]) == 20
    got = {n: p.grad for n, p in sam.named_parameters() if p.grad is not None}
    assert got.keys() == ref.keys()
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-5, atol=1e-7), n


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    one = _run(0, 1)
    two = _two(tmp_path)
    for k in ("loss", "loss_mask", "loss_iou", "train_miou", "prompts"):
        assert two["step0"][k] == pytest.approx(one["step0"][k], rel=1e-5, abs=1e-7), k
    assert one["grads"].keys() == two["grads"].keys()
    for n, g in one["grads"].items():
        if g is None:  # no process had a gradient for it (mask prompts are never trained)
            assert two["grads"][n] is None, n
            continue
        assert torch.allclose(two["grads"][n], g, rtol=1e-5, atol=1e-7), n
    assert len(one["curve"]) == len(two["curve"]) == CFG.steps
    for a, b in zip(one["curve"], two["curve"], strict=True):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k
    # weights: the key biases of every attention get a gradient that is zero up to float noise
    # (softmax ignores a shift of all keys), ~1e-10, which Adam's normalisation turns into steps
    # of any sign; 1e-4 absolute (lr 3e-3, 3 steps) bounds that, every other weight is far closer
    for n, w in one["state"].items():
        assert torch.allclose(two["state"][n], w, rtol=1e-4, atol=1e-4), n


def _stage(workdir: Path, params: dict) -> str:
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WEAKSAM_LOGLEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "pipeline.launch",
                    str(params["runtime"]["nproc"]["sam_pretrain"]), "-m", "pipeline.sam_pretrain"],
                   cwd=workdir, env=env, check=True, timeout=600)
    return hashlib.md5((workdir / "models/sam_small.pt").read_bytes()).hexdigest()


@pytest.mark.slow
def test_stage_two_processes_same_checkpoint_bytes(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"].update(threads=2, device="cpu")
    params["sam"]["device"] = None
    sp = params["sam_pretrain"]
    params["runtime"]["nproc"]["sam_pretrain"] = 2
    sp.update(eval_images=2, log_every=1)
    sp["model"] = asdict(TINY_SAM)
    sp["train"].update(steps=3, batch_images=4, prompts_per_image=4, warmup_steps=1)
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs.append(_stage(tmp_path / name, params))
    assert runs[0] == runs[1]
    metrics = json.loads((tmp_path / "a/metrics/sam_pretrain.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 3
    assert metrics["processes_param"] == "2"


class _Stop(Exception):
    """Stands for a killed run."""


def _resume_worker(folder: str, kill_at: int) -> dict | None:
    """A 5-step run with a checkpoint every 2 steps in ``folder``, stopped on every rank after
    logging step ``kill_at`` (0: never); a finished run returns its curve, weights and the
    steps it computed (None when stopped)."""
    from weaksam.sam import train as train_mod

    torch.set_num_threads(1)
    sam = _fresh_sam()
    curve: list = []
    trained: list[int] = []  # the steps this run computes
    step_loss = train_mod.step_loss
    train_mod.step_loss = lambda s, c, step, *a: (trained.append(step),
                                                  step_loss(s, c, step, *a))[1]

    def on_step(step: int, values: dict) -> None:
        curve.append((step, values))
        if step == kill_at:
            raise _Stop

    try:
        pretrain(sam, replace(CFG, steps=5), on_step=on_step, log_every=1,
                 checkpoint=Path(folder) / "ck.pt", fingerprint="f", checkpoint_every=2)
    except _Stop:
        return None
    return {"curve": curve, "state": sam.state_dict(), "trained": trained}


@pytest.mark.slow
def test_two_processes_resumed_equal_unbroken(tmp_path):
    out = {}
    for name, kill_at in (("u", 0), ("k", 3), ("k", 0)):  # unbroken; killed, then resumed
        (tmp_path / name).mkdir(exist_ok=True)
        ranks = run_gloo(_resume_worker, str(tmp_path / name), kill_at, tmp=tmp_path)
        if kill_at:
            assert torch.load(tmp_path / "k/ck.pt")["step"] == 2
            assert ranks == [None, None]
        else:
            out[name] = ranks[0]
    u, k = out["u"], out["k"]
    assert [s for s, _ in k["curve"]] == [1, 2, 3, 4, 5]  # steps 1, 2 replayed from ck.pt
    assert k["trained"] == [2, 3, 4] and u["trained"] == [0, 1, 2, 3, 4]
    assert k["curve"] == u["curve"]
    assert u["state"].keys() == k["state"].keys()
    assert all(torch.equal(u["state"][n], k["state"][n]) for n in u["state"])
