"""weaksam.doctor: each check on hand-built params and folders, passing and failing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from weaksam import doctor
from weaksam.doctor import FAIL, OK, WARN, check_data, check_devices, check_files, check_pins

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
