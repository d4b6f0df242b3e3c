"""End to end: `dvc repro` of the whole DAG on the tiny profile in a fresh git repo.

Proves the DAG is complete (every dep produced by a stage), every stage runs on the tiny profile,
the report tables are written, and a second `dvc repro` has nothing to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.workspace import E2E_TIMEOUT, assert_whole_dag_ran, clone_tree, dvc, repro


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_dvc_repro_tiny_profile(tiny_repro: dict, tmp_path: Path) -> None:
    # the session's one tiny `dvc repro` (tests/pipeline/conftest.py), shared with the
    # sharing, ablation and determinism tests
    print(f"tiny dvc repro: {tiny_repro['seconds']:.0f} s wall, "
          f"{tiny_repro['cpu_seconds']:.0f} s CPU of its processes")
    ws = clone_tree(tiny_repro["ws"], tmp_path / "ws")
    assert_whole_dag_ran(ws)
    assert (ws / "metrics" / "recall_ss.json").is_file()
    table8 = (ws / "reports" / "tables" / "table8.md").read_text()
    assert "this run" in table8 and "paper" in table8
    index = (ws / "reports" / "README.md").read_text()
    assert "Profile of this run: **tiny**" in index
    for md in (ws / "reports" / "tables").glob("*.md"):
        assert md.read_text().strip(), f"{md.name} is empty"
        assert f"(tables/{md.name})" in index, f"reports/README.md does not list {md.name}"
    for fig in ("fig4_roi_similarity", "fig6_proposals", "fig8_detections"):
        assert (ws / "reports" / "figures" / f"{fig}.png").stat().st_size > 0

    r = dvc("repro", cwd=ws, check=False)  # a no-op: nothing reruns
    assert r.returncode == 0, r.stderr
    assert "up to date" in (r.stdout + r.stderr).lower(), r.stdout
    r = dvc("status", "-q", cwd=ws, check=False)
    assert r.returncode == 0, r.stdout


def test_finished_preliminary_training_reruns(tiny_repro: dict, tmp_path: Path) -> None:
    """A forced rerun of a finished ``retrain_prelim`` stage (its checkpoint of the last epoch
    still on disk) trains from scratch and writes the same model: a finished checkpoint is not
    resumed (that once left the last epoch's per-RoI losses unrecorded and failed the stage)."""
    ws = clone_tree(tiny_repro["ws"], tmp_path / "ws")
    name = "prelim_frcnn_mist_weaksam_adaptive"
    assert (ws / "checkpoints" / f"retrain_{name}" / "last.pt").is_file()
    before = (ws / "retrain" / name / "model.pt").read_bytes()
    repro(ws, "-f", "-s", "retrain_prelim@frcnn-mist_weaksam_adaptive")
    assert (ws / "retrain" / name / "model.pt").read_bytes() == before
    assert (ws / "retrain" / name / "roi_losses.npz").is_file()
