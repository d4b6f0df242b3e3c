"""Ablations as DVC experiments (README, "Ablations"): on the tiny profile, one
``dvc exp run -S`` changes a knob, reruns only the stages it reaches, and its metric is read
back from ``dvc exp show --json``; a queued sweep runs with ``dvc queue start``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.workspace import (
    BIN,
    E2E_TIMEOUT,
    clone_tree,
    dvc,
    git,
    read_json,
    start_daemon,
)


def _exp_records(node: Any) -> Iterator[dict]:
    """Every record of ``dvc exp show --json`` that has a name and data (baseline and
    experiments, at any nesting depth of the format)."""
    if isinstance(node, dict):
        if "data" in node and "rev" in node:
            yield node
        for v in node.values():
            yield from _exp_records(v)
    elif isinstance(node, list):
        for v in node:
            yield from _exp_records(v)


def _metric(record: dict, file: str, key: str) -> Any:
    return record["data"]["metrics"][file]["data"][key]


def _committed_copy(tiny_repro: dict, dst: Path) -> Path:
    ws = clone_tree(tiny_repro["ws"], dst)
    git("add", "-A", cwd=ws)
    git("commit", "-qm", "tiny baseline results", cwd=ws)
    return ws


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_exp_run_set_param_and_read_metric(tiny_repro: dict, tmp_path: Path) -> None:
    ws = _committed_copy(tiny_repro, tmp_path / "ws")
    base = read_json(ws / "metrics" / "recall_ss.json")["num_per_image"]
    assert base > 5, "the ablation below must cut the number of proposals"

    r = dvc("exp", "run", "recall_ss", "-n", "ss-max5", "-S", "proposals_ss.max_per_image=5",
            cwd=ws)
    ran = {ln.split("'")[1] for ln in r.stdout.splitlines() if ln.startswith("Running stage")}
    assert ran == {"proposals_ss", "recall_ss"}, r.stdout  # only what the knob reaches

    shown = json.loads(dvc("exp", "show", "--json", cwd=ws).stdout)
    recs = {rec.get("name") or rec["rev"]: rec for rec in _exp_records(shown)}
    assert "ss-max5" in recs, sorted(recs)
    exp = recs["ss-max5"]
    assert exp["data"]["params"]["params.yaml"]["data"]["proposals_ss"]["max_per_image"] == 5
    assert _metric(exp, "metrics/recall_ss.json", "num_per_image") <= 5
    # the baseline commit still shows the tiny profile's number
    baseline = next(rec for rec in recs.values()
                    if rec is not exp and rec["rev"] != "workspace"
                    and "metrics" in rec["data"] and rec["data"]["metrics"])
    assert _metric(baseline, "metrics/recall_ss.json", "num_per_image") == pytest.approx(base)


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_queued_sweep(tiny_repro: dict, tmp_path: Path) -> None:
    ws = _committed_copy(tiny_repro, tmp_path / "ws")
    # one -S with comma-separated values queues one experiment per value (a grid sweep)
    dvc("exp", "run", "recall_ss", "--queue", "-n", "ssmax",
        "-S", "proposals_ss.max_per_image=3,6", cwd=ws)
    start_daemon([str(BIN / "dvc"), "queue", "start", "-j", "1"], ws, tmp_path / "queue.log")
    try:
        deadline = time.time() + E2E_TIMEOUT / 2
        idle_since = None
        while True:
            status = dvc("queue", "status", cwd=ws).stdout
            rows = [ln for ln in status.splitlines() if "ssmax" in ln]
            if len(rows) == 2 and all("Success" in ln for ln in rows):
                break
            assert not any("Failed" in ln for ln in rows), status
            assert time.time() < deadline, status
            stalled = "0 active" in status and any("Queued" in ln for ln in rows)
            idle_since = (idle_since or time.time()) if stalled else None
            if idle_since is not None and time.time() - idle_since > 30:
                # a queue worker may exit between two tasks (seen on a loaded machine: the
                # second task stayed Queued with no worker): start one again, as a user would
                start_daemon([str(BIN / "dvc"), "queue", "start", "-j", "1"], ws,
                             tmp_path / "queue.log")
                idle_since = None
            time.sleep(3)
    finally:
        dvc("queue", "stop", "--kill", cwd=ws, check=False)  # the worker daemon exits
    shown = json.loads(dvc("exp", "show", "--json", cwd=ws).stdout)
    got = {}
    for rec in _exp_records(shown):
        if (rec.get("name") or "").startswith("ssmax-"):
            cap = rec["data"]["params"]["params.yaml"]["data"]["proposals_ss"]["max_per_image"]
            got[cap] = _metric(rec, "metrics/recall_ss.json", "num_per_image")
    assert sorted(got) == [3, 6], got
    assert all(n <= cap for cap, n in got.items()), got
