"""Run a stage's ``main()`` in the test process, as DVC would run its command (minus the
interpreter): the stage tests that stop and rerun a stage in a scratch workspace."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def run_stage(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m args[0] args[1:]`` in ``cwd``, in-process (``sys.argv`` and the working
    directory restored by ``monkeypatch`` after the test)."""
    mod = importlib.import_module(args[0])
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [args[0], *args[1:]])
    mod.main()
