"""Seed variation of the trainings downstream of the SAM (issue 24, item 2; docs/seeds.md).

A *run* is one training seed of the whole DAG with the data, clues, prompts and SAM fixed: the
baseline commit (params ``train_seed`` null: the global ``seed``) and each DVC experiment that
sets ``train_seed`` (``dvc exp run -S train_seed=S``, queued by :func:`run_sweep`). Their
metrics are read from ``dvc exp show --json`` (:func:`parse_runs`); each run's metrics are
written to a temporary ``metrics/`` folder and the report's directions
(:data:`weaksam.report.index.DIRECTIONS`, :data:`~weaksam.report.index.FIGURE_DIRECTIONS`)
are built on it, judged on point values (:func:`evaluate_run`).

Aggregation (:func:`aggregate`), per table:

- every value a check compares (metrics file, key; its first label): n seeds, mean, sample
  standard deviation (ddof 1), min, max;
- every check: the claimed difference per seed (left - right for ``>``, ``>=``; right - left
  for ``<``, ``<=``), its mean and sd, and the sign across seeds: "holds on every seed",
  "reversed on every seed" or "mixed" (a strict ``>`` with a zero difference does not hold);
- whether the default run's bootstrap verdict (the report stage's, :func:`default_verdicts`)
  survives: ``holds`` survives when it holds on every seed, ``reversed`` when it is reversed
  on every seed; a ``within noise`` verdict is "consistent" when the seeds are mixed and
  "seeds agree on a side" otherwise.

A seed whose metrics file or key is missing is "not run" for the checks and values that need
it (their n is smaller), never a guess. :func:`render` writes ``reports/seeds.md``.

Saved runs. Experiments live only as exp refs of the workspace that ran them, so every run read
from ``dvc exp show`` is also saved as ``reports/seeds/runs/seed-<s>.json`` (git-tracked;
:func:`save_runs`): the seed, experiment name and rev, the baseline rev, the baseline's
:func:`code_identity` and the metrics as ``dvc exp show`` gives them. Aggregation
(:func:`combine`) adds the saved runs of the current baseline's code to the experiments; those
of other code are left out with a note naming what differs. The sweep does not rerun a seed
saved for HEAD's code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from weaksam.errors import InputError
from weaksam.report.index import (
    DIRECTIONS,
    FIGURE_DIRECTIONS,
    HOLDS,
    NOT_RUN_VERDICT,
    REVERSED,
    WITHIN_NOISE,
    Check,
    Direction,
)
from weaksam.report.intervals import Evidence
from weaksam.utils.atomic import atomic_path

EXP_SHOW = "dvc exp show --json"
NAME_PREFIX = "train-seed-"

# sign of a check across seeds
ALL_HOLD = "holds on every seed"
ALL_REVERSED = "reversed on every seed"
MIXED = "mixed"

# survival of the default run's verdict
SURVIVES = "survives"
FAILS = "does not survive"
CONSISTENT = "consistent"
AGREE = "seeds agree on a side"
NOT_APPLICABLE = "n/a"
SURVIVAL = (SURVIVES, FAILS, CONSISTENT, AGREE, NOT_APPLICABLE)


@dataclass(frozen=True)
class Run:
    """One training seed: ``name`` (experiment name, or "baseline"), git ``rev`` and its
    metrics ``{relative path: data}`` from ``dvc exp show``; ``baseline`` is the commit the
    experiment ran on (the baseline run's own rev), ``source`` where the run was read
    (``dvc exp show --json`` or a saved file's path)."""

    seed: int
    name: str
    rev: str
    metrics: Mapping[str, Mapping[str, Any]]
    baseline: str = ""
    source: str = EXP_SHOW


# --- dvc exp show --json -----------------------------------------------------------------


def _load(shown: str | Sequence[Any]) -> list[Any]:
    if isinstance(shown, str):
        try:
            shown = json.loads(shown)
        except json.JSONDecodeError as e:
            raise InputError(EXP_SHOW, f"output is not JSON ({e})") from e
    if not isinstance(shown, list):
        raise InputError(EXP_SHOW, f"expected a list of baselines, got {type(shown).__name__}")
    return list(shown)


def _params(record: Mapping[str, Any]) -> dict[str, Any]:
    data = record.get("data") or {}
    return ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}


def _metrics(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{path: data}`` of the record's metrics files that were read (errors left out)."""
    data = record.get("data") or {}
    out = {}
    for path, result in (data.get("metrics") or {}).items():
        if isinstance(result, dict) and isinstance(result.get("data"), dict):
            out[path] = result["data"]
    return out


def _experiments(baseline: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, head record) of the baseline's finished experiments (queued, running and failed
    ones left out)."""
    for exp_range in baseline.get("experiments") or ():
        executor = exp_range.get("executor") or {}
        if executor.get("state", "success") != "success" or not exp_range.get("revs"):
            continue
        head = exp_range["revs"][0]
        yield exp_range.get("name") or head.get("name") or head["rev"], head


def _seed_of(params: Mapping[str, Any]) -> int | None:
    value = params.get("train_seed")
    if value is None:
        value = params.get("seed")
    return None if value is None else int(value)


def _differing(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differing(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def parse_runs(shown: str | Sequence[Any], required: bool = True
               ) -> tuple[dict[int, Run], list[str]]:
    """Runs keyed by their effective training seed, from ``dvc exp show --json`` output (its
    text or the loaded list), and notes on the experiments left out.

    The baseline is the first commit record (the ``workspace`` record only when the commit has
    no metrics); its seed is ``train_seed``, or ``seed`` when that is null. An experiment is a
    run when it finished, sets ``train_seed`` and changes no other param; two runs of one seed
    must have the same metrics. InputError naming ``dvc exp show`` on a conflict, or when no
    run has metrics and ``required``.
    """
    records = [r for r in _load(shown) if isinstance(r, dict) and "rev" in r]
    commits = [r for r in records if r["rev"] != "workspace"]
    workspace = [r for r in records if r["rev"] == "workspace"]
    base = next((r for r in commits if _metrics(r)), None) or \
        next((r for r in workspace if _metrics(r)), None)
    runs: dict[int, Run] = {}
    notes: list[str] = []

    def add(run: Run) -> None:
        have = runs.get(run.seed)
        if have is None:
            runs[run.seed] = run
        elif dict(have.metrics) != dict(run.metrics):
            raise InputError(EXP_SHOW, f"seed {run.seed}: runs {have.name} ({have.rev[:7]}) and "
                                       f"{run.name} ({run.rev[:7]}) have different metrics")

    if base is not None:
        base_params = _params(base)
        seed = _seed_of(base_params)
        if seed is None:
            raise InputError(EXP_SHOW, f"baseline {base['rev'][:7]}: params.yaml has no seed")
        add(Run(seed, "baseline", base["rev"], _metrics(base), base["rev"]))
        for baseline in commits:
            for name, head in _experiments(baseline):
                params = _params(head)
                if params.get("train_seed") is None:
                    continue
                other = [k for k in _differing(
                    {k: v for k, v in params.items() if k != "train_seed"},
                    {k: v for k, v in base_params.items() if k != "train_seed"}) if k]
                if other:
                    notes.append(f"{name}: left out, params other than train_seed differ from "
                                 f"the baseline ({', '.join(other[:5])})")
                    continue
                if not _metrics(head):
                    notes.append(f"{name}: left out, no metrics")
                    continue
                add(Run(int(params["train_seed"]), name, head["rev"], _metrics(head),
                        baseline["rev"]))
    if not runs and required:
        raise InputError(EXP_SHOW, "no run with metrics (neither the baseline commit nor an "
                                   "experiment setting train_seed; run make repro and commit "
                                   "its outputs first)")
    return dict(sorted(runs.items())), notes


# --- one run's directions ----------------------------------------------------------------


def _safe_relpath(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise InputError(EXP_SHOW, f"metrics path {path!r} is not inside the repository")
    return rel


def all_directions() -> dict[str, Callable[[Path], Direction]]:
    """Table name -> direction builder: :data:`DIRECTIONS` (in table order), then the figures
    (:data:`FIGURE_DIRECTIONS`, keyed by their title)."""
    def order(name: str) -> tuple[int, str]:
        m = re.fullmatch(r"table(\d+)", name)
        return (int(m.group(1)), "") if m else (10**6, name)

    out = {name: DIRECTIONS[name] for name in sorted(DIRECTIONS, key=order)}
    out.update({title: fn for title, _, fn in FIGURE_DIRECTIONS})
    return out


def table_title(name: str) -> str:
    """``table5`` -> ``Table 5``; other names as they are (``pgt``, ``Figure 4``)."""
    m = re.fullmatch(r"table(\d+)", name)
    return f"Table {m.group(1)}" if m else ("PGT quality (Fig. 7)" if name == "pgt" else name)


def evaluate_run(run: Run, directions: Mapping[str, Callable[[Path], Direction]] | None = None,
                 metrics_dir: str = "metrics") -> dict[str, Direction]:
    """Every direction built on the run's metrics (written to a temporary folder under their
    relative paths; builders get ``<tmp>/metrics_dir``), values filled in."""
    directions = all_directions() if directions is None else directions
    with tempfile.TemporaryDirectory(prefix="weaksam-seeds-") as tmp:
        for path, data in run.metrics.items():
            dst = Path(tmp, *_safe_relpath(path).parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(data))
        return {name: fn(Path(tmp) / metrics_dir) for name, fn in directions.items()}


def check_id(table: str, check: Check) -> tuple:
    """A check's identity across runs: table, both sides (file, key, label) and the operator."""
    side = (check.left.file, check.left.key, check.left.label)
    return (table, side, check.op, (check.right.file, check.right.key, check.right.label))


def default_verdicts(metrics_dir: Path, evidence: Evidence | None,
                     directions: Mapping[str, Callable[[Path], Direction]] | None = None
                     ) -> dict[tuple, str]:
    """The report's verdict of every check on the workspace's ``metrics_dir``, judged with
    ``evidence`` (the report stage's paired bootstrap; None: point values)."""
    directions = all_directions() if directions is None else directions
    out = {}
    for name, fn in directions.items():
        for c in fn(Path(metrics_dir)).checks:
            out[check_id(name, c)] = c.judge(evidence).verdict
    return out


# --- aggregation -------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (None below 2 values for sd, 0 values for both)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class ValueSeeds:
    """One compared number across seeds: ``values`` {seed: value} of the seeds that ran it."""

    label: str
    file: str | None
    key: str | None
    values: dict[int, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return _stats(list(self.values.values()))[0]

    @property
    def sd(self) -> float | None:
        return _stats(list(self.values.values()))[1]

    @property
    def min(self) -> float | None:
        return min(self.values.values()) if self.values else None

    @property
    def max(self) -> float | None:
        return max(self.values.values()) if self.values else None


@dataclass
class CheckSeeds:
    """One check across seeds: claimed difference and holds / not per seed that ran both
    sides, and the default run's verdict (``default``)."""

    left: str
    op: str
    right: str
    default: str
    diffs: dict[int, float] = field(default_factory=dict)
    holds: dict[int, bool] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float | None:
        return _stats(list(self.diffs.values()))[0]

    @property
    def sd(self) -> float | None:
        return _stats(list(self.diffs.values()))[1]

    @property
    def sign(self) -> str:
        """``holds on every seed``, ``reversed on every seed``, ``mixed`` or ``not run``."""
        if not self.holds:
            return NOT_RUN_VERDICT
        if all(self.holds.values()):
            return ALL_HOLD
        if not any(self.holds.values()):
            return ALL_REVERSED
        return MIXED

    @property
    def survival(self) -> str:
        """Whether the default verdict survives seed variation (module docstring)."""
        sign = self.sign
        if sign == NOT_RUN_VERDICT or self.default not in (HOLDS, REVERSED, WITHIN_NOISE):
            return NOT_APPLICABLE
        if self.default == WITHIN_NOISE:
            return CONSISTENT if sign == MIXED else AGREE
        want = ALL_HOLD if self.default == HOLDS else ALL_REVERSED
        return SURVIVES if sign == want else FAILS


@dataclass
class TableSeeds:
    """A table's claim, its compared values and its checks across seeds."""

    name: str
    claim: str
    values: list[ValueSeeds]
    checks: list[CheckSeeds]

    def counts(self) -> Counter[str]:
        """Checks per survival outcome."""
        return Counter(c.survival for c in self.checks)


def _claimed(check: Check) -> float:
    a, b = check.left.value, check.right.value
    assert a is not None and b is not None
    return a - b if check.op in (">", ">=") else b - a


def aggregate(per_seed: Mapping[int, Mapping[str, Direction]],
              defaults: Mapping[tuple, str] | None = None) -> list[TableSeeds]:
    """Tables across seeds from each seed's directions (:func:`evaluate_run`) and the default
    run's verdicts by :func:`check_id` (:func:`default_verdicts`; missing: ``not run``)."""
    defaults = defaults or {}
    tables: dict[str, TableSeeds] = {}
    values: dict[str, dict[tuple, ValueSeeds]] = {}
    checks: dict[str, dict[tuple, CheckSeeds]] = {}
    for seed, directions in sorted(per_seed.items()):
        for name, d in directions.items():
            if name not in tables:
                tables[name] = TableSeeds(table_title(name), d.claim, [], [])
                values[name], checks[name] = {}, {}
            for c in d.checks:
                for v in (c.left, c.right):
                    vs = values[name].setdefault((v.file, v.key) if v.file else (v.label,),
                                                 ValueSeeds(v.label, v.file, v.key))
                    if v.value is not None:
                        vs.values[seed] = float(v.value)
                cid = check_id(name, c)
                cs = checks[name].setdefault(cid, CheckSeeds(
                    c.left.label, c.op, c.right.label, defaults.get(cid, NOT_RUN_VERDICT)))
                if c.holds is not None:
                    cs.diffs[seed] = _claimed(c)
                    cs.holds[seed] = c.holds
    for name, t in tables.items():
        t.values = list(values[name].values())
        t.checks = list(checks[name].values())
    return list(tables.values())


# --- markdown ----------------------------------------------------------------------------


def _num(x: float | None, fmt: str = "{:.4g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _diff(x: float | None) -> str:
    return _num(x, "{:+.3g}")


def _saved(run: Run) -> str:
    return "" if run.source == EXP_SHOW else f", saved: `{Path(run.source).name}`"


def render(tables: Sequence[TableSeeds], runs: Mapping[int, Run], *,
           sweep: str | None = None, notes: Sequence[str] = (), how_defaults: str = "") -> str:
    """Markdown of ``reports/seeds.md``: how it was made, per table the values (mean ± sd
    (min-max), n) and checks (default verdict, per-seed differences, sign, survival), and the
    survival counts per table and overall."""
    seeds = sorted(runs)
    total: Counter[str] = Counter()
    lines = [
        "# Seed variation of the trainings downstream of the SAM",
        "",
        "Generated by `weaksam seeds` (`make seeds`; docs/seeds.md) from `dvc exp show "
        "--json` and the saved runs of the same code (`reports/seeds/runs/`): do not edit. "
        "Each run is the whole DAG with one training seed (params "
        "`train_seed`: WSOD, retraining, oracle and WSIS trainings); data, clues, prompts and "
        "SAM are those of the baseline commit.",
        "",
        "Runs: " + "; ".join(
            f"seed {s} ({runs[s].name}, `{runs[s].rev[:7]}`{_saved(runs[s])})" for s in seeds)
        + ".",
    ]
    if sweep:
        lines += ["", sweep]
    if notes:
        lines += ["", "Left out: " + "; ".join(notes) + "."]
    how_defaults = how_defaults or "as in reports/README.md"
    lines += [
        "",
        "Values: mean ± sample sd (min–max), n = seeds whose metrics have the number. "
        "Difference: the paper's claimed side minus the other, per seed (`s<seed>`). "
        f"Default verdict: the report's verdict of the default run ({how_defaults}). "
        "Survives: a `holds` verdict that holds on every seed, or a "
        "`reversed` one reversed on every seed; a `within noise` verdict is *consistent* "
        "when the seeds' signs are mixed, and *seeds agree on a side* otherwise; n/a: not "
        "run.",
    ]
    for t in tables:
        counts = t.counts()
        total.update(counts)
        lines += ["", f"## {t.name}", "", f"Claim: {t.claim}.", ""]
        for v in t.values:
            where = f" (`{v.file}` `{v.key}`)" if v.file else ""
            lines.append(f"- {v.label}{where}: {_num(v.mean)} ± {_num(v.sd, '{:.3g}')} "
                         f"({_num(v.min)}–{_num(v.max)}), n={v.n}")
        lines += ["", "| check | default verdict | difference per seed | mean ± sd | "
                      "across seeds | survives |", "|---|---|---|---|---|---|"]
        for c in t.checks:
            per = ", ".join(f"s{s} {_diff(d)}" for s, d in sorted(c.diffs.items())) or "n/a"
            lines.append(f"| {c.left} {c.op} {c.right} | {c.default} | {per} | "
                         f"{_diff(c.mean)} ± {_num(c.sd, '{:.3g}')} (n={c.n}) | {c.sign} | "
                         f"{c.survival} |")
        lines += ["", f"{t.name}: {_counts(counts)}."]
    lines += ["", f"**All checks, {len(seeds)} seeds ({', '.join(map(str, seeds))}): "
                  f"{_counts(total)}.**"]
    return "\n".join(lines) + "\n"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {counts.get(k, 0)}" for k in SURVIVAL)


# --- saved runs --------------------------------------------------------------------------

RUNS_DIR = "reports/seeds/runs"
RUN_FORMAT = 1
# what decides a run's metrics besides train_seed (code_identity)
WHOLE_FILES = ("dvc.yaml", "requirements.lock")
LOCK_PARAMS = "params of dvc.lock"


def _git_out(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def _inside(path: str, outs: set[str]) -> bool:
    """Whether ``path`` is one of ``outs`` or lies inside one of them."""
    p = PurePosixPath(path.rstrip("/"))
    return any(str(q) in outs for q in (p, *p.parents))


def code_identity(root: Path, rev: str = "HEAD") -> dict[str, str | None]:
    """``{part: id}`` at commit ``rev`` of what decides the trainings' results, read from the
    commit's ``dvc.lock`` (the executed DAG: every stage's resolved deps and params):

    - each git-tracked dep of a stage (``weaksam/...``, ``pipeline/...``: every stage's code,
      which tests/pipeline/test_code_deps.py keeps equal to its imports): its git object id at
      ``rev``; deps that are outputs of a stage (git-tracked metrics too, whose time fields
      change on every rerun) are left out: their producers' parts decide them;
    - ``params of dvc.lock``: a sha256 of every stage's params as the lock records them;
    - ``dvc.yaml`` and ``requirements.lock`` (the commands and the torch build): blob ids,
      None for a file the commit lacks.

    Git objects, not the lock's md5s, so a commit whose code moved without a repro (a stale
    lock) counts as other code. What no stage depends on (``weaksam/seeds.py``, the dry run,
    docs, tests, reports, params no stage reads) can change without orphaning the saved runs;
    a change to any stage's code or params, or to the DAG, does. The lock's outs are left out:
    the metrics' time fields change them on every rerun of the same code.

    InputError when ``rev`` is not a commit of ``root`` or has no readable ``dvc.lock`` (the
    sweep needs a committed ``make repro``).
    """
    r = _git_out(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if r.returncode != 0:
        raise InputError(root, f"{rev!r} is not a git commit here: the code identity of saved "
                               "seed runs needs the baseline commit")
    commit = r.stdout.strip()
    r = _git_out(root, "show", f"{commit}:dvc.lock")
    try:
        stages = yaml.safe_load(r.stdout)["stages"] if r.returncode == 0 else None
        if not isinstance(stages, dict):
            raise TypeError("no stages")
        outs = {o["path"].rstrip("/") for st in stages.values() for o in st.get("outs", ())}
        deps = sorted({d["path"] for st in stages.values() for d in st.get("deps", ())
                       if not _inside(d["path"], outs)})
        params = {name: st.get("params", {}) for name, st in sorted(stages.items())}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise InputError(root / "dvc.lock", f"commit {commit[:7]} has no readable dvc.lock "
                                            f"({e}): seed runs need a committed make repro"
                         ) from e
    found = {}
    r = subprocess.run(["git", "ls-tree", "--full-tree", commit, "--", *deps, *WHOLE_FILES],
                       cwd=root, capture_output=True, text=True, check=True)
    for line in r.stdout.splitlines():
        meta, path = line.split("\t", 1)
        found[path] = meta.split()[2]
    code: dict[str, str | None] = {p: found[p] for p in deps if p in found}
    code.update({p: found.get(p) for p in WHOLE_FILES})
    code[LOCK_PARAMS] = hashlib.sha256(
        json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return code


@dataclass(frozen=True)
class SavedRun:
    """A run read from ``reports/seeds/runs/seed-<s>.json`` and the identity of its code."""

    run: Run
    code: Mapping[str, str | None]
    path: Path


def run_record(run: Run, code: Mapping[str, str | None]) -> dict[str, Any]:
    """The JSON record of a saved run (see the module docstring)."""
    return {"format": RUN_FORMAT, "seed": run.seed, "name": run.name, "rev": run.rev,
            "baseline": run.baseline, "code": dict(code),
            "metrics": {k: run.metrics[k] for k in sorted(run.metrics)}}


def read_saved(path: Path) -> SavedRun:
    """One saved run; InputError naming the file when it is not a run record."""
    try:
        rec = json.loads(Path(path).read_text())
        if rec.get("format") != RUN_FORMAT:
            raise ValueError(f"format {rec.get('format')!r}, expected {RUN_FORMAT}")
        run = Run(int(rec["seed"]), str(rec["name"]), str(rec["rev"]), dict(rec["metrics"]),
                  str(rec["baseline"]), str(path))
        code = dict(rec["code"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(path, f"not a saved seed run ({e})") from e
    for p in run.metrics:
        _safe_relpath(p)
    return SavedRun(run, code, Path(path))


def load_saved(runs_dir: Path) -> list[SavedRun]:
    """Every ``seed-<s>.json`` of ``runs_dir`` (none when it does not exist), by seed."""
    paths = Path(runs_dir).glob("seed-*.json") if Path(runs_dir).is_dir() else ()
    return sorted((read_saved(p) for p in paths), key=lambda s: s.run.seed)


def save_runs(root: Path, runs: Mapping[int, Run], runs_dir: Path,
              progress: Callable[[str], None] = print) -> list[Path]:
    """Write each run of ``dvc exp show`` as ``runs_dir/seed-<s>.json`` with its baseline's
    :func:`code_identity`; returns the files written. A run on uncommitted code (baseline
    ``workspace``) is not saved. A file already holding this run is left as it is; one holding
    another run of the seed is replaced (the experiment wins, as in :func:`combine`), said
    when that run was of other code."""
    codes: dict[str, dict[str, str | None]] = {}
    written = []
    for seed, run in sorted(runs.items()):
        if not run.baseline or run.baseline == "workspace":
            progress(f"seed {seed}: not saved, it ran on uncommitted code")
            continue
        code = codes.get(run.baseline) or codes.setdefault(
            run.baseline, code_identity(root, run.baseline))
        path = Path(runs_dir) / f"seed-{seed}.json"
        if path.exists():
            have = read_saved(path)
            if have.run.rev == run.rev and dict(have.code) == code:
                continue
            if dict(have.code) != code:
                progress(f"seed {seed}: {path} held a run of other code ({have.run.name}, "
                         f"baseline {have.run.baseline[:7]}); replaced by {run.name}")
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(run_record(run, code), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def _differing_parts(a: Mapping[str, Any], b: Mapping[str, Any], most: int = 6) -> list[str]:
    parts = [p for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
    return parts if len(parts) <= most else [*parts[:most], f"{len(parts) - most} more"]


def combine(live: Mapping[int, Run], saved: Sequence[SavedRun],
            code: Mapping[str, str | None]) -> tuple[dict[int, Run], list[str]]:
    """The runs to aggregate: those of ``dvc exp show`` (``live``, all on the baseline whose
    identity is ``code``) and the saved runs whose code identity equals ``code``, with notes.

    A saved run of other code is left out with a note naming the parts that differ (never
    mixed). A seed both live and saved: the live experiment wins (a note when the saved file
    is another run: a rerun of the same code differs at least in its time fields, so "must
    agree" would reject honest reruns). InputError when no run is left."""
    runs = dict(live)
    notes = []
    for s in saved:
        seed, run = s.run.seed, s.run
        if dict(s.code) != dict(code):
            notes.append(f"{s.path.name} ({run.name}, baseline {run.baseline[:7]}): other code "
                         f"({', '.join(_differing_parts(s.code, code))} differ from the "
                         "baseline's)")
        elif seed in live:
            if live[seed].rev != run.rev:
                notes.append(f"{s.path.name} ({run.name}, `{run.rev[:7]}`): seed {seed} also "
                             f"in dvc exp show ({live[seed].name}, `{live[seed].rev[:7]}`), "
                             "which is used")
        else:
            runs[seed] = run
    if not runs:
        raise InputError(EXP_SHOW, "no run with metrics, neither from dvc exp show nor saved "
                                   "for this code (run make repro and commit its outputs "
                                   "first)")
    return dict(sorted(runs.items())), notes


# --- the sweep ---------------------------------------------------------------------------


def dvc_command() -> str:
    """The ``dvc`` of this Python environment when there is one, else ``dvc`` on PATH."""
    exe = Path(sys.executable).parent / "dvc"
    return str(exe) if exe.is_file() else "dvc"


def _env() -> dict[str, str]:
    """The environment of dvc commands: this environment's bin first on PATH (stage commands
    call ``python``)."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def dvc(root: Path, *args: str) -> str:
    """Stdout of ``dvc args`` in ``root``; InputError naming the command when it fails."""
    cmd = [dvc_command(), *args]
    r = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, check=False)
    if r.returncode != 0:
        raise InputError(root, f"`dvc {' '.join(args)}` failed (exit {r.returncode}): "
                               f"{(r.stderr or r.stdout).strip()[-2000:]}")
    return r.stdout


_QUEUE_STATES = ("Running", "Queued", "Failed", "Success", "Unknown")  # most active first


def parse_queue_status(text: str) -> dict[str, str]:
    """``{name: status}`` from ``dvc queue status`` (columns Task, Name, Created, Status). A
    name with several tasks (an old one finished, a new one queued) gets its most active
    status: Running, Queued, Failed, Success, Unknown."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] != "Task" and parts[-1] in _QUEUE_STATES:
            have = out.get(parts[1])
            if have is None or _QUEUE_STATES.index(parts[-1]) < _QUEUE_STATES.index(have):
                out[parts[1]] = parts[-1]
    return out


def exp_name(seed: int) -> str:
    """The experiment name of a training seed: ``train-seed-<seed>``."""
    return f"{NAME_PREFIX}{seed}"


def run_sweep(root: Path, seeds: Sequence[int], jobs: int = 1, log: Path | None = None,
              poll: float = 30.0, progress: Callable[[str], None] = print,
              runs_dir: Path | None = None) -> dict[str, Any]:
    """Queue ``dvc exp run -n train-seed-<s> -S train_seed=<s>`` for each seed with neither a
    finished experiment nor a run saved in ``runs_dir`` (default ``root/reports/seeds/runs``)
    for HEAD's :func:`code_identity`, run the queue with ``jobs`` workers, wait for every one
    to succeed and stop the workers. The finished experiments are saved (:func:`save_runs`)
    before queueing and each as soon as it succeeds, so a sweep killed half-way keeps the
    seeds it finished. Returns the wall seconds of the sweep and, per seed, the seconds
    observed between its first ``Running`` and its ``Success`` (± ``poll``)."""
    log = log or root / ".dvc" / "tmp" / "weaksam-seeds.log"
    runs_dir = root / RUNS_DIR if runs_dir is None else runs_dir
    runs, _ = parse_runs(dvc(root, "exp", "show", "--json"), required=False)
    save_runs(root, runs, runs_dir, progress)
    code = code_identity(root, "HEAD")
    saved = {s.run.seed: s for s in load_saved(runs_dir) if dict(s.code) == code}
    queue = parse_queue_status(dvc(root, "queue", "status"))
    if any(r.rev == "workspace" for r in runs.values()):
        progress("warning: HEAD has no metrics; the experiments start from HEAD plus the "
                 "workspace's changes: commit the outputs of make repro (dvc.lock, metrics/) "
                 "first, or every stage may rerun")
    todo = [s for s in seeds if s not in runs and s not in saved]
    for s in sorted(set(seeds) - set(todo)):
        where = runs[s].name if s in runs else f"saved in {saved[s].path}"
        progress(f"seed {s}: already run ({where}), skipped")
    start = time.monotonic()
    waiting = {}
    for s in todo:
        name = exp_name(s)
        if queue.get(name) in ("Queued", "Running"):
            progress(f"seed {s}: {name} already {queue[name].lower()}")
        else:
            if queue.get(name) == "Failed":
                dvc(root, "queue", "remove", name)
            dvc(root, "exp", "run", "--queue", "-n", name, "-S", f"train_seed={s}")
            progress(f"seed {s}: queued as {name}")
        waiting[name] = s
    if not waiting:
        return {"wall_seconds": 0.0, "seed_seconds": {}, "seeds_run": []}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the worker daemon keeps its pipes open: a file, not a pipe
        r = subprocess.run([dvc_command(), "queue", "start", "-j", str(jobs)], cwd=root,
                           env=_env(), stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, check=False)
    if r.returncode != 0:
        raise InputError(log, f"`dvc queue start -j {jobs}` failed (exit {r.returncode})")
    began: dict[str, float] = {}
    seconds: dict[int, float] = {}
    last: dict[str, str] = {}
    try:
        while True:
            status = parse_queue_status(dvc(root, "queue", "status"))
            now = time.monotonic()
            for name, s in waiting.items():
                st = status.get(name, "Unknown")
                if st == "Running":
                    began.setdefault(name, now)
                if st == "Success" and s not in seconds:
                    seconds[s] = now - began.get(name, now)
                    done, _ = parse_runs(dvc(root, "exp", "show", "--json"), required=False)
                    if s in done:
                        save_runs(root, {s: done[s]}, runs_dir, progress)
                        progress(f"seed {s}: saved in {runs_dir / f'seed-{s}.json'} (commit it)")
                if st != last.get(name):
                    progress(f"seed {s}: {st} ({(now - start) / 60:.1f} min into the sweep)")
                    last[name] = st
                if st == "Failed":
                    raise InputError(root, f"experiment {name} (train_seed={s}) failed: see "
                                           f"`dvc queue logs {name}`")
            if all(status.get(n) == "Success" for n in waiting):
                break
            time.sleep(poll)
    finally:
        subprocess.run([dvc_command(), "queue", "stop"], cwd=root, env=_env(),
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return {"wall_seconds": time.monotonic() - start, "seed_seconds": seconds,
            "seeds_run": sorted(waiting.values())}


def sweep_text(seeds: Sequence[int], jobs: int, timing: Mapping[str, Any] | None) -> str:
    """The markdown line saying how the sweep was run and how long it took."""
    cmd = (f"Sweep: `weaksam seeds --seeds {' '.join(map(str, seeds))} --jobs {jobs}` "
           f"(`dvc exp run --queue -n {NAME_PREFIX}<s> -S train_seed=<s>`, "
           f"`dvc queue start -j {jobs}`).")
    if not timing or not timing.get("seeds_run"):
        return cmd + " Time: not measured by this invocation (no seed run)."
    per = ", ".join(f"seed {s} {t / 60:.1f} min" for s, t in sorted(
        timing["seed_seconds"].items()))
    return (cmd + f" Time: {timing['wall_seconds'] / 60:.1f} min wall for seeds "
            f"{', '.join(map(str, timing['seeds_run']))} ({per}; per seed: from its first "
            "`Running` to `Success` in `dvc queue status`, polled).")
