"""Sharing through a DVC remote (README, "Sharing intermediates"): the tiny profile's outputs
are pushed to a local remote with their run cache; a fresh clone gets every output with
``dvc pull`` (then ``dvc status`` is clean and ``dvc repro`` has nothing to do), and another
clone gets them with ``dvc repro --pull``, running no stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.pipeline.workspace import E2E_TIMEOUT, clone_tree, dvc, git


def _cached_outs(ws: Path) -> list[str]:
    """Paths of the outputs dvc.lock records (every stage; cached or not)."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return sorted({o["path"] for st in lock["stages"].values() for o in st.get("outs", [])})


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b, (a, b)
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_push_then_pull_in_a_fresh_clone(tiny_repro: dict, tmp_path: Path) -> None:
    ws = clone_tree(tiny_repro["ws"], tmp_path / "ws")
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=ws)
    git("add", "-A", cwd=ws)
    git("commit", "-qm", "tiny results (dvc.lock, metrics, reports) and the team's remote", cwd=ws)
    dvc("push", "--run-cache", cwd=ws)
    r = dvc("status", "--cloud", cwd=ws)
    assert "in sync" in r.stdout, r.stdout
    assert (remote / "runs").is_dir(), "the run cache was not pushed"

    outs = _cached_outs(ws)
    assert "models/sam_small.pt" in outs and "proposals/ss" in outs

    # a colleague clones the git repo: code, dvc.lock, metrics; no cached outputs
    clone = tmp_path / "clone"
    git("clone", "-q", str(ws), str(clone), cwd=tmp_path)
    assert not (clone / "models" / "sam_small.pt").exists()
    assert dvc("status", "-q", cwd=clone, check=False).returncode != 0  # outputs missing
    dvc("pull", cwd=clone)
    assert dvc("status", "-q", cwd=clone, check=False).returncode == 0
    r = dvc("repro", cwd=clone)
    assert "Running stage" not in r.stdout, r.stdout
    assert "up to date" in r.stdout.lower(), r.stdout
    for out in outs:
        a, b = ws / out, clone / out
        if a.is_dir():
            _same_tree(a, b)
        else:
            assert a.read_bytes() == b.read_bytes(), out

    # another colleague: `dvc repro --pull` fetches what was run instead of running it
    clone2 = tmp_path / "clone2"
    git("clone", "-q", str(ws), str(clone2), cwd=tmp_path)
    r = dvc("repro", "--pull", cwd=clone2)
    assert "Running stage" not in r.stdout, r.stdout
    assert dvc("status", "-q", cwd=clone2, check=False).returncode == 0
    assert (clone2 / "models" / "sam_small.pt").read_bytes() == (
        ws / "models" / "sam_small.pt").read_bytes()
