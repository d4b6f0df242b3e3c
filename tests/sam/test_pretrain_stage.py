"""Stage sam_pretrain (pipeline/sam_pretrain.py): its processes are checked against the
visible GPUs before any starts, and the paper profiles ask for what one GPU can run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

import pipeline.sam_pretrain as stage
from weaksam.profiles import deep_merge, list_profiles, resolve_profile
from weaksam.utils.device import data_parallel_devices, sam_device

ROOT = Path(__file__).resolve().parents[2]
PAPER = [p for p in list_profiles(ROOT / "configs") if p.startswith("paper_")]


def _one_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_two_cuda_processes_on_one_gpu_stop_before_spawning(tmp_path, monkeypatch):
    _one_gpu(monkeypatch)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["device"] = "cuda"
    params["sam_pretrain"]["processes"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    spawned = []
    monkeypatch.setattr(stage.mp, "spawn", lambda *a, **k: spawned.append(a))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sam_pretrain", "--params", "params.yaml"])
    with pytest.raises(SystemExit, match=r"params.yaml: sam_pretrain.processes: 2 data-parallel "
                                         r"processes on 'cuda', but 1 CUDA device\(s\)"):
        stage.main()
    assert spawned == []


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_sam_pretrain_fits_one_gpu(profile, monkeypatch):
    assert PAPER  # the paper profiles are there
    _one_gpu(monkeypatch)
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                        resolve_profile(profile, ROOT / "configs"))
    world = int(params["sam_pretrain"]["processes"])
    device = sam_device(params["sam"].get("device"), params["runtime"]["device"])
    assert data_parallel_devices(device, world) == [torch.device("cuda", 0)]
