"""CI's dry run of the paper profiles as a ``long`` test (``make test-long``, which ``.ci/run``
calls): ``paper_voc07`` with the real architectures on a generated VOCdevkit tree, one instance
of every stage (the Makefile's ``DRYRUN_CI_STAGES``, as ``make dryrun`` runs it), and the data
stage of every other paper profile on its own layout. Run in the test session so that it shares
the two cores with the whole-DAG tests (``xdist_group``: one worker each) instead of following
them; its figures go to a temporary folder, not to the committed ``dryrun/``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dryrun.test_ci_stages import ROOT, ci_stages

BIN = Path(sys.executable).parent
OTHER_PROFILES = ("paper_voc12", "paper_voc12_wsis", "paper_coco", "paper_coco17")
TIMEOUT = 3600


def _dryrun(out: Path, work: Path, *args: str) -> None:
    r = subprocess.run([str(BIN / "weaksam"), "--root", str(ROOT), "dryrun", *args,
                        "--resolution", "reduced", "--out", str(out), "--workdir", str(work)],
                       cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert r.returncode == 0, f"weaksam dryrun {' '.join(args)}:\n{r.stdout[-6000:]}\n" \
                              f"{r.stderr[-8000:]}"


def _report(out: Path, profile: str) -> dict:
    return json.loads((out / profile / "stages.json").read_text())


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.xdist_group("dryrun")
@pytest.mark.timeout(TIMEOUT)
def test_paper_voc07_every_stage_and_the_other_layouts(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    stages = ci_stages()
    _dryrun(out, work, "paper_voc07", "--sam-model", "vit_b", "--stages", *stages)
    rep = _report(out, "paper_voc07")
    assert rep["exit_status"] == 0 and rep["stages_not_run"] == []
    assert rep["sam_model"] == "vit_b"
    assert set(stages) <= set(rep["stages"]), sorted(set(stages) - set(rep["stages"]))
    _dryrun(out, work, *OTHER_PROFILES, "--stages", "data")
    for profile in OTHER_PROFILES:
        assert _report(out, profile)["stages_not_run"] == []
