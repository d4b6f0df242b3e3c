"""Ground truth where most images have no instance mask (VOC 2012: most of ``train_aug`` and of
``Main/val`` have no ``SegmentationObject``): pseudo masks and WSIS training go on, the WSIS
evaluation split must have masks, checked before any training."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from pipeline import data as data_stage
from tests.sam.tiny import TINY_SAM
from weaksam.data.index import mask_coverage, subset
from weaksam.dryrun.trees import write_vocdevkit
from weaksam.errors import InputError
from weaksam.sam.model import build_small_sam
from weaksam.wsis.data import Targets, views_from_store


def _voc12_workspace(tmp_path: Path, monkeypatch, test_split: str) -> dict:
    """A VOC 2012 tree (6 train + 7 val images, 2 + 3 segmented) read by the data stage with
    ``Segmentation/train_aug`` for training and ``test_split`` for testing; cwd = tmp_path."""
    fx = write_vocdevkit(tmp_path / "VOCdevkit", 6, 7, seed=4, year="2012", n_segmented=(2, 3))
    monkeypatch.chdir(tmp_path)
    summary = data_stage.run({"seed": 0, "data": {
        "source": "voc", "voc_root": str(fx["root"]), "voc_trainval": "Segmentation/train_aug",
        "voc_test": test_split, "verify_images": True}})
    return summary


def test_data_stage_counts_images_without_masks(tmp_path, monkeypatch):
    s = _voc12_workspace(tmp_path, monkeypatch, "val")
    assert s["trainval"]["images"] == 10 and s["trainval"]["images_without_masks"] == 8
    assert s["test"]["images"] == 7 and s["test"]["images_without_masks"] == 4


def test_mask_coverage_and_subset():
    coco = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": {"counts": "x"}},
                            {"id": 2, "image_id": 2}, {"id": 3, "image_id": 2,
                                                       "segmentation": {"counts": "y"}}]}
    assert mask_coverage(coco) == ([1, 3], [2])      # 3: no object, needs no mask
    sub = subset(coco, [1, 3])
    assert [im["id"] for im in sub["images"]] == [1, 3]
    assert [a["id"] for a in sub["annotations"]] == [1]


def test_views_from_store_leaves_out_images_without_targets():
    class Store:
        image_ids = [4, 5]
        sizes = [(8, 8), (8, 8)]
        factors = [1.0, 1.0]
        maps = [torch.zeros(2, 2, 2), torch.zeros(2, 2, 2)]

    t = Targets(torch.zeros(0, 4).numpy(), torch.zeros(0, dtype=torch.int64).numpy(),
                torch.zeros(0, 8, 8, dtype=torch.bool).numpy())
    assert [v.image_id for v in views_from_store(Store(), {5: t})] == [5]
    assert [v.image_id for v in views_from_store(Store(), None)] == [4, 5]


class _Built(Exception):
    """Raised by a stand-in for the model builder: the stage got past its input checks."""


def _run_wsis(monkeypatch, model: str) -> None:
    import pipeline.wsis as stage

    params = {"seed": 0, "runtime": {"threads": 1, "device": "cpu"},
              "wsis": {"mask_rcnn": {}, "mask2former": {}}}

    def built(name, num_classes, params):
        raise _Built(name)

    monkeypatch.setattr(stage, "load_params", lambda path: params)
    monkeypatch.setattr(stage, "stage_args", lambda *a: type("A", (), {"params": "p.yaml",
                                                                         "model": model}))
    monkeypatch.setattr(stage, "build_model", built)
    stage.main()


@pytest.mark.parametrize("model", ["mask_rcnn", "mask_rcnn_gt"])
def test_wsis_refuses_an_eval_split_without_masks_before_training(tmp_path, monkeypatch, model):
    """Main/val (most images without masks) as the test split: a clear error before the model
    is built (it used to come after training and prediction)."""
    _voc12_workspace(tmp_path, monkeypatch, "val")
    with pytest.raises(InputError, match=r"test\.json: 4 of 7 test images have objects without "
                                         r"instance masks.*Segmentation/val"):
        _run_wsis(monkeypatch, model)


def test_wsis_gt_trains_on_the_images_with_masks(tmp_path, monkeypatch):
    """train_aug with 2 of 10 images segmented and Segmentation/val to test: wsis_gt goes on
    (it used to refuse at once) and trains on the 2 images with masks."""
    import pipeline.wsis as stage
    from weaksam.data.index import load_index

    _voc12_workspace(tmp_path, monkeypatch, "Segmentation/val")
    with pytest.raises(_Built):
        _run_wsis(monkeypatch, "mask_rcnn_gt")
    source, coco, n_without = stage.gt_training_set(
        load_index("data/annotations/trainval.json").to_json())
    assert len(coco["images"]) == 2 and n_without == 8
    assert all("segmentation" in a for a in coco["annotations"])
    with pytest.raises(InputError, match="none of the 3 trainval images"):
        stage.gt_training_set({"images": [{"id": 1}, {"id": 2}, {"id": 3}],
                               "annotations": [{"id": 1, "image_id": 2}]})


def test_pseudo_masks_stage_scores_only_images_with_masks(tmp_path, monkeypatch):
    """train_aug where 8 of 10 images have no SegmentationObject: every image gets its pseudo
    masks, the quality is scored on the 2 with masks (the stage used to raise after all the
    SAM work)."""
    import pipeline.pseudo_masks as stage

    _voc12_workspace(tmp_path, monkeypatch, "Segmentation/val")
    pgt = json.loads(Path("data/annotations/trainval.json").read_text())
    pgt["annotations"] = [{k: v for k, v in a.items() if k != "segmentation"} | {"score": 0.9}
                          for a in pgt["annotations"]]
    Path("pgt/p").mkdir(parents=True)
    Path("pgt/p/trainval.json").write_text(json.dumps(pgt))
    torch.manual_seed(0)
    sam = build_small_sam(TINY_SAM)
    monkeypatch.setattr("weaksam.sam.checkpoint.load_sam", lambda *a, **k: sam)
    params = {"seed": 0, "runtime": {"threads": 1, "device": "cpu"},
              "sam": {"model": "small", "checkpoint": "x.pt", "device": "cpu"},
              "pseudo_masks": {"pgt": "p", "batch_size": 4, "num_figures": 2}}
    monkeypatch.setattr(stage, "load_params", lambda path: copy.deepcopy(params))
    monkeypatch.setattr(stage, "stage_args", lambda desc: type("A", (), {"params": "p.yaml"}))
    stage.main()
    m = json.loads(Path("metrics/pseudo_masks.json").read_text())
    assert m["images"] == 10 and m["boxes_in"] == len(pgt["annotations"])
    assert m["quality_images"] == 2 and m["quality_images_without_gt_masks"] == 8
    gt = json.loads(Path("data/annotations/trainval.json").read_text())
    scored = set(mask_coverage(gt)[0])
    assert m["num_gt"] == sum(a["image_id"] in scored for a in gt["annotations"])
    out = json.loads(Path("pseudo_masks/trainval.json").read_text())
    assert {a["image_id"] for a in out["annotations"]} - scored  # unscored images have masks
    assert Path("reports/figures/pseudo_masks.png").is_file()
