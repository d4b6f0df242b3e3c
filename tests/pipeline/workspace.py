"""Helpers of the end-to-end DVC tests: copy the workspace's code into a temporary git repo,
run ``dvc`` / ``git`` there, and build a tiny-profile ``dvc repro`` once per test session.

The tiny repro is shared by every test of the session (also across pytest-xdist workers,
through a file lock): tests copy it (:func:`clone_tree`) before running ``dvc`` in it, so none
of them changes what another sees. Each workspace has its own DVC cache (a shared one would let
one test push another's half-written run-cache entries).
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

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
#: pytest-timeout of a test that runs (or waits for) a whole tiny DAG: a few minutes on an idle
#: 2-core machine, far more when the machine is shared
E2E_TIMEOUT = 3600


def env_for(cwd: Path) -> dict[str, str]:
    """The environment of the commands run in workspace ``cwd``: the venv's ``bin`` first on
    PATH (stage commands call ``python``) and a private DVC site cache (a stale lock of
    another, killed dvc cannot block this one)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env["DVC_SITE_CACHE_DIR"] = str(cwd.parent / "dvc-site")
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("WEAKSAM_LOGLEVEL", None)
    return env


def run(cmd: Sequence[str], cwd: Path, timeout: float = 1800,
        check: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` (:func:`env_for`), output captured. ``check``: raise with the
    output's tail on a non-zero exit. Not for commands that leave a daemon behind holding
    their output (``dvc queue start``): see :func:`start_daemon`."""
    r = subprocess.run(list(cmd), cwd=cwd, env=env_for(cwd), capture_output=True, text=True,
                       timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed in {cwd}:\n"
                             f"{r.stdout[-6000:]}\n{r.stderr[-6000:]}")
    return r


def dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 1800
        ) -> subprocess.CompletedProcess:
    """``dvc args...`` in ``cwd``."""
    return run([str(BIN / "dvc"), *args], cwd, timeout=timeout, check=check)


def start_daemon(cmd: Sequence[str], cwd: Path, log: Path, timeout: float = 300) -> None:
    """Run a command that starts a background daemon (``dvc queue start``): its output goes to
    ``log``, not to pipes, since the daemon keeps them open and a captured run would wait for
    it to exit."""
    with log.open("ab") as out:
        r = subprocess.run(list(cmd), cwd=cwd, env=env_for(cwd), stdin=subprocess.DEVNULL,
                           stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    assert r.returncode == 0, log.read_text()[-4000:]


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``git args...`` in ``cwd`` (a fixed committer identity)."""
    return run(["git", *GIT_ID, *args], cwd, check=check)


def copy_workspace(dst: Path) -> None:
    """Copy the code and config of the workspace (git-tracked and new, not ignored files; no
    outputs a developer's checkout may hold) into ``dst``: the DAG as it is in dvc.yaml now."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    keep_dirs = ("weaksam/", "pipeline/", "configs/", ".dvc/")
    for f in files:
        top_level_file = "/" not in f
        if not (top_level_file or f.startswith(keep_dirs)) or not (ROOT / f).is_file():
            continue
        if f.startswith(".dvc/") and not f.endswith(("config", ".gitignore")):
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


def new_workspace(ws: Path, profile: str = "tiny",
                  profile_files: dict[str, dict] | None = None) -> Path:
    """A fresh git repo at ``ws`` with the workspace's code, ``profile`` applied with the
    documented command (``python -m pipeline.use_profile``), and one commit.
    ``profile_files``: extra ``configs/<name>.yaml`` written first (they may ``extends`` the
    workspace's profiles)."""
    ws.mkdir(parents=True)
    copy_workspace(ws)
    for name, content in (profile_files or {}).items():
        (ws / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    git("init", "-q", "-b", "main", cwd=ws)
    run([str(BIN / "python"), "-m", "pipeline.use_profile", profile], ws, check=True)
    git("add", "-A", cwd=ws)
    git("commit", "-qm", f"workspace on the {profile} profile", cwd=ws)
    return ws


def repro(ws: Path, *args: str) -> float:
    """``dvc repro args...`` in ``ws`` (must succeed); returns its wall time in seconds."""
    t0 = time.time()
    r = dvc("repro", *args, cwd=ws, check=False)
    assert r.returncode == 0, f"dvc repro failed:\n{r.stdout[-8000:]}\n{r.stderr[-6000:]}"
    return time.time() - t0


def clone_tree(src: Path, dst: Path) -> Path:
    """A full copy of workspace ``src`` (git repo, outputs, DVC state) at ``dst``."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def stage_names(ws: Path) -> list[str]:
    """Every stage of the DAG in ``ws`` (matrix stages expanded, ``name@item``)."""
    r = dvc("stage", "list", "--name-only", cwd=ws)
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def one_per_stage(ws: Path, leave_out: Sequence[str] = ("report",)) -> list[str]:
    """The first instance of every stage of ``ws``'s DAG (``name@item`` of a foreach / matrix
    stage), bar ``leave_out``: each stage's code once, the sweeps' other rows differing in
    params only (the tiny repro runs them all)."""
    seen: dict[str, str] = {}
    for name in stage_names(ws):
        seen.setdefault(name.split("@")[0], name)
    return [n for base, n in seen.items() if base not in leave_out]


def assert_stages_ran(ws: Path, stages: Sequence[str]) -> None:
    """Each of ``stages`` has a dvc.lock entry, every output recorded there exists, and
    ``dvc status`` of those stages is clean. (The lock may hold other stages: the workspace's
    code is copied with the committed lock of the default run.)"""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    missing = [s for s in stages if s not in lock]
    assert not missing, f"stages that did not run: {missing}"
    for name in stages:
        for o in lock[name].get("outs", []):
            assert (ws / o["path"]).exists(), f"stage {name}: output {o['path']} missing"
    r = dvc("status", "-q", *stages, cwd=ws, check=False)
    assert r.returncode == 0, dvc("status", *stages, cwd=ws, check=False).stdout


def assert_whole_dag_ran(ws: Path) -> None:
    """Every stage of ``ws``'s dvc.yaml ran (:func:`assert_stages_ran`)."""
    assert_stages_ran(ws, stage_names(ws))
