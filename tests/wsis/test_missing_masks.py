"""Ground truth where most images have no instance mask (VOC 2012: most of ``train_aug`` and of
``Main/val`` have no ``SegmentationObject``): pseudo masks and WSIS training go on, the WSIS
evaluation is on the test images with masks (checked before any training: an error when none
has masks, or when an image has some objects masked and others not)."""

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


def _voc12_workspace(tmp_path: Path, monkeypatch, test_split: str,
                     n_segmented: tuple[int, int] = (2, 3)) -> dict:
    """A VOC 2012 tree (6 train + 7 val images, 2 + 3 segmented) read by the data stage with
    ``Segmentation/train_aug`` for training and ``test_split`` for testing; cwd = tmp_path."""
    fx = write_vocdevkit(tmp_path / "VOCdevkit", 6, 7, seed=4, year="2012",
                         n_segmented=n_segmented)
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
    # a crowd region without a mask does not decide (no instance)
    crowd = {**coco, "annotations": [*coco["annotations"],
                                     {"id": 4, "image_id": 3, "iscrowd": 1}]}
    assert mask_coverage(crowd) == ([1, 3], [2])


def test_mask_coverage_refuses_a_partially_masked_image_given_its_file():
    """Image 2 has one object masked, one not: without a path it counts as without masks
    (pseudo_masks, data metrics); with the annotation file it is an error naming the file and
    the image (VOC and COCO mask every object of a segmented image)."""
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
            "annotations": [{"id": 1, "image_id": 1},
                            {"id": 2, "image_id": 2, "segmentation": {"counts": "x"}},
                            {"id": 3, "image_id": 2}]}
    assert mask_coverage(coco) == ([], [1, 2])
    with pytest.raises(InputError, match=r"test\.json: image 2 \(b\.jpg\): 1 of its 2 objects "
                                         r"have an instance mask"):
        mask_coverage(coco, Path("data/annotations/test.json"))
    coco["annotations"] = coco["annotations"][:2]
    assert mask_coverage(coco, Path("t.json")) == ([2], [1])


def test_fully_masked_split_is_evaluated_whole_in_its_order(tmp_path):
    """The default profile's synthetic test split masks every object: the evaluated split is
    the split itself (same dict, same image order), so its outputs stay byte-identical."""
    import pipeline.wsis as stage
    from weaksam.data.synthetic import generate_split

    gt = generate_split("test", 6, tmp_path / "img", str(tmp_path / "img"), seed=3,
                        progress=False)
    ids = [im["id"] for im in gt["images"]]
    with_masks, without = mask_coverage(gt, Path("test.json"))
    assert with_masks == ids and without == []
    assert subset(gt, with_masks) == gt
    assert [im["id"] for im in subset(gt, reversed(ids))["images"]] == ids
    out, n_without = stage.eval_split(gt)
    assert out is gt and n_without == 0


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


def _run_wsis_stubbed(monkeypatch, model: str) -> dict:
    """The wsis stage end to end with stand-ins for the model, its training and its
    predictions (the ground truth of each predicted image as perfect predictions); returns
    the image ids it predicted on and the metrics it wrote."""
    import pipeline.wsis as stage

    params = {"seed": 0, "runtime": {"threads": 1, "device": "cpu"}, "backbone_pretrain": {},
              "wsis": {"backbone": "resnet50", "short_side": 32, "max_size": 64, "flip": False,
                       "max_det": 10, "eval_ignore_difficult": False, "mask2former": {},
                       "mask_rcnn": {"epochs": 1, "batch_size": 1, "lr": 0.1,
                                     "weight_decay": 0.0, "optimizer": "sgd",
                                     "warmup_steps": 0, "grad_clip": 0.0}}}
    predicted: list[int] = []
    gt = json.loads(Path("data/annotations/test.json").read_text())

    def predict(model, views, sizes, cat_ids, **kw):
        predicted.extend(v.image_id for v in views)
        return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "score": 1.0, "segmentation": a["segmentation"]}
                for a in gt["annotations"] if a["image_id"] in predicted]

    monkeypatch.setattr(stage, "load_params", lambda path: copy.deepcopy(params))
    monkeypatch.setattr(stage, "stage_args", lambda *a: type("A", (), {"params": "p.yaml",
                                                                         "model": model}))
    monkeypatch.setattr(stage, "build_model",
                        lambda *a: (torch.nn.Linear(1, 1), 1, None, None))
    monkeypatch.setattr(stage, "train_instance_model", lambda *a, **k: {"train_seconds": 0.0})
    monkeypatch.setattr(stage, "predict_results", predict)
    stage.main()
    return {"predicted": predicted,
            "metrics": json.loads(Path(f"metrics/wsis_{model}.json").read_text())}


def test_wsis_evaluates_the_test_images_with_masks(tmp_path, monkeypatch):
    """Main/val as the test split, 3 of its 7 images segmented (VOC 2012 Main/val, VOC 2007
    test): the stage trains, predicts on the 3 and scores mask AP on them, the 4 others counted
    (it used to refuse the split before training, and after training before that)."""
    _voc12_workspace(tmp_path, monkeypatch, "val")
    gt = json.loads(Path("data/annotations/test.json").read_text())
    masked, unmasked = mask_coverage(gt)
    assert len(masked) == 3 and len(unmasked) == 4
    out = _run_wsis_stubbed(monkeypatch, "mask_rcnn_gt")
    assert out["predicted"] == masked                  # in the split's order
    m = out["metrics"]
    assert m["eval_images"] == 3 and m["eval_images_without_masks"] == 4
    assert m["ap50"] == pytest.approx(100.0) and m["coco"]["AP"] == pytest.approx(100.0)
    preds = json.loads(Path("wsis/mask_rcnn_gt/predictions_test.json").read_text())
    assert {p["image_id"] for p in preds} == set(masked)
    n_masked_objects = sum(a["image_id"] in set(masked) for a in gt["annotations"])
    assert m["predictions_per_image"] == round(n_masked_objects / 3, 2)


@pytest.mark.parametrize("model", ["mask_rcnn", "mask_rcnn_gt"])
def test_wsis_refuses_a_test_split_without_any_mask_before_training(tmp_path, monkeypatch,
                                                                     model):
    """Main/val with no segmented image: a clear error naming the annotation file before the
    model is built."""
    _voc12_workspace(tmp_path, monkeypatch, "val", n_segmented=(2, 0))
    with pytest.raises(InputError, match=r"test\.json: none of the 7 test images has instance "
                                         r"masks.*Segmentation/val"):
        _run_wsis(monkeypatch, model)


def test_wsis_refuses_a_partially_masked_test_image_before_training(tmp_path, monkeypatch):
    """A segmented test image with one more object that has no mask: an error naming the
    annotation file and the image's file, before the model is built."""
    _voc12_workspace(tmp_path, monkeypatch, "Segmentation/val")
    path = Path("data/annotations/test.json")
    gt = json.loads(path.read_text())
    extra = {k: v for k, v in gt["annotations"][0].items() if k != "segmentation"}
    gt["annotations"].append({**extra, "id": max(a["id"] for a in gt["annotations"]) + 1})
    path.write_text(json.dumps(gt))
    im = next(i for i in gt["images"] if i["id"] == extra["image_id"])
    n = sum(a["image_id"] == im["id"] for a in gt["annotations"])
    with pytest.raises(InputError, match=rf"test\.json: image {im['id']} "
                                         rf"\({im['file_name']}\): {n - 1} of its {n} objects"):
        _run_wsis(monkeypatch, "mask_rcnn")


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


def test_wsis_figure_shows_test_images_with_masks(tmp_path, monkeypatch):
    """Main/val with 3 of 7 images segmented: the figure's rows are test images with masks
    (the only ones the wsis stages predict on); it used to take the first images with an
    object, whose ground truth has no mask to draw."""
    import pipeline.wsis_figure as stage

    _voc12_workspace(tmp_path, monkeypatch, "val")
    gt = json.loads(Path("data/annotations/test.json").read_text())
    masked, unmasked = mask_coverage(gt)
    assert [im["id"] for im in gt["images"]][0] in unmasked  # the old choice drew no mask
    for name, _ in stage.MODELS:
        Path("wsis", name).mkdir(parents=True)
        Path("wsis", name, "predictions_test.json").write_text("[]")
    monkeypatch.setattr(stage, "load_params",
                        lambda path: {"wsis_figure": {"score": 0.5, "num_figures": 2}})
    monkeypatch.setattr(stage, "stage_args", lambda desc: type("A", (), {"params": "p.yaml"}))
    drawn = []
    real_draw = stage.draw_instance_grid
    monkeypatch.setattr(stage, "draw_instance_grid",
                        lambda path, rows, names: (drawn.extend(rows),
                                                   real_draw(path, rows, names)))
    stage.main()
    assert len(drawn) == 2 and stage.FIGURE.is_file()
    shown_gt = [panels[0][1] for _, panels in drawn]
    assert [anns[0]["image_id"] for anns in shown_gt] == masked[:2]
    assert all("segmentation" in a for anns in shown_gt for a in anns)
