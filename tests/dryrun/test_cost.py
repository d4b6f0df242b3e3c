"""Projection arithmetic and markdown of weaksam.dryrun.cost on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weaksam.dryrun import cost as C
from weaksam.errors import InputError


def test_work_and_stage_projection_arithmetic():
    tput = C.Throughput(fp32=10.0, amp=40.0)
    train = C.Work("train", 1000, 2.0, 3.0)  # 1000 x 2 GFLOP x 3 = 6e12 FLOPs
    test = C.Work("test", 500, 4.0, 1.0, amp=True)  # 2e12 FLOPs at 40 TFLOP/s
    assert train.flops == pytest.approx(6e12)
    assert train.gpu_hours(tput) == pytest.approx(6e12 / 10e12 / 3600)
    assert test.gpu_hours(tput) == pytest.approx(2e12 / 40e12 / 3600)
    stage = C.StageCost("s", [train, test])
    assert stage.flops() == pytest.approx(8e12)
    assert stage.gpu_hours(tput) == pytest.approx((0.6 + 0.05) / 3600)


def test_markdown_says_not_run_for_stages_without_dry_run_figures():
    ds = C.DataSet("voc", 5011, 4952, "VOC2007 trainval / test")
    costs = [C.StageCost("wsod@mist-ss", [C.Work("train", 3600, 1000.0, 1.0)], "x"),
             C.StageCost("data", [], "no network")]
    dry = {"profile": "p", "resolution": "full", "images": {"train": 4, "test": 2},
           "sam_model": "vit_b", "stages": {"data": {"seconds": 12.5, "peak_rss_mib": 300.0}}}
    md = C.profile_table("p", costs, ds, dry, C.Throughput(fp32=1.0, amp=1.0))
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| wsod@") or line.startswith("| data")}
    assert "n/a: not run | n/a: not run" in rows["wsod@mist-ss"]
    assert "| 12.5 | 300 |" in rows["data"]
    # 3600 x 1000 GFLOP at 1 TFLOP/s = 3600 s = 1 GPU-h
    assert "| 3.60 | 1.00 |" in rows["wsod@mist-ss"]
    assert "wsod@mist-ss" in md.split("Paper Table 6")[0]


def test_a_stage_the_full_run_did_not_reach_takes_the_reduced_figures_marked():
    """Regression: a full-resolution run stopped part-way (out of memory) hid every reduced
    figure of its profile, since the table took one run per profile."""
    ds = C.DataSet("voc", 5011, 4952, "VOC2007 trainval / test")
    costs = [C.StageCost(s, [], "no network") for s in ("data", "wsis@mask_rcnn", "report")]
    full = {"resolution": "full", "images": {"train": 4, "test": 2}, "sam_model": "vit_b",
            "stages": {"data": {"seconds": 12.5, "peak_rss_mib": 300.0}}}
    reduced = {"resolution": "reduced", "images": {"train": 3, "test": 2}, "sam_model": "vit_b",
               "stages": {"data": {"seconds": 2.0, "peak_rss_mib": 200.0},
                          "wsis@mask_rcnn": {"seconds": 37.1, "peak_rss_mib": 2013.7}}}
    md = C.profile_table("p", costs, ds, [full, reduced], C.Throughput(fp32=1.0, amp=1.0))
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 12.5 | 300 |" in rows["data"]
    assert "| 37.1 (reduced) | 2014 (reduced) |" in rows["wsis@mask_rcnn"]
    assert "n/a: not run | n/a: not run" in rows["report"]
    assert "full resolution" in md and "did not run: reduced resolution" in md


def test_wsod_stage_counts_image_passes_of_the_schedule():
    cfg = {"proposals_ss": {"max_per_image": 2001},
           "wsod": {"backbone": "vgg16", "max_proposals": 2001, "roi_size": 7, "hidden": 4096,
                    "dilated_conv5": True, "max_size": 2000, "flip": True, "test_flip": None,
                    "train_scales": [480], "test_scales": [480, 576],
                    "mist": {"schedule": "multistep", "iterations": 10, "batch_size": 4,
                             "cdb": True, "cdb_adversary": "second_pass", "cdb_block": 3,
                             "cdb_net": "released", "train_scales": None,
                             "test_scales": None}}}
    ds = C.DataSet("voc", 100, 50, "hand-made")
    cost = C.stage_cost("wsod@mist-weaksam", "wsod", {"method": "mist", "source": "weaksam"},
                        cfg, ds)
    train, test = cost.works
    assert train.image_passes == 10 * 4 * 2  # iterations x batch x (second CDB pass)
    assert train.factor == 3.0
    assert test.image_passes == (100 + 50) * 2 * 2  # images x scales x flips
    assert "213 RoIs" in cost.basis  # WeakSAM proposals per image (paper Table 6)


def test_wsod_stage_follows_the_methods_recipe():
    """The paper profiles' recipes (issue 23) set the schedule, scales and test flips the WSOD
    stage runs; the cost model read the method's section only (OICR: 70000 iterations and
    flipped tests instead of the release's 125300 unflipped)."""
    root = Path(__file__).resolve().parents[2]
    cfg = C.load_config("paper_voc07", root / "configs", root / "params.yaml")
    ds = C.DataSet("voc", 100, 50, "hand-made")
    oicr = C.stage_cost("wsod@oicr-weaksam", "wsod", {"method": "oicr", "source": "weaksam"},
                        cfg, ds)
    train, test = oicr.works
    assert train.image_passes == 125300 * 2  # release base.py: 50 epochs of 2-image steps
    assert test.image_passes == (100 + 50) * 5 * 1  # 5 scales, MultiScaleFlipAug flip=False
    mist = C.stage_cost("wsod@mist-weaksam", "wsod", {"method": "mist", "source": "weaksam"},
                        cfg, ds)
    assert mist.works[1].image_passes == (100 + 50) * 6 * 2  # BBOX_AUG: 6 scales + flips


def test_retraining_phases_and_the_oracle_row_count_their_epochs():
    """The preliminary training, the drop phase and the oracle rows (one run of every epoch)
    together: an oracle row costs what a preliminary and a drop phase cost."""
    root = Path(__file__).resolve().parents[2]
    cfg = C.load_config("paper_voc07", root / "configs", root / "params.yaml")
    ds = C.DataSet("voc", 100, 50, "hand-made")
    item = {"detector": "frcnn", "pgt": "mist_weaksam_adaptive", "variant": "drop"}
    s = cfg["retrain"]["frcnn"]["schedule"]
    p, e = int(s["prelim_epochs"]), int(s["epochs"])
    prelim = C.stage_cost("retrain_prelim@x", "retrain_prelim", item, cfg, ds)
    drop = C.stage_cost("retrain@x", "retrain", item, cfg, ds)
    oracle = C.stage_cost("retrain_oracle@frcnn_gt", "retrain_oracle",
                          {"detector": "frcnn", "kind": "gt"}, cfg, ds)
    assert [w.image_passes for w in prelim.works] == [p * 100]
    assert [w.image_passes for w in drop.works] == [(e - p) * 100, 50]
    assert [w.image_passes for w in oracle.works] == [e * 100, 50]
    assert oracle.flops() == pytest.approx(prelim.flops() + drop.flops())
    assert f"epochs 0-{e} of {e}" in oracle.basis
    assert C.stage_cost("oracle_pgt", "oracle_pgt", {}, cfg, ds).works == []


def test_data_set_sizes_and_unknown_split(tmp_path):
    cfg = {"data": {"source": "voc", "voc_root": "VOCdevkit/VOC2012",
                    "voc_trainval": "Segmentation/train_aug", "voc_test": "Segmentation/val"}}
    ds = C.data_set(cfg, tmp_path / "p.yaml")
    assert (ds.train, ds.test) == (10582, 1449)
    coco = {"data": {"source": "coco", "coco_trainval_json": "a/instances_train2017.json",
                     "coco_test_json": "a/instances_val2017.json"}}
    assert (C.data_set(coco, tmp_path).train, C.data_set(coco, tmp_path).test) == (118287, 5000)
    cfg["data"]["voc_test"] = "nonsense"
    with pytest.raises(InputError, match="p.yaml.*unknown VOC split"):
        C.data_set(cfg, tmp_path / "p.yaml")


def test_stage_names_expand_like_dvc(tmp_path):
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text("stages:\n  data:\n    cmd: a\n"
                   "  wsod:\n    matrix:\n      method: [oicr, mist]\n      source: [ss]\n"
                   "    cmd: b\n"
                   "  pgt:\n    matrix:\n      run: ${pgt.runs}\n      mode: [top1]\n    cmd: c\n"
                   "  retrain:\n    foreach:\n      r1: {detector: frcnn}\n    do:\n      cmd: d\n")
    names = C.stage_names(dvc, {"pgt": {"runs": ["mist_weaksam"]}})
    assert [n for n, _, _ in names] == ["data", "wsod@oicr-ss", "wsod@mist-ss",
                                        "pgt@mist_weaksam-top1", "retrain@r1"]
    assert names[1][2] == {"method": "oicr", "source": "ss"}


def test_read_dryrun(tmp_path):
    assert C.read_dryrun(tmp_path / "absent.json") is None
    bad = tmp_path / "stages.json"
    bad.write_text(json.dumps({"stages": {"data": {"seconds": "fast"}}}))
    with pytest.raises(InputError, match="stages.json.*'data'"):
        C.read_dryrun(bad)


def test_dryruns_lists_the_folders_that_have_the_profile_in_order(tmp_path):
    def write(folder: str, profile: str, resolution: str) -> None:
        d = tmp_path / folder / profile
        d.mkdir(parents=True)
        (d / "stages.json").write_text(json.dumps(
            {"resolution": resolution, "stages": {"data": {"seconds": 1, "peak_rss_mib": 2}}}))

    write("full", "p1", "full")
    write("reduced", "p1", "reduced")
    write("reduced", "p2", "reduced")
    dirs = [tmp_path / "full", tmp_path / "reduced"]
    assert [r["resolution"] for r in C.dryruns(dirs, "p1")] == ["full", "reduced"]
    assert [r["resolution"] for r in C.dryruns(dirs, "p2")] == ["reduced"]
    assert C.dryruns(dirs, "p3") == []


@pytest.mark.long
@pytest.mark.xdist_group("dag")  # beside the whole-DAG tests, not the dry run's core
def test_committed_cost_model_is_what_the_profiles_and_dry_runs_give_now(monkeypatch):
    # a profile edit (e.g. a schedule) or new dry-run figures without `make cost-model` left
    # docs/cost_model.md projecting the old run (it once kept 14 query-detector epochs for 42)
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs/cost_model.md").read_text()
    profiles = text.split("--profiles ", 1)[1].split(" --dryrun-dir", 1)[0].split()
    monkeypatch.chdir(root)
    got = C.build_markdown(profiles, Path("configs"), Path("params.yaml"), Path("dvc.yaml"),
                           [Path("dryrun/full"), Path("dryrun/reduced")], C.Throughput())
    assert got == text, "docs/cost_model.md is stale: run make cost-model"
