"""A dry run of a paper profile: the whole DAG through ``dvc repro`` in a scratch copy of the
workspace, every setting of the profile unchanged except

- the data: a small generated tree in the profile's real layout (:mod:`weaksam.dryrun.trees`),
  at real resolution (``full``) or small (``reduced``);
- the length of every training and the device (:mod:`weaksam.dryrun.settings`);
- the weights: random values in the official formats at the paths the profile names
  (:mod:`weaksam.weights`); ``sam_model`` may swap SAM ViT-H for ViT-B.

The run records per stage its wall time and peak RSS (:mod:`weaksam.dryrun.monitor`) in
``<out>/<profile>/stages.json`` (the input of :mod:`weaksam.dryrun.cost`) and fails, naming the
stages, unless every stage of ``dvc.yaml`` ran. An application entry point (``weaksam
dryrun``): it reads and writes the scratch workspace's params file, never the caller's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from weaksam.dryrun.monitor import TreeMonitor
from weaksam.dryrun.settings import dryrun_overrides
from weaksam.errors import InputError
from weaksam.profiles import apply_profile, deep_merge
from weaksam.utils.atomic import atomic_path

#: top-level folders of the workspace copied into the scratch copy (with top-level files)
CODE_DIRS = ("weaksam/", "pipeline/", "configs/", ".dvc/")
#: images per split of the generated tree: (train, test)
IMAGES = {"full": (4, 2), "reduced": (3, 2)}
#: the official file name of each SAM checkpoint (segment_anything's README)
SAM_FILES = {"vit_h": "sam_vit_h_4b8939.pth", "vit_l": "sam_vit_l_0b3195.pth",
             "vit_b": "sam_vit_b_01ec64.pth"}


def copy_code(root: Path, dst: Path) -> None:
    """Copy the workspace's code and config (git-tracked and new, not ignored files under
    :data:`CODE_DIRS`, plus top-level files; no outputs) from ``root`` into ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if not ("/" not in f or f.startswith(CODE_DIRS)) or not (root / f).is_file():
            continue
        if f.startswith(".dvc/") and not f.endswith(("config", ".gitignore")):
            continue
        if "/" not in f and f in ("dvc.lock",):
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, dst / f)


def _git(ws: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=dryrun", "-c", "user.email=dryrun@localhost", *args],
                   cwd=ws, check=True, capture_output=True)


def stage_commands(ws: Path) -> dict[str, str]:
    """``{stage: resolved command}`` of every stage of ``ws/dvc.yaml`` (foreach expanded)."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        return {s.name: s.cmd for s in repo.index.stages if getattr(s, "cmd", None)}


def write_profile_weights(params: dict[str, Any], ws: Path, seed: int = 0) -> list[str]:
    """Random weights in the official format at every weight path ``params`` names
    (:func:`weaksam.weights.weight_uses`), each file once; returns the paths written."""
    from weaksam.weights import weight_uses, write_random

    done: list[str] = []
    for use in weight_uses(params):
        if use.path is None or use.path in done:
            continue
        write_random(use.kind, ws / use.path, seed=seed, **use.arch)
        done.append(use.path)
    return done


def prepare(root: Path, ws: Path, profile: str, resolution: str, sam_model: str | None,
            images: tuple[int, int], seed: int = 0, stages: Sequence[str] = ()
            ) -> dict[str, Any]:
    """Build the scratch workspace ``ws``: code, the profile and the dry-run settings in its
    params file, the data tree and the weight files. Returns the params it runs with."""
    from weaksam.dryrun.trees import write_tree

    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    copy_code(root, ws)
    _git(ws, "init", "-q", "-b", "main")
    params_path = ws / "params.yaml"
    apply_profile(profile, params_path, ws / "configs")
    params = yaml.safe_load(params_path.read_text())
    # the cores this process may use: a taskset mask counts, as for the stages' `auto`
    # (pipeline/launch.py), so `taskset -c 0 weaksam dryrun ...` runs one worker per stage
    over = dryrun_overrides(params, resolution, cores=len(os.sched_getaffinity(0)))
    if sam_model and params.get("sam", {}).get("model") != "small":
        over = deep_merge(over, {"sam": {"model": sam_model,
                                         "checkpoint": f"models/{SAM_FILES[sam_model]}"}})
    params = deep_merge(params, over)
    params["dryrun"] = {"profile": profile, "resolution": resolution}
    with atomic_path(params_path) as tmp:
        tmp.write_text(yaml.safe_dump(params, sort_keys=False))
    write_tree(params["data"], ws, n_train=images[0], n_test=images[1],
               size="real" if resolution == "full" else "small", seed=seed)
    if set(stages) != {"data"}:  # the data stage loads no weights
        write_profile_weights(params, ws, seed=seed)
    _git(ws, "add", "-A", "--", "params.yaml", "dvc.yaml", "weaksam", "pipeline", "configs")
    _git(ws, "commit", "-qm", f"dry run of {profile} ({resolution})")
    return params


def run_repro(ws: Path, log: Path, stages: Sequence[str] = (), interval: float = 0.5
              ) -> tuple[int, float, TreeMonitor]:
    """``dvc repro [stages]`` in ``ws`` under a :class:`TreeMonitor` (all stages when none
    are named); its output goes to ``log``. Returns (exit status, wall seconds, monitor)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(ws.parent / f".dvc-site-{ws.name}")
    commands = stage_commands(ws)
    dvc = Path(sys.executable).parent / "dvc"
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([str(dvc), "repro", *stages], cwd=ws, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        with TreeMonitor(proc.pid, commands, interval) as mon:
            code = proc.wait()
    return code, time.monotonic() - t0, mon


def stages_not_run(ws: Path, stages: Sequence[str] = ()) -> list[str]:
    """Stages of ``ws/dvc.yaml`` (or the ``stages`` named) without a ``dvc.lock`` entry."""
    lock_path = ws / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())["stages"] if lock_path.is_file() else {}
    return [s for s in (stages or stage_commands(ws)) if s not in lock]


def refresh_code(root: Path, ws: Path) -> dict[str, Any]:
    """Copy the workspace's current code into the kept scratch workspace ``ws`` of an earlier
    run (its dry-run ``params.yaml`` kept; DVC reruns the stages whose code changed); returns
    those params."""
    params_path = ws / "params.yaml"
    text = params_path.read_text()
    copy_code(root, ws)
    params_path.write_text(text)
    return yaml.safe_load(text)


def dryrun(profile: str, root: Path, out: Path, workdir: Path, resolution: str = "full",
           sam_model: str | None = None, images: tuple[int, int] | None = None,
           keep: bool = False, stages: Sequence[str] = (), resume: bool = False
           ) -> dict[str, Any]:
    """Dry-run ``profile`` (module docstring); write and return ``out/<profile>/stages.json``.
    ``stages``: only these stages (with what they depend on; default: the whole DAG).
    ``resume``: continue the kept scratch workspace of a failed run (``workdir/<profile>``)
    with the current code: ``dvc repro`` runs what has not run or changed, and the earlier
    figures of the stages it does not rerun are kept. Raises
    :class:`~weaksam.errors.InputError` naming the log when ``dvc repro`` fails or a stage did
    not run."""
    images = images or IMAGES[resolution]
    ws = workdir / profile
    rep_dir = out / profile
    rep_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    earlier = None
    if resume and (ws / "params.yaml").is_file():
        params = refresh_code(root, ws)
        earlier = json.loads((rep_dir / "stages.json").read_text()) \
            if (rep_dir / "stages.json").is_file() else None
    else:
        params = prepare(root, ws, profile, resolution, sam_model, images, stages=stages)
    setup_s = time.monotonic() - t0
    log = rep_dir / "repro.log"
    if earlier is not None and log.is_file():
        log.rename(rep_dir / f"repro.{int(time.time())}.log")
    code, wall, mon = run_repro(ws, log, stages)
    missing = stages_not_run(ws, stages)
    figures = dict((earlier or {}).get("stages", {}))
    figures.update({s: {"seconds": round(u.seconds, 1), "peak_rss_mib": round(u.peak_rss_mib, 1)}
                    for s, u in mon.usage.items()})
    report = {
        "profile": profile,
        "resolution": resolution,
        "images": {"train": images[0], "test": images[1]},
        "sam_model": params["sam"]["model"],
        "stages_asked": list(stages) or "all",
        "setup_seconds": round(setup_s + (earlier or {}).get("setup_seconds", 0.0), 1),
        "repro_seconds": round(wall + (earlier or {}).get("repro_seconds", 0.0), 1),
        "resumed": int((earlier or {}).get("resumed", 0)) + (earlier is not None),
        "exit_status": code,
        "stages_not_run": missing,
        "stages": dict(sorted(figures.items())),
    }
    with atomic_path(rep_dir / "stages.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    if code != 0 or missing:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise InputError(log, f"dry run of {profile} failed (dvc repro exit {code}; "
                              f"stages not run: {', '.join(missing) or 'none'}):\n{tail}")
    if not keep:
        shutil.rmtree(ws, ignore_errors=True)
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of one dry run's stages (seconds, peak RSS)."""
    asked = report.get("stages_asked", "all")
    what = "whole DAG" if asked == "all" else "stages " + ", ".join(asked)
    lines = [f"{report['profile']} ({what}, {report['resolution']}, SAM {report['sam_model']}, "
             f"{report['images']['train']} + {report['images']['test']} images): "
             f"dvc repro {report['repro_seconds']:.0f} s, set-up {report['setup_seconds']:.0f} s"]
    for stage, u in report["stages"].items():
        lines.append(f"  {stage:48s} {u['seconds']:8.1f} s {u['peak_rss_mib']:9.0f} MiB")
    return "\n".join(lines) + "\n"
