"""dvc.lock records source directories as git tracks them (no interpreter caches), so a fresh
clone's ``dvc status`` agrees with the committed lock."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs the git checkout")
def test_lock_source_dirs_hold_only_tracked_files():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    checked = 0
    for name, stage in lock["stages"].items():
        for dep in stage.get("deps", []):
            path = dep["path"]
            if "nfiles" not in dep or not path.startswith(("weaksam/", "pipeline/")):
                continue
            tracked = subprocess.run(["git", "ls-files", path], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout.split()
            assert dep["nfiles"] == len(tracked), (
                f"dvc.lock stage {name}: {path} hashed with {dep['nfiles']} files, git tracks "
                f"{len(tracked)} (an ignored cache such as __pycache__ in the hash?)")
            checked += 1
    assert checked > 0
