"""The dry run's stage monitor: which process belongs to which stage, its time and memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weaksam.dryrun.monitor import TreeMonitor, command_key, stage_keys


def test_command_key_looks_through_the_shell_and_the_interpreter_path() -> None:
    want = ("-m", "pipeline.wsod", "--method", "oicr", "--source", "ss")
    assert command_key(["/venv/bin/python", *want]) == want
    assert command_key(["/bin/sh", "-c", "python -m pipeline.wsod --method oicr --source ss"]) \
        == want
    assert command_key(["/usr/bin/git", "status"]) is None
    keys = stage_keys({"wsod@oicr-ss": "python -m pipeline.wsod --method oicr --source ss",
                       "data": "python -m pipeline.data"})
    assert keys[want] == "wsod@oicr-ss" and keys[("-m", "pipeline.data")] == "data"


def test_monitor_attributes_a_stage_and_its_worker_with_their_memory(tmp_path: Path) -> None:
    """A stage process (through ``sh -c``) that starts a worker holding ~200 MiB: both count
    for the stage; an unrelated child of the root counts for none."""
    child = ("import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
             "time.sleep(1.5)")
    script = tmp_path / "stage.py"
    script.write_text("import subprocess, sys\n"
                      f"subprocess.run([sys.executable, '-c', {child!r}], check=True)\n")
    stage_cmd = f"python {script}"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    root = subprocess.Popen(["sh", "-c", f"sleep 0.3; {stage_cmd}; sleep 0.5"], env=env)
    with TreeMonitor(root.pid, {"stage": stage_cmd, "other": "python -m nothing"},
                     interval=0.1) as mon:
        assert root.wait(timeout=60) == 0
    assert set(mon.usage) == {"stage"}
    use = mon.usage["stage"]
    assert 1.0 <= use.seconds <= 10.0
    assert use.peak_rss_mib >= 200
    assert len(use.pids) >= 2
