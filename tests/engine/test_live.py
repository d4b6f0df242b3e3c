"""The DVCLive hook: curves and summary written on rank 0 only, the step rules of the stages."""

from __future__ import annotations

import json

import pytest

from weaksam.engine.live import LiveHook


def test_epoch_curves_resume_and_summary(tmp_path):
    with LiveHook(tmp_path, rank=0) as live:
        live(0, {"loss": 0.5, "lr": 0.1})
        live(1, {"loss": float("nan"), "lr": 0.05})
    with LiveHook(tmp_path, resume=True, rank=0) as live:
        live(2, {"loss": 0.25, "lr": 0.01})
    curve = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    assert curve.read_text() == "step\tloss\n0\t0.5\n1\tnan\n2\t0.25\n"
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary == {"train": {"loss": 0.25, "lr": 0.01}, "step": 2}


def test_names_offset_float_and_own_counter(tmp_path):
    live = LiveHook(tmp_path / "a", names={"val_map": "val/map"}, step_offset=-1, as_float=True,
                    rank=0)
    live(1, {"loss": 1, "val_map": 12})  # 1-based epochs, ints logged as floats
    live.close()
    live.close()  # idempotent
    assert (tmp_path / "a/plots/metrics/val/map.tsv").read_text() == "step\tmap\n0\t12.0\n"
    assert (tmp_path / "a/plots/metrics/train/loss.tsv").read_text() == "step\tloss\n0\t1.0\n"
    live = LiveHook(tmp_path / "b", prefix="", step_offset=None, rank=0)
    for epoch in (5, 9):  # the Live's own counter: 0, 1
        live(epoch, {"loss": 0.5})
    live.close()
    assert (tmp_path / "b/plots/metrics/loss.tsv").read_text() == "step\tloss\n0\t0.5\n1\t0.5\n"


def test_logged_steps_without_summary(tmp_path):
    with LiveHook(tmp_path, next_step=False, summary=False, rank=0) as live:
        live(10, {"loss": 2.0})
        live(20, {"loss": 1.0})
    assert (tmp_path / "plots/metrics/train/loss.tsv").read_text() == \
        "step\tloss\n10\t2.0\n20\t1.0\n"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"step": 20}


def test_a_failed_run_keeps_its_last_values(tmp_path):
    with pytest.raises(RuntimeError), LiveHook(tmp_path, next_step=False, summary=False,
                                              rank=0) as live:
        live(3, {"loss": 2.0})
        raise RuntimeError("boom")
    assert json.loads((tmp_path / "metrics.json").read_text())["train"] == {"loss": 2.0}


def test_other_ranks_write_nothing(tmp_path):
    with LiveHook(tmp_path / "r1", rank=1) as live:
        live(0, {"loss": 1.0})
    assert not (tmp_path / "r1").exists()
