"""A VOCdevkit tree in the real format (``data.source: voc``: 1-based inclusive boxes,
``difficult``, the 20 VOC classes, ``ImageSets/Main``) through the ``data`` stage of a DVC
workspace on the tiny profile. Every other stage on a VOCdevkit tree: CI's dry run of
``paper_voc07`` (``make dryrun``: one instance of every stage, real architectures), which
reads the same generated layout (``weaksam.dryrun.trees.write_vocdevkit``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.workspace import E2E_TIMEOUT, assert_stages_ran, new_workspace, repro
from weaksam.data.voc import VOC_CLASSES
from weaksam.dryrun.trees import write_vocdevkit

TINY_VOC = {"extends": "tiny", "data": {"source": "voc", "voc_root": "VOCdevkit/VOC2007",
                                        "voc_trainval": "trainval", "voc_test": "test",
                                        "inputs": "VOCdevkit/VOC2007"}}


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_data_stage_on_a_vocdevkit_tree(tmp_path: Path) -> None:
    ws = new_workspace(tmp_path / "ws", "tiny_voc", {"tiny_voc": TINY_VOC})
    fx = write_vocdevkit(ws / "VOCdevkit", n_trainval=10, n_test=6)
    seconds = repro(ws, "data")
    print(f"VOC dvc repro data: {seconds:.0f} s wall")
    assert_stages_ran(ws, ["data"])

    trainval = json.loads((ws / "data" / "annotations" / "trainval.json").read_text())
    assert [c["name"] for c in trainval["categories"]] == list(VOC_CLASSES)
    assert [c["id"] for c in trainval["categories"]] == list(range(1, 21))
    name, cname, (x1, y1, x2, y2), diff = fx["first"]
    first = next(a for a in trainval["annotations"] if a["image_id"] == int(name))
    assert first["category_id"] == VOC_CLASSES.index(cname) + 1
    assert first["bbox"] == [x1, y1, x2 - x1, y2 - y1]  # 1-based inclusive -> 0-based xywh
    for split, js in (("trainval", trainval),
                      ("test", json.loads((ws / "data/annotations/test.json").read_text()))):
        images, objects, difficult = fx["counts"][split]
        assert len(js["images"]) == images and len(js["annotations"]) == objects
        assert sum(a["difficult"] for a in js["annotations"]) == difficult
