"""Session fixtures of the end-to-end DVC tests (see tests/pipeline/workspace.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from filelock import FileLock

from tests.pipeline.workspace import new_workspace, repro

#: pytest-xdist group of the whole-DAG tests (``make test-long`` runs ``--dist loadgroup``): the
#: tiny repro and the tests on it, and the COCO DAG, on one worker; CI's dry run of the paper
#: profiles (tests/dryrun/test_ci_dryrun.py) on the other
DAG_GROUP = "dag"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the shared tiny repro is ``long`` (``make test-long``, which CI runs) and
    in :data:`DAG_GROUP` (no second worker waits idle on the tiny repro's lock)."""
    for item in items:
        if "tiny_repro" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.long)
            item.add_marker(pytest.mark.xdist_group(DAG_GROUP))


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every pytest-xdist worker of this session (the session's base temp
    folder without xdist), holding the shared tiny repro."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "weaksam-e2e"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_repro(e2e_root: Path) -> dict:
    """The workspace on the tiny profile after one whole ``dvc repro``, built once per session
    (the first worker builds it; the others wait on the lock). Returns ``{"ws": Path,
    "seconds": wall time of the repro, "cpu_seconds": CPU time of its child processes}``.
    Read-only for tests: copy it (``workspace.clone_tree``) before running dvc in it."""
    done = e2e_root / "tiny.json"
    failed = e2e_root / "tiny.failed"
    with FileLock(str(e2e_root / "tiny.lock")):
        if failed.exists():
            pytest.fail(f"the shared tiny dvc repro failed earlier:\n{failed.read_text()}")
        if not done.exists():
            ws = e2e_root / "tiny" / "ws"
            try:
                new_workspace(ws)
                cpu0 = os.times()
                seconds = repro(ws)
                cpu1 = os.times()
            except BaseException as e:
                failed.write_text(str(e)[-12000:])
                raise
            cpu = (cpu1.children_user + cpu1.children_system
                   - cpu0.children_user - cpu0.children_system)
            done.write_text(json.dumps({"ws": str(ws), "seconds": seconds, "cpu_seconds": cpu,
                                        "built_at": time.time()}))
    info = json.loads(done.read_text())
    info["ws"] = Path(info["ws"])
    return info
