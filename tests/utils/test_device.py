"""weaksam/utils/device.py: CUDA device resolution checks the visible device count (CUDA
faked by monkeypatching torch.cuda; nothing here allocates on a device)."""

from __future__ import annotations

import pytest
import torch

from weaksam.utils.device import data_parallel_devices, resolve_device


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: pretend ``n`` CUDA devices are visible."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_cuda_resolves_to_the_local_rank_card_only_if_visible(gpus, monkeypatch):
    gpus(1)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # rank 1 of runtime.nproc.sam_pretrain 2, one GPU
    with pytest.raises(ValueError, match=r"local rank 1 \(LOCAL_RANK\) asks for cuda:1, but "
                                         r"only 1 CUDA device\(s\) are visible"):
        resolve_device("cuda")
    gpus(2)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="'cuda:2' but only 2 CUDA devices"):
        resolve_device("cuda:2")


def test_data_parallel_devices_one_gpu_per_rank(gpus, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert data_parallel_devices("cpu", 2) == [torch.device("cpu")] * 2
    gpus(2)
    assert data_parallel_devices("cuda", 2) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert data_parallel_devices("cuda:1", 1) == [torch.device("cuda", 1)]
    with pytest.raises(ValueError, match=r"p: 2 data-parallel processes on 'cuda:1', but "
                                         r"'cuda:1' names one card.*at most 1"):
        data_parallel_devices("cuda:1", 2, "p")
    gpus(1)
    assert data_parallel_devices("cuda", 1) == [torch.device("cuda", 0)]
    with pytest.raises(ValueError, match=r"runtime.nproc.sam_pretrain: 2 data-parallel "
                                         r"processes on 'cuda', but 1 CUDA device\(s\) are "
                                         r"visible.*at most 1"):
        data_parallel_devices("cuda", 2, "runtime.nproc.sam_pretrain")
    gpus(0)
    with pytest.raises(ValueError, match="no CUDA device"):
        data_parallel_devices("cuda", 1)
    with pytest.raises(ValueError, match="expected at least 1"):
        data_parallel_devices("cpu", 0)
