"""Stage sam_pretrain (pipeline/sam_pretrain.py) under pipeline.launch: each torchrun rank
checks the process count against the visible GPUs before joining the group (rank r on
``cuda:r`` only when r is a visible card), and the paper profiles ask for what one GPU can
run."""

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


def _cuda_params(tmp_path: Path, monkeypatch, local_rank: int) -> list:
    """params.yaml with device cuda in ``tmp_path``, the stage's argv, rank ``local_rank`` of a
    2-process torchrun; returns the list the faked ``init_process_group`` / ``set_device``
    calls go to."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runtime"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sam_pretrain", "--params", "params.yaml"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    calls: list = []
    monkeypatch.setattr(stage.dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(stage.dist, "get_rank", lambda: local_rank)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(d))
    return calls


@pytest.mark.parametrize("local_rank, message", [
    (0, r"runtime.nproc.sam_pretrain: 2 data-parallel processes on 'cuda', but 1 CUDA "
        r"device\(s\) are visible.*at most 1"),
    (1, r"'cuda' for local rank 1 \(LOCAL_RANK\) asks for cuda:1, but only 1 CUDA device\(s\) "
        r"are visible"),
])
def test_two_cuda_processes_on_one_gpu_stop_before_joining(tmp_path, monkeypatch, local_rank,
                                                           message):
    _one_gpu(monkeypatch)
    calls = _cuda_params(tmp_path, monkeypatch, local_rank)
    with pytest.raises(SystemExit, match="params.yaml: .*" + message):
        stage.main()
    assert calls == []  # no rank joined a group or took a card


def test_each_rank_takes_its_local_rank_card_when_visible(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls = _cuda_params(tmp_path, monkeypatch, 1)
    monkeypatch.setattr(stage, "world", lambda: (1, 2))  # the faked group's rank and size
    params = stage.load_params("params.yaml")
    assert stage.join(params, "params.yaml") == (1, 2)
    assert calls == [torch.device("cuda", 1), "nccl"]


@pytest.mark.parametrize("profile", PAPER)
def test_paper_profiles_sam_pretrain_fits_one_gpu(profile, monkeypatch):
    assert PAPER  # the paper profiles are there
    _one_gpu(monkeypatch)
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                        resolve_profile(profile, ROOT / "configs"))
    world = int(params["runtime"]["nproc"]["sam_pretrain"])
    device = sam_device(params["sam"].get("device"), params["runtime"]["device"])
    assert data_parallel_devices(device, world) == [torch.device("cuda", 0)]
