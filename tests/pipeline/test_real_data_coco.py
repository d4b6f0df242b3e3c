"""The DAG, end to end, on a COCO data set in the real format (``data.source: coco``):
instances JSONs with COCO's sparse category ids, polygon and RLE masks, crowd regions
(``iscrowd``, uncompressed RLE) and an image without annotations; the tiny profile's small
models. One instance of every stage of dvc.yaml (as it is when the test runs) but the report
must run (``one_per_stage``: the other rows of a sweep differ in params only, and the tiny
repro of ``test_repro_e2e.py`` runs every row and the report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.workspace import (
    E2E_TIMEOUT,
    assert_stages_ran,
    new_workspace,
    one_per_stage,
    repro,
)
from weaksam.dryrun.trees import COCO_CATEGORIES, write_coco

TINY_COCO = {"extends": "tiny", "data": {
    "source": "coco",
    "coco_trainval_json": "coco/annotations/instances_train2014.json",
    "coco_trainval_image_root": "coco/train2014",
    "coco_test_json": "coco/annotations/instances_val2014.json",
    "coco_test_image_root": "coco/val2014",
    "inputs": "coco"}}


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.xdist_group("dag")  # tests/pipeline/conftest.py DAG_GROUP
@pytest.mark.timeout(E2E_TIMEOUT)
def test_every_stage_on_coco_instances(tmp_path: Path) -> None:
    ws = new_workspace(tmp_path / "ws", "tiny_coco", {"tiny_coco": TINY_COCO})
    fx = write_coco(ws / "coco", n_train=10, n_val=6)
    assert all(fx["kinds"].values()), fx["kinds"]  # polygons, RLE and crowd RLE all present
    stages = one_per_stage(ws)
    seconds = repro(ws, *stages)
    print(f"COCO dvc repro of {len(stages)} stages: {seconds:.0f} s wall")
    assert_stages_ran(ws, stages)

    for split, src in (("trainval", "train"), ("test", "val")):
        out = json.loads((ws / "data" / "annotations" / f"{split}.json").read_text())
        raw = json.loads(Path(fx[src][0]).read_text())
        assert sorted(c["name"] for c in out["categories"]) == sorted(
            n for _, n, _ in COCO_CATEGORIES)
        assert len(out["images"]) == len(raw["images"])
        # every object that is not a crowd region is there, counted in AP (not difficult),
        # with a mask
        plain = [a for a in raw["annotations"] if not a["iscrowd"]]
        kept = [a for a in out["annotations"] if not a.get("difficult", 0)]
        assert len(kept) == len(plain)
        assert all(a.get("segmentation") for a in kept)
