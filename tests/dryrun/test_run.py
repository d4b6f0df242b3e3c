"""weaksam.dryrun.run: resuming a failed dry run (the repro itself mocked)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from weaksam.dryrun import run as R
from weaksam.dryrun.monitor import StageUsage
from weaksam.errors import InputError


def _fake_repro(ran: list[str], fail: bool):
    def run_repro(ws: Path, log: Path, stages=(), interval: float = 0.5):
        log.write_text("log\n")
        usage = {s: StageUsage(first=0.0, last=2.0, peak_rss_mib=10.0) for s in ran}
        return (1 if fail else 0), 5.0, SimpleNamespace(usage=usage)
    return run_repro


def test_resume_keeps_the_params_refreshes_the_code_and_merges_figures(tmp_path, monkeypatch):
    root, out, work = tmp_path / "root", tmp_path / "out", tmp_path / "work"
    (root / "weaksam").mkdir(parents=True)
    (root / "weaksam" / "mod.py").write_text("v = 1\n")

    def prepare(root_, ws, *a, **k):
        ws.mkdir(parents=True)
        params = {"sam": {"model": "vit_b"}, "dryrun": {"resolution": "full"}}
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        return params

    def copy_code(root_, dst):
        (dst / "weaksam").mkdir(exist_ok=True)
        (dst / "weaksam" / "mod.py").write_text((root_ / "weaksam" / "mod.py").read_text())
        (dst / "params.yaml").write_text("profile params: would undo the dry-run settings\n")

    monkeypatch.setattr(R, "prepare", prepare)
    monkeypatch.setattr(R, "copy_code", copy_code)
    # first run: stage a ran, b failed
    monkeypatch.setattr(R, "run_repro", _fake_repro(["a", "b"], fail=True))
    monkeypatch.setattr(R, "stages_not_run", lambda ws, stages=(): ["b"])
    with pytest.raises(InputError, match="stages not run: b"):
        R.dryrun("p", root, out, work)
    first = json.loads((out / "p" / "stages.json").read_text())
    assert first["resumed"] == 0 and first["exit_status"] == 1
    # the fix, then --resume: b reruns; a keeps its figure, params stay the dry run's
    (root / "weaksam" / "mod.py").write_text("v = 2\n")
    monkeypatch.setattr(R, "run_repro", _fake_repro(["b"], fail=False))
    monkeypatch.setattr(R, "stages_not_run", lambda ws, stages=(): [])
    report = R.dryrun("p", root, out, work, resume=True, keep=True)
    assert set(report["stages"]) == {"a", "b"}
    assert report["repro_seconds"] == 10.0 and report["resumed"] == 1
    ws = work / "p"
    assert (ws / "weaksam" / "mod.py").read_text() == "v = 2\n"
    assert yaml.safe_load((ws / "params.yaml").read_text())["sam"]["model"] == "vit_b"
    assert len(list((out / "p").glob("repro.*.log"))) == 1  # the failed run's log kept


def test_resume_without_a_kept_workspace_starts_afresh(tmp_path, monkeypatch):
    made = []

    def prepare(root_, ws, *a, **k):
        made.append(ws)
        ws.mkdir(parents=True)
        return {"sam": {"model": "vit_b"}}

    monkeypatch.setattr(R, "prepare", prepare)
    monkeypatch.setattr(R, "run_repro", _fake_repro(["a"], fail=False))
    monkeypatch.setattr(R, "stages_not_run", lambda ws, stages=(): [])
    report = R.dryrun("p", tmp_path, tmp_path / "out", tmp_path / "work", resume=True)
    assert made and report["resumed"] == 0
