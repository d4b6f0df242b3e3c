"""pipeline.launch: the process count of a stage from params (issue 22)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.launch import main, processes_metrics, resolve_nproc, supports_torchrun

ROOT = Path(__file__).resolve().parents[2]

TOY = '''
import json, os, sys
import torch
import torch.distributed as dist
from pipeline.launch import processes_metrics

TORCHRUN = {flag}

if __name__ == "__main__":
    out = sys.argv[1]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    total = world
    if world > 1:
        dist.init_process_group("gloo")
        t = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(t)
        total = int(t.item())
        rank = dist.get_rank()
        dist.destroy_process_group()
    else:
        rank = 0
    with open(f"{{out}}.{{rank}}", "w") as f:
        json.dump({{"sum": total, "argv": sys.argv[2:], **processes_metrics()}}, f)
'''


def _toy(tmp_path: Path, flag: bool = True) -> dict[str, str]:
    pkg = tmp_path / "toypkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stage.py").write_text(TOY.format(flag=flag))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_resolve_nproc_counts_and_errors(monkeypatch):
    assert resolve_nproc("1", "cpu") == 1
    assert resolve_nproc(3, "cpu") == 3
    monkeypatch.setattr("pipeline.launch.cpu_count", lambda: 7)
    assert resolve_nproc("auto", "cpu") == 7
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="runtime.nproc"):
            resolve_nproc(bad, "cpu")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_nproc("auto", "cuda")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    assert resolve_nproc("auto", "cuda") == 4
    assert resolve_nproc("auto", "cuda:1") == 1


def test_stages_that_declare_torchrun():
    for module in ("pipeline.clues_train", "pipeline.wsod", "pipeline.retrain_prelim",
                   "pipeline.retrain", "pipeline.retrain_oracle", "pipeline.wsis"):
        assert supports_torchrun(module), module
    for module in ("pipeline.clues", "pipeline.report"):
        assert not supports_torchrun(module), module
    with pytest.raises(SystemExit, match="no such stage module"):
        supports_torchrun("pipeline.no_such_stage")


def test_more_processes_than_a_stage_supports_is_refused_before_any_start():
    with pytest.raises(SystemExit, match="does not run under torchrun"):
        main(["2", "-m", "pipeline.clues"])
    with pytest.raises(SystemExit, match="usage"):
        main(["2", "pipeline.wsod"])


def test_processes_metrics_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("WEAKSAM_NPROC_PARAM", raising=False)
    assert processes_metrics() == {"processes": 1, "processes_param": "1"}


@pytest.mark.slow
def test_one_and_two_processes_end_to_end(tmp_path):
    """N = 1 runs the module in the launcher's process; N = 2 starts two torchrun ranks that
    join one gloo group; each sees the stage arguments and records the count."""
    env = _toy(tmp_path)
    for n in ("1", "2"):
        out = tmp_path / f"out{n}"
        subprocess.run([sys.executable, "-m", "pipeline.launch", n, "-m", "toypkg.stage",
                        str(out), "--flag", "x"], env=env, cwd=tmp_path, check=True,
                       capture_output=True, text=True)
        ranks = sorted(tmp_path.glob(f"out{n}.*"))
        assert len(ranks) == int(n)
        for r in ranks:
            got = json.loads(r.read_text())
            assert got["argv"] == ["--flag", "x"]
            assert got["processes"] == int(n) and got["processes_param"] == n
            assert got["sum"] == (1 if n == "1" else 3)  # all-reduce of ranks 1 + 2


def test_a_stage_without_torchrun_fails_with_the_param_named(tmp_path):
    env = _toy(tmp_path, flag=False)
    done = subprocess.run([sys.executable, "-m", "pipeline.launch", "2", "-m", "toypkg.stage",
                           str(tmp_path / "o")], env=env, cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode != 0
    assert "runtime.nproc" in done.stderr and not list(tmp_path.glob("o.*"))


def test_every_launched_stage_of_the_dag_runs_under_torchrun():
    """A stage that dvc.yaml starts through the launcher takes any count params give it (the
    paper profiles: auto), so its module must declare TORCHRUN."""
    import re

    launched = set(re.findall(r"pipeline\.launch\s+\S+\s+-m\s+([\w.]+)",
                              (ROOT / "dvc.yaml").read_text()))
    assert {"pipeline.clues_train", "pipeline.wsod", "pipeline.retrain",
            "pipeline.wsis"} <= launched
    assert all(supports_torchrun(m) for m in launched), launched


def _params(tmp_path: Path, runtime: str, sam: str | None = None) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"runtime": {"device": runtime}, "sam": {"device": sam}}))
    return str(path)


@pytest.mark.parametrize(("module", "runtime", "sam"), [
    ("pipeline.wsod", "cuda", None),
    ("pipeline.wsod", "cuda:0", None),
    ("pipeline.sam_pretrain", "cpu", "cuda"),  # DEVICE_PARAMS: sam.device first
])
def test_more_ranks_than_gpus_is_refused_before_any_rank_starts(tmp_path, monkeypatch, module,
                                                                  runtime, sam):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    started = []
    monkeypatch.setattr("torch.distributed.run.main", lambda *a, **k: started.append(a))
    with pytest.raises(SystemExit, match=r"runtime\.nproc \('2'\).*one process per GPU"):
        main(["2", "-m", module, "--params", _params(tmp_path, runtime, sam)])
    assert not started


def test_ranks_within_the_visible_gpus_start(tmp_path, monkeypatch):
    for name in ("OMP_NUM_THREADS", "WEAKSAM_NPROC_PARAM"):  # main sets them: restored after
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    started = []
    monkeypatch.setattr("torch.distributed.run.main", lambda args: started.append(args))
    main(["2", "-m", "pipeline.wsod", "--params", _params(tmp_path, "cuda")])
    # the SAM stage reads sam.device (CPU here) before runtime.device
    main(["2", "-m", "pipeline.sam_pretrain", "--params", _params(tmp_path, "cuda:1", "cpu")])
    assert [a[1] for a in started] == ["--nproc_per_node=2"] * 2
