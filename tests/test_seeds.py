"""The training-seed sweep's aggregation (weaksam/seeds.py) on hand-built ``dvc exp show
--json`` output in DVC 3's format (a list of baseline ``ExpState`` records, each with
``experiments``: ``ExpRange`` records of ``revs`` and an ``executor``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from weaksam import seeds as sw
from weaksam.errors import InputError
from weaksam.report.index import HOLDS, REVERSED, WITHIN_NOISE, Check, Direction, value

PARAMS = {"seed": 0, "train_seed": None, "wsod": {"epochs": 2}}
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "GIT_CONFIG_GLOBAL": "/dev/null"}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


def _commit(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "change")
    return _head(root)


def _head(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the parts of the code identity (no requirements.lock)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _commit(root, {"weaksam/train.py": "LR = 0.1\n", "pipeline/wsod.py": "import weaksam\n",
                   "weaksam/seeds.py": "SEEDS = 1\n",
                   "params.yaml": "seed: 0\ntrain_seed: null\n", "dvc.yaml": "stages: {}\n",
                   "dvc.lock": _lock(), "docs/seeds.md": "# seeds\n"})
    return root


def _lock(seed: int = 0, seconds: float = 1.0) -> str:
    """A dvc.lock of one stage: two code deps in git, one DVC output dep, its params."""
    return yaml.safe_dump({"schema": "2.0", "stages": {"wsod@oicr": {
        "cmd": "python -m pipeline.wsod",
        "deps": [{"path": "pipeline/wsod.py", "md5": "a"}, {"path": "weaksam/train.py",
                                                             "md5": "b"},
                 {"path": "data/images", "md5": "c.dir"}],
        "params": {"params.yaml": {"seed": seed, "train_seed": None}},
        "outs": [{"path": "metrics/wsod.json", "md5": f"{seconds}"}]},
        "report": {"cmd": "python -m pipeline.report",
                   "deps": [{"path": "metrics/wsod.json", "md5": f"{seconds}"}],
                   "outs": [{"path": "reports/tables", "md5": "d.dir"}]}}})


def _state(rev: str, params: dict, metrics: dict | None, name: str | None = None) -> dict:
    data = {"rev": rev, "timestamp": "2025-01-01T00:00:00", "meta": {}, "deps": {}, "outs": {},
            "params": {"params.yaml": {"data": params}},
            "metrics": {f"metrics/{f}": {"data": d} for f, d in (metrics or {}).items()}}
    return {"rev": rev, "name": name, "data": data, "error": None, "experiments": None}


def _exp(name: str, train_seed: int | None, metrics: dict | None, state: str = "success",
         **changes: Any) -> dict:
    params = {**PARAMS, "train_seed": train_seed, **changes}
    head = _state(hashlib.sha1(name.encode()).hexdigest(), params, metrics, name)
    return {"revs": [head], "name": name,
            "executor": {"state": state, "name": "dvc-task", "local": None}}


def _show(base_metrics: dict | None, *exps: dict, base_params: dict | None = None,
          base_rev: str = "c0ffee" * 6 + "abcd") -> list:
    """Workspace record, then the baseline commit with its experiments."""
    base = _state(base_rev, base_params or PARAMS, base_metrics, "main")
    base["experiments"] = list(exps) or None
    return [_state("workspace", PARAMS, base_metrics), base]


def _wsod(oicr_ws: float, oicr_ss: float = 40.0, mist_ws: float = 50.0,
          mist_ss: float = 45.0) -> dict:
    return {"wsod_oicr_weaksam.json": {"ap50": oicr_ws}, "wsod_oicr_ss.json": {"ap50": oicr_ss},
            "wsod_mist_weaksam.json": {"ap50": mist_ws}, "wsod_mist_ss.json": {"ap50": mist_ss}}


def _pair(metrics_dir: Path) -> Direction:
    """A one-check direction: ``a.json`` x > ``b.json`` x."""
    return Direction("a beats b", [Check(value(metrics_dir, "a.json", "x", "A"), ">",
                                         value(metrics_dir, "b.json", "x", "B"))])


def _runs(*pairs: tuple[float | None, float]) -> dict[int, sw.Run]:
    """Seed i: ``a.json`` x = pairs[i][0] (None: file missing), ``b.json`` x = pairs[i][1]."""
    runs = {}
    for seed, (a, b) in enumerate(pairs):
        metrics = {"metrics/b.json": {"x": b}}
        if a is not None:
            metrics["metrics/a.json"] = {"x": a}
        runs[seed] = sw.Run(seed, f"s{seed}", f"{seed:040d}", metrics)
    return runs


def _aggregate(runs: dict[int, sw.Run], default: str = HOLDS) -> sw.TableSeeds:
    per_seed = {s: sw.evaluate_run(r, {"table99": _pair}) for s, r in runs.items()}
    cid = sw.check_id("table99", per_seed[0]["table99"].checks[0])
    (table,) = sw.aggregate(per_seed, {cid: default})
    return table


# --- parsing ---


def test_parse_runs_keys_by_effective_seed_and_skips_unfinished():
    shown = _show(_wsod(50.0),
                  _exp("train-seed-1", 1, _wsod(51.0)),
                  _exp("train-seed-2", 2, _wsod(52.0)),
                  _exp("train-seed-3", 3, None, state="queued"),
                  _exp("train-seed-4", 4, None, state="failed"),
                  _exp("other-ablation", None, _wsod(1.0), wsod={"epochs": 9}),
                  _exp("seed-on-ablation", 5, _wsod(2.0), wsod={"epochs": 9}))
    runs, notes = sw.parse_runs(json.dumps(shown))  # the command's text, as printed
    assert sorted(runs) == [0, 1, 2]
    assert runs[0].name == "baseline" and runs[0].rev.startswith("c0ffee")
    assert runs[2].metrics["metrics/wsod_oicr_weaksam.json"] == {"ap50": 52.0}
    assert len(notes) == 1 and "seed-on-ablation" in notes[0] and "wsod.epochs" in notes[0]


def test_baseline_seed_is_train_seed_when_set():
    runs, _ = sw.parse_runs(_show(_wsod(50.0), base_params={**PARAMS, "train_seed": 7}))
    assert list(runs) == [7]


def test_experiment_executor_may_be_absent():
    exp = _exp("train-seed-1", 1, _wsod(51.0))
    exp["executor"] = None  # finished experiments whose queue entry was cleaned up
    runs, _ = sw.parse_runs(_show(_wsod(50.0), exp))
    assert sorted(runs) == [0, 1]


def test_duplicate_seed_with_other_metrics_is_an_error():
    with pytest.raises(InputError, match="dvc exp show.*seed 0"):
        sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-0", 0, _wsod(49.0))))
    runs, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-0", 0, _wsod(50.0))))
    assert list(runs) == [0]  # the same run twice is one run


@pytest.mark.parametrize("shown", [[], _show(None), "not json"])
def test_no_runs_is_an_error(shown):
    with pytest.raises(InputError, match="dvc exp show"):
        sw.parse_runs(shown)


def test_metrics_path_outside_the_repository_is_an_error():
    run = sw.Run(0, "baseline", "0" * 40, {"../evil.json": {"x": 1}})
    with pytest.raises(InputError, match="not inside the repository"):
        sw.evaluate_run(run, {"table99": _pair})


# --- aggregation ---


def test_value_mean_sd_min_max():
    table = _aggregate(_runs((1.0, 0.0), (2.0, 0.0), (3.0, 0.0)))
    a = next(v for v in table.values if v.file == "a.json")
    assert (a.n, a.mean, a.sd, a.min, a.max) == (3, 2.0, 1.0, 1.0, 3.0)
    (c,) = table.checks
    assert c.diffs == {0: 1.0, 1: 2.0, 2: 3.0}
    assert (c.mean, c.sd) == (2.0, 1.0)


@pytest.mark.parametrize(("pairs", "sign"), [
    (((2.0, 1.0), (3.0, 1.0)), sw.ALL_HOLD),
    (((2.0, 1.0), (0.0, 1.0)), sw.MIXED),
    (((0.0, 1.0), (1.0, 1.0)), sw.ALL_REVERSED),  # a tie does not hold a strict ">"
])
def test_sign_across_seeds(pairs, sign):
    assert _aggregate(_runs(*pairs)).checks[0].sign == sign


def test_claimed_difference_of_less_than_is_right_minus_left():
    def smaller(metrics_dir: Path) -> Direction:
        return Direction("a is smaller", [Check(value(metrics_dir, "a.json", "x", "A"), "<",
                                                value(metrics_dir, "b.json", "x", "B"))])

    per_seed = {s: sw.evaluate_run(r, {"t": smaller})
                for s, r in _runs((1.0, 3.0), (4.0, 3.0)).items()}
    (c,) = sw.aggregate(per_seed)[0].checks
    assert c.diffs == {0: 2.0, 1: -1.0}
    assert c.holds == {0: True, 1: False}
    assert c.default == "not run" and c.survival == sw.NOT_APPLICABLE


@pytest.mark.parametrize(("default", "pairs", "survival"), [
    (HOLDS, ((2.0, 1.0), (3.0, 1.0)), sw.SURVIVES),
    (HOLDS, ((2.0, 1.0), (0.0, 1.0)), sw.FAILS),
    (REVERSED, ((0.0, 1.0), (0.5, 1.0)), sw.SURVIVES),
    (REVERSED, ((0.0, 1.0), (2.0, 1.0)), sw.FAILS),
    (WITHIN_NOISE, ((2.0, 1.0), (0.0, 1.0)), sw.CONSISTENT),
    (WITHIN_NOISE, ((2.0, 1.0), (3.0, 1.0)), sw.AGREE),
    (WITHIN_NOISE, ((0.0, 1.0), (0.0, 1.0)), sw.AGREE),
])
def test_survival_of_the_default_verdict(default, pairs, survival):
    table = _aggregate(_runs(*pairs), default)
    assert table.checks[0].survival == survival
    assert table.counts()[survival] == 1


def test_missing_metric_on_one_seed_is_not_run_there():
    table = _aggregate(_runs((2.0, 1.0), (None, 1.0), (4.0, 1.0)))
    (c,) = table.checks
    assert c.n == 2 and sorted(c.diffs) == [0, 2]  # seed 1 left out, not guessed
    a = next(v for v in table.values if v.file == "a.json")
    b = next(v for v in table.values if v.file == "b.json")
    assert (a.n, a.mean) == (2, 3.0) and b.n == 3
    assert c.survival == sw.SURVIVES  # holds on every seed that ran it


def test_check_not_run_on_any_seed():
    (c,) = _aggregate(_runs((None, 1.0), (None, 1.0))).checks
    assert c.n == 0 and c.mean is None and c.sign == "not run"
    assert c.survival == sw.NOT_APPLICABLE


def test_default_verdicts_point_values(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps({"x": 1.0}))
    (tmp_path / "b.json").write_text(json.dumps({"x": 2.0}))
    verdicts = sw.default_verdicts(tmp_path, None, {"table99": _pair})
    assert list(verdicts.values()) == [REVERSED]


# --- markdown ---


def test_render_has_table1_rows_and_summary():
    shown = _show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(52.0)),
                  _exp("train-seed-2", 2, _wsod(54.0, oicr_ss=60.0)))
    runs, notes = sw.parse_runs(shown)
    per_seed = {s: sw.evaluate_run(r) for s, r in runs.items()}
    defaults = {sw.check_id("table1", c): HOLDS for c in per_seed[0]["table1"].checks}
    tables = sw.aggregate(per_seed, defaults)
    assert [t.name for t in tables][:2] == ["Table 1", "Table 2"]
    text = sw.render(tables, runs, sweep=sw.sweep_text([1, 2], 1, None), notes=notes)
    assert "## Table 1" in text and "## Table 5" in text
    assert "- WeakSAM (OICR) (`wsod_oicr_weaksam.json` `ap50`): 52 ± 2 (50–54), n=3" in text
    assert "- OICR [SS] (`wsod_oicr_ss.json` `ap50`): 46.67 ± 11.5 (40–60), n=3" in text
    assert ("| WeakSAM (OICR) > OICR [SS] | holds | s0 +10, s1 +12, s2 -6 | +5.33 ± 9.87 "
            "(n=3) | mixed | does not survive |") in text
    assert "Table 5 (a)" not in text and "n=0" in text  # Table 5 rows not run: n=0, no guess
    assert text.rstrip().endswith("**")
    assert "3 seeds (0, 1, 2)" in text.splitlines()[-1]


# --- the sweep, with a fake dvc ---


STATUS = """Task     Name          Created    Status
4c7ddc3  train-seed-1  10:32 AM   Success
9a1b2c3  train-seed-2  Jan 02, 2025  Running
77aa001               10:40 AM   Queued

Worker status: 1 active, 0 idle
"""


def test_parse_queue_status():
    assert sw.parse_queue_status(STATUS) == {"train-seed-1": "Success",
                                             "train-seed-2": "Running", "10:40": "Queued"}
    rerun = STATUS.replace("77aa001               10:40 AM   Queued",
                           "77aa001  train-seed-1  10:40 AM   Queued")
    assert sw.parse_queue_status(rerun)["train-seed-1"] == "Queued"  # the new task counts


class FakeDvc:
    """``dvc`` of :mod:`weaksam.seeds` faked: queued experiments succeed (or fail) after one
    poll; a success adds ``results[name]`` to the baseline's experiments in ``dvc exp show``."""

    def __init__(self, shown: list, fail: str | None = None,
                 results: dict[str, dict] | None = None) -> None:
        self.shown, self.fail, self.calls, self.queue = shown, fail, [], {}
        self.results = results or {}

    def __call__(self, root: Path, *args: str) -> str:
        self.calls.append(args)
        if args[:2] == ("exp", "show"):
            return json.dumps(self.shown)
        if args[:2] == ("exp", "run"):
            self.queue[args[args.index("-n") + 1]] = "Queued"
        if args[:2] == ("queue", "status"):
            text = "Task Name Created Status\n" + "".join(
                f"abc {n} 10:00 {s}\n" for n, s in self.queue.items())
            for n in self.queue:
                self.queue[n] = "Failed" if n == self.fail else "Success"
                if self.queue[n] == "Success" and n in self.results:
                    base = self.shown[1]
                    base["experiments"] = [*(base["experiments"] or ()), self.results.pop(n)]
            return text
        return ""


def _fake_run(started: list) -> Any:
    """``subprocess.run`` for the sweep: git runs, dvc's queue commands are recorded."""
    real = subprocess.run

    def run(cmd: list[str], **kw: Any) -> Any:
        if cmd[0] == "git":
            return real(cmd, **kw)
        started.append(cmd[1:])
        return type("R", (), {"returncode": 0})()

    return run


def test_run_sweep_queues_only_missing_seeds(monkeypatch, repo: Path):
    tmp_path = repo
    fake = FakeDvc(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0)),
                         base_rev=_head(repo)))
    started = []
    monkeypatch.setattr(sw, "dvc", fake)
    monkeypatch.setattr(sw.subprocess, "run", _fake_run(started))
    said = []
    timing = sw.run_sweep(tmp_path, [1, 2], log=tmp_path / "q.log", poll=0, progress=said.append)
    queued = [c for c in fake.calls if c[:2] == ("exp", "run")]
    assert queued == [("exp", "run", "--queue", "-n", "train-seed-2", "-S", "train_seed=2")]
    assert started == [["queue", "start", "-j", "1"], ["queue", "stop"]]
    assert timing["seeds_run"] == [2] and timing["wall_seconds"] >= 0
    assert any("seed 1: already run" in s for s in said)


def test_run_sweep_failure_names_the_logs_command(monkeypatch, repo: Path):
    tmp_path = repo
    fake = FakeDvc(_show(_wsod(50.0), base_rev=_head(repo)), fail="train-seed-2")
    started = []
    monkeypatch.setattr(sw, "dvc", fake)
    monkeypatch.setattr(sw.subprocess, "run", _fake_run(started))
    with pytest.raises(InputError, match="dvc queue logs train-seed-2"):
        sw.run_sweep(tmp_path, [1, 2], log=tmp_path / "q.log", poll=0, progress=lambda m: None)
    assert started[-1] == ["queue", "stop"]  # the workers are stopped on failure too


def test_cli_aggregate_only_writes_the_markdown(monkeypatch, repo: Path):
    from weaksam.cli import main

    tmp_path, head = repo, _head(repo)
    (tmp_path / "metrics").mkdir()
    for f, d in _wsod(50.0).items():
        (tmp_path / "metrics" / f).write_text(json.dumps(d))
    monkeypatch.setattr(sw, "dvc", FakeDvc(_show(_wsod(50.0),
                                                 _exp("train-seed-1", 1, _wsod(30.0)),
                                                 base_rev=head)))
    rc = main(["--root", str(tmp_path), "seeds", "--no-run", "--point-only",
               "--out", "reports/seeds.md"])
    assert rc == 0
    text = (tmp_path / "reports" / "seeds.md").read_text()
    assert "| WeakSAM (OICR) > OICR [SS] | holds | s0 +10, s1 -10 |" in text
    assert "does not survive" in text and "Time: not measured" in text
    assert main(["--root", str(tmp_path), "seeds", "--baseline", "abc123"]) == 2  # needs --no-run
    # without --point-only: the report's bootstrap, but this workspace has no per-image files
    assert main(["--root", str(tmp_path), "seeds", "--no-run"]) == 0
    text = (tmp_path / "reports" / "seeds.md").read_text()
    assert "point values: the workspace has none of the per-image files" in text
    fake = FakeDvc(_show(_wsod(50.0), base_rev=head))
    monkeypatch.setattr(sw, "dvc", fake)
    assert main(["--root", str(tmp_path), "seeds", "--no-run", "--point-only",
                 "--baseline", head]) == 0
    assert fake.calls == [("exp", "show", "--json", "--rev", head)]
    # seed 1 was saved by the first invocation: still aggregated, without its experiment
    text = (tmp_path / "reports" / "seeds.md").read_text()
    assert "seed 1 (train-seed-1, " in text and "saved: `seed-1.json`" in text
    assert "| WeakSAM (OICR) > OICR [SS] | holds | s0 +10, s1 -10 |" in text


# --- saved runs ---


def test_code_identity_is_the_git_objects_of_the_stages_deps(repo: Path):
    code = sw.code_identity(repo)
    assert set(code) == {"pipeline/wsod.py", "weaksam/train.py", "dvc.yaml",
                         "requirements.lock", sw.LOCK_PARAMS}  # data/images: not in git
    for part in ("pipeline/wsod.py", "weaksam/train.py", "dvc.yaml"):
        assert code[part] == _git(repo, "rev-parse", f"HEAD:{part}")
    assert code["requirements.lock"] is None  # absent here: recorded as absent
    first = _head(repo)
    # docs, a module no stage depends on, params.yaml's text and the lock's outs (the metrics
    # file is git-tracked and a dep of the report: an output, not code): not code
    _commit(repo, {"docs/seeds.md": "# seeds, edited\n", "weaksam/seeds.py": "SEEDS = 2\n",
                   "params.yaml": "seed: 0  # the seed\ntrain_seed: null\n",
                   "metrics/wsod.json": '{"seconds": 2.0}', "dvc.lock": _lock(seconds=2.0)})
    assert sw.code_identity(repo) == code
    _commit(repo, {"pipeline/wsod.py": "import weaksam  # changed\n"})  # lock not rerun
    changed = sw.code_identity(repo)
    assert sw._differing_parts(changed, code) == ["pipeline/wsod.py"]
    _commit(repo, {"dvc.lock": _lock(seed=1)})
    assert sw._differing_parts(sw.code_identity(repo), changed) == [sw.LOCK_PARAMS]
    assert sw.code_identity(repo, first) == code
    with pytest.raises(InputError, match="not a git commit"):
        sw.code_identity(repo, "nosuchrev")
    _git(repo, "rm", "-q", "dvc.lock")
    _git(repo, "commit", "-q", "-m", "no lock")
    with pytest.raises(InputError, match="dvc.lock.*no readable dvc.lock"):
        sw.code_identity(repo)


def test_saved_runs_round_trip(repo: Path):
    head = _head(repo)
    live, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0)),
                                  base_rev=head))
    runs_dir = repo / "reports" / "seeds" / "runs"
    written = sw.save_runs(repo, live, runs_dir, progress=lambda m: None)
    assert [p.name for p in written] == ["seed-0.json", "seed-1.json"]
    saved = sw.load_saved(runs_dir)
    assert [s.run.seed for s in saved] == [0, 1]
    for s in saved:
        want = live[s.run.seed]
        assert (s.run.name, s.run.rev, s.run.baseline) == (want.name, want.rev, head)
        assert dict(s.run.metrics) == dict(want.metrics)
        assert s.code == sw.code_identity(repo)
        assert s.run.source == str(runs_dir / f"seed-{s.run.seed}.json")
    record = json.loads((runs_dir / "seed-1.json").read_text())
    assert record["name"] == "train-seed-1" and record["baseline"] == head
    assert record["metrics"]["metrics/wsod_oicr_weaksam.json"] == {"ap50": 51.0}
    assert sw.save_runs(repo, live, runs_dir, progress=lambda m: None) == []  # unchanged
    (runs_dir / "seed-9.json").write_text('{"format": 1, "seed": 9}')
    with pytest.raises(InputError, match="seed-9.json.*not a saved seed run"):
        sw.load_saved(runs_dir)


def test_run_on_uncommitted_code_is_not_saved(repo: Path):
    run = sw.Run(0, "baseline", "workspace", {"metrics/a.json": {"x": 1}}, "workspace")
    said: list[str] = []
    assert sw.save_runs(repo, {0: run}, repo / "runs", progress=said.append) == []
    assert "uncommitted" in said[0]


def test_saved_run_of_other_code_is_left_out_and_said(repo: Path):
    old = _head(repo)
    runs_dir = repo / "runs"
    live, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0)),
                                  base_rev=old))
    sw.save_runs(repo, live, runs_dir, progress=lambda m: None)
    new = _commit(repo, {"weaksam/train.py": "LR = 0.2\n", "dvc.lock": _lock(seed=3)})
    live_new, _ = sw.parse_runs(_show(_wsod(40.0), base_rev=new))
    runs, notes = sw.combine(live_new, sw.load_saved(runs_dir), sw.code_identity(repo))
    assert list(runs) == [0] and runs[0].rev == new  # the new baseline, not the old seed 0
    assert len(notes) == 2
    (note,) = [n for n in notes if "seed-1.json" in n]
    assert f"baseline {old[:7]}" in note
    assert f"other code ({sw.LOCK_PARAMS}, weaksam/train.py differ" in note
    # aggregating the old commit takes its saved runs again
    runs, notes = sw.combine({}, sw.load_saved(runs_dir), sw.code_identity(repo, old))
    assert sorted(runs) == [0, 1] and notes == []
    with pytest.raises(InputError, match="neither from dvc exp show nor saved"):
        sw.combine({}, sw.load_saved(runs_dir)[:1], sw.code_identity(repo))


def test_experiment_wins_over_a_saved_run_of_the_same_seed(repo: Path):
    head = _head(repo)
    runs_dir = repo / "runs"
    first, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0)),
                                   _exp("train-seed-2", 2, _wsod(52.0)), base_rev=head))
    sw.save_runs(repo, first, runs_dir, progress=lambda m: None)
    # seed 1 run again in this workspace (another exp rev, other time fields)
    rerun = _exp("train-seed-1", 1, {**_wsod(51.0), "time.json": {"seconds": 9.0}})
    rerun["revs"][0]["rev"] = "9" * 40
    live, _ = sw.parse_runs(_show(_wsod(50.0), rerun, base_rev=head))
    runs, notes = sw.combine(live, sw.load_saved(runs_dir), sw.code_identity(repo))
    assert sorted(runs) == [0, 1, 2]
    assert runs[1].rev == "9" * 40 and runs[1].source == sw.EXP_SHOW  # the experiment
    assert runs[2].source.endswith("seed-2.json")  # the saved run fills the missing seed
    assert runs[0].source == sw.EXP_SHOW  # the same run live and saved: no note
    (note,) = notes
    assert "seed-1.json" in note and "seed 1 also in dvc exp show" in note
    # saving replaces the file with the experiment
    sw.save_runs(repo, live, runs_dir, progress=lambda m: None)
    assert sw.read_saved(runs_dir / "seed-1.json").run.rev == "9" * 40


def test_run_sweep_skips_saved_seeds_and_saves_each_success(monkeypatch, repo: Path):
    runs_dir = repo / sw.RUNS_DIR
    old = _head(repo)
    other, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-3", 3, _wsod(53.0)),
                                   base_rev=old))
    sw.save_runs(repo, {3: other[3]}, runs_dir, progress=lambda m: None)  # other code
    head = _commit(repo, {"weaksam/train.py": "LR = 0.3\n"})
    # seed 1 ran in an earlier session on this code: only its saved file is here
    earlier, _ = sw.parse_runs(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0)),
                                     base_rev=head))
    sw.save_runs(repo, {1: earlier[1]}, runs_dir, progress=lambda m: None)
    fake = FakeDvc(_show(_wsod(50.0), base_rev=head),
                   results={"train-seed-2": _exp("train-seed-2", 2, _wsod(52.0)),
                            "train-seed-3": _exp("train-seed-3", 3, _wsod(54.0))})
    started: list = []
    monkeypatch.setattr(sw, "dvc", fake)
    monkeypatch.setattr(sw.subprocess, "run", _fake_run(started))
    said: list[str] = []
    timing = sw.run_sweep(repo, [1, 2, 3], log=repo / "q.log", poll=0, progress=said.append)
    queued = [c[4] for c in fake.calls if c[:2] == ("exp", "run")]
    assert queued == ["train-seed-2", "train-seed-3"]  # seed 3's saved run is other code
    assert timing["seeds_run"] == [2, 3]
    assert any("seed 1: already run (saved in" in s for s in said)
    assert any("seed 3:" in s and "held a run of other code" in s for s in said)
    saved = {s.run.seed: s for s in sw.load_saved(runs_dir)}
    assert sorted(saved) == [0, 1, 2, 3]  # the baseline saved before queueing
    assert saved[2].run.metrics["metrics/wsod_oicr_weaksam.json"] == {"ap50": 52.0}
    assert saved[3].code == sw.code_identity(repo) and saved[3].run.baseline == head
