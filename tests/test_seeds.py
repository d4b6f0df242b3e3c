"""The training-seed sweep's aggregation (weaksam/seeds.py) on hand-built ``dvc exp show
--json`` output in DVC 3's format (a list of baseline ``ExpState`` records, each with
``experiments``: ``ExpRange`` records of ``revs`` and an ``executor``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from weaksam import seeds as sw
from weaksam.errors import InputError
from weaksam.report.index import HOLDS, REVERSED, WITHIN_NOISE, Check, Direction, value

PARAMS = {"seed": 0, "train_seed": None, "wsod": {"epochs": 2}}


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


def _show(base_metrics: dict | None, *exps: dict, base_params: dict | None = None) -> list:
    """Workspace record, then the baseline commit with its experiments."""
    base = _state("c0ffee" * 6 + "abcd", base_params or PARAMS, base_metrics, "main")
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
    poll."""

    def __init__(self, shown: list, fail: str | None = None) -> None:
        self.shown, self.fail, self.calls, self.queue = shown, fail, [], {}

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
            return text
        return ""


def test_run_sweep_queues_only_missing_seeds(monkeypatch, tmp_path: Path):
    fake = FakeDvc(_show(_wsod(50.0), _exp("train-seed-1", 1, _wsod(51.0))))
    started = []
    monkeypatch.setattr(sw, "dvc", fake)
    monkeypatch.setattr(sw.subprocess, "run", lambda cmd, **kw: started.append(cmd[1:]) or
                        type("R", (), {"returncode": 0})())
    said = []
    timing = sw.run_sweep(tmp_path, [1, 2], log=tmp_path / "q.log", poll=0, progress=said.append)
    queued = [c for c in fake.calls if c[:2] == ("exp", "run")]
    assert queued == [("exp", "run", "--queue", "-n", "train-seed-2", "-S", "train_seed=2")]
    assert started == [["queue", "start", "-j", "1"], ["queue", "stop"]]
    assert timing["seeds_run"] == [2] and timing["wall_seconds"] >= 0
    assert any("seed 1: already run" in s for s in said)


def test_run_sweep_failure_names_the_logs_command(monkeypatch, tmp_path: Path):
    fake = FakeDvc(_show(_wsod(50.0)), fail="train-seed-2")
    started = []
    monkeypatch.setattr(sw, "dvc", fake)
    monkeypatch.setattr(sw.subprocess, "run", lambda cmd, **kw: started.append(cmd[1:]) or
                        type("R", (), {"returncode": 0})())
    with pytest.raises(InputError, match="dvc queue logs train-seed-2"):
        sw.run_sweep(tmp_path, [1, 2], log=tmp_path / "q.log", poll=0, progress=lambda m: None)
    assert started[-1] == ["queue", "stop"]  # the workers are stopped on failure too


def test_cli_aggregate_only_writes_the_markdown(monkeypatch, tmp_path: Path):
    from weaksam.cli import main

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("seed: 0\ntrain_seed: null\n")
    (tmp_path / "metrics").mkdir()
    for f, d in _wsod(50.0).items():
        (tmp_path / "metrics" / f).write_text(json.dumps(d))
    monkeypatch.setattr(sw, "dvc", FakeDvc(_show(_wsod(50.0),
                                                 _exp("train-seed-1", 1, _wsod(30.0)))))
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
    fake = FakeDvc(_show(_wsod(50.0)))
    monkeypatch.setattr(sw, "dvc", fake)
    assert main(["--root", str(tmp_path), "seeds", "--no-run", "--point-only",
                 "--baseline", "abc123"]) == 0
    assert fake.calls == [("exp", "show", "--json", "--rev", "abc123")]
