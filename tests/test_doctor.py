"""weaksam.doctor: each check on hand-built params and folders, passing and failing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from weaksam import doctor
from weaksam.cli import main
from weaksam.doctor import (
    FAIL,
    OK,
    WARN,
    check_data,
    check_devices,
    check_files,
    check_pins,
    check_weights,
)
from weaksam.weights import write_random

BIN = Path(sys.executable).parent


def test_pins_pass_here_and_fail_on_mismatch(monkeypatch):
    found = {f.message.split()[0]: f.level for f in check_pins()}
    assert found["torch"] == OK and found["torchvision"] == OK
    monkeypatch.setattr(doctor.md, "requires", lambda _: ["torch==0.0.1", "tqdm", "nopkg==1"])
    out = check_pins()
    assert [f.level for f in out] == [FAIL, FAIL]  # unpinned tqdm is not checked
    assert out[0].message.startswith("torch 2.14.1 installed, pinned 0.0.1")
    assert out[1].message == "nopkg: not installed (pinned 1)"


def test_devices():
    out = check_devices({"runtime": {"device": "cpu"}, "sam": {"device": "cuda:7"},
                         "wsod": {"device": None}, "x": {"devices": "ignored"}})
    by_key = {f.message.split(":")[0]: f for f in out[1:]}
    assert set(by_key) == {"params runtime.device", "params sam.device", "params wsod.device"}
    assert by_key["params wsod.device"].message.endswith("null (follows runtime.device)")
    assert by_key["params runtime.device"].level == OK
    # cuda:7 exists on no machine this runs on (at most a few visible cards)
    if torch.cuda.device_count() < 8:
        assert by_key["params sam.device"].level == FAIL


def test_data_voc_and_coco(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    params = {"data": {"source": "voc", "voc_root": "VOCdevkit/VOC2007",
                       "voc_trainval": "trainval", "voc_test": "test"}}
    assert {f.level for f in check_data(params, tmp_path)} == {FAIL}
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets/Main/trainval.txt").write_text("000005\n")
    out = check_data(params, tmp_path)
    assert [f.level for f in out] == [OK, OK, OK, FAIL]
    assert out[3].message.endswith("test.txt (file not found)")
    coco = {"data": {"source": "coco", "coco_trainval_json": "a.json",
                     "coco_trainval_image_root": "imgs", "coco_test_json": None}}
    (tmp_path / "a.json").write_text("{}")
    out = check_data(coco, tmp_path)
    assert [f.level for f in out] == [OK, FAIL, FAIL]
    assert check_data({"data": {"source": "lvis"}}, tmp_path)[0].level == FAIL


def test_data_voc_split_in_the_segmentation_folder(tmp_path):
    """paper_voc12_wsis names Segmentation/train_aug and Segmentation/val: the doctor looks
    where the reader looks (ImageSets/Segmentation), not under ImageSets/Main."""
    voc = tmp_path / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for name in ("train_aug", "val"):
        (voc / "ImageSets/Segmentation" / f"{name}.txt").write_text("2008_000002\n")
    params = {"data": {"source": "voc", "voc_root": "VOC2012",
                       "voc_trainval": "Segmentation/train_aug", "voc_test": "Segmentation/val"}}
    assert [f.level for f in check_data(params, tmp_path)] == [OK, OK, OK, OK]
    params["data"]["voc_test"] = "a/b/c"
    out = check_data(params, tmp_path)
    assert out[-1].level == FAIL and "Folder/name" in out[-1].message


def test_files_outputs_and_local_weights(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "sam_pretrain": {"cmd": "x", "outs": ["models/sam_small.pt"]},
        "wsod": {"matrix": {"m": ["a"]}, "cmd": "x", "outs": ["wsod/${item.m}_ss"]}}}))
    (tmp_path / "vgg16.pth").write_bytes(b"w")
    params = {"sam": {"checkpoint": "models/sam_small.pt"},
              "wsod": {"vgg16_checkpoint": "vgg16.pth", "init_checkpoint": None},
              "retrain": {"resnet_weights": "r50.pth", "from_checkpoint": "wsod/a_ss/model.pt"},
              "data": {"coco_test_json": "elsewhere.json"}, "prompts": {"kernel": 3}}
    out = {f.message.split(":")[0]: f for f in check_files(params, tmp_path)}
    assert set(out) == {"params sam.checkpoint", "params wsod.vgg16_checkpoint",
                        "params retrain.resnet_weights", "params retrain.from_checkpoint"}
    assert out["params sam.checkpoint"].level == OK
    assert "output of stage sam_pretrain" in out["params sam.checkpoint"].message
    assert "output of stage wsod" in out["params retrain.from_checkpoint"].message
    assert out["params wsod.vgg16_checkpoint"].level == OK
    assert out["params retrain.resnet_weights"].level == FAIL


def test_remote(tmp_path):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               DVC_SITE_CACHE_DIR=str(tmp_path / "site"), DVC_NO_ANALYTICS="1")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=repo, env=env, check=True)
    out = doctor.check_remote(repo)
    assert out[0].level == WARN and "no DVC remote" in out[0].message
    subprocess.run([str(BIN / "dvc"), "remote", "add", "-d", "store", str(tmp_path / "r")],
                   cwd=repo, env=env, check=True, capture_output=True)
    out = doctor.check_remote(repo)
    assert out == [doctor.Finding(OK, "DVC remote(s): store (default store)")]


def _weights_ws(root: Path) -> dict:
    """A paper-like params tree naming SAM ViT-B and one ResNet-50 file used three times."""
    write_random("sam", root / "models/sam_vit_b_01ec64.pth", 0, model="vit_b")
    write_random("resnet50", root / "models/resnet50.pth", 0)
    r50 = "models/resnet50.pth"
    return {
        "runtime": {"device": "cpu"}, "data": {"source": "synthetic"},
        "sam": {"model": "vit_b", "checkpoint": "models/sam_vit_b_01ec64.pth", "device": None},
        "clues_train": {"init_checkpoint": None},
        "wsod": {"backbone": "vgg16", "vgg16_checkpoint": None},
        "retrain": {"frcnn": {"model": {"backbone": "resnet50_fpn", "resnet50_checkpoint": r50}},
                    "detr": {"model": {"backbone": "resnet50", "resnet50_checkpoint": r50}}},
        "wsis": {"backbone": "resnet50", "resnet50_checkpoint": "models/missing.pth"}}


def test_weights_checked_against_the_profile(tmp_path):
    params = _weights_ws(tmp_path)
    out = {f.message.split(":")[0]: f for f in check_weights(params, tmp_path)}
    # the missing wsis file is check_files' FAIL, not repeated here
    assert set(out) == {"params sam.checkpoint", "params wsod.vgg16_checkpoint",
                        "params retrain.frcnn.model.resnet50_checkpoint",
                        "params retrain.detr.model.resnet50_checkpoint"}
    assert out["params sam.checkpoint"] == doctor.Finding(
        OK, "params sam.checkpoint: models/sam_vit_b_01ec64.pth: SAM vit_b checkpoint, "
            "314 tensors with the expected keys and shapes")
    assert out["params wsod.vgg16_checkpoint"].level == WARN
    assert out["params retrain.detr.model.resnet50_checkpoint"].level == OK
    params["sam"]["model"] = "vit_h"  # the ViT-B file under a ViT-H profile
    bad = [f for f in check_weights(params, tmp_path) if f.level == FAIL]
    assert bad and all(f.message.startswith(
        f"params sam.checkpoint: {tmp_path / 'models/sam_vit_b_01ec64.pth'}: ") for f in bad)
    assert any("image_encoder.pos_embed is (1, 64, 64, 768) in the file, (1, 64, 64, 1280)"
               in f.message for f in bad)


def test_doctor_fails_on_a_truncated_checkpoint(tmp_path, capsys):
    params = _weights_ws(tmp_path)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sam = tmp_path / "models/sam_vit_b_01ec64.pth"
    data = sam.read_bytes()
    assert main(["--root", str(tmp_path), "doctor", "--no-remote"]) == 1  # wsis file missing
    assert "FAIL  params sam.checkpoint" not in capsys.readouterr().out
    params["wsis"]["resnet50_checkpoint"] = "models/resnet50.pth"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["--root", str(tmp_path), "doctor", "--no-remote"]) == 0
    capsys.readouterr()
    sam.write_bytes(data[: len(data) // 2])
    assert main(["--root", str(tmp_path), "doctor", "--no-remote"]) == 1
    out = capsys.readouterr().out
    assert (f"FAIL  params sam.checkpoint: {sam}: cannot read SAM vit_b checkpoint: truncated "
            f"or corrupt ({len(data) // 2} bytes; RuntimeError: PytorchStreamReader failed") in out
    assert "1 failed" in out
