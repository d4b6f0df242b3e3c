"""torch.distributed (gloo, CPU, 2 processes) gives the loss curve of one process with the same
global batch.

Tolerance: relative 1e-4. Each process sees exactly the images and random draws (scale, flip,
Concrete DropBlock noise are seeded per image and epoch) of its shard, and the loss is scaled so
DDP's gradient average equals the one-process gradient; the only difference is the order of
float32 additions (gradient all-reduce over 2 processes vs. one sum over the batch), about 1e-7
relative per step, amplified a little by Adam over the steps.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from tests.distributed import run_gloo
from tests.wsod.conftest import run_wsod, tiny_backbone, tiny_items
from weaksam.wsod.mist import MIST

KW = dict(epochs=3, batch_size=4, lr=1e-2, weight_decay=0.0, optimizer="adam",
          train_scales=[28, 32], max_size=64, flip=True, seed=3, cdb_start_epoch=1,
          cdb_lr=0.1)


def _run() -> dict | None:
    """Curve and first weights of a 3-epoch run (rank 0; None on the other ranks)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # the light scorer: the released one has BatchNorm, whose batch statistics are per process
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    curve: list[dict] = []
    run_wsod(model, tiny_items(10), on_epoch=lambda e, m: curve.append(m), **KW)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return ({"curve": curve, "w": model.refine[0].weight.flatten()[:20].tolist()}
            if rank == 0 else None)


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    a = _run()
    b, b1 = run_gloo(_run, tmp=tmp_path)
    assert b1 is None
    assert len(a["curve"]) == len(b["curve"]) == 3
    for ea, eb in zip(a["curve"], b["curve"], strict=True):
        assert set(ea) == set(eb)
        for k in ea:
            assert eb[k] == pytest.approx(ea[k], rel=1e-4, abs=1e-6), k
    assert b["w"] == pytest.approx(a["w"], rel=1e-3, abs=1e-5)


@pytest.mark.slow
def test_two_gloo_processes_repeat_bit_for_bit(tmp_path):
    """A given process count gives the same bytes run after run (issue 22: the default profile
    trains WSOD with 2 processes)."""
    outs = [json.dumps(run_gloo(_run, tmp=tmp_path)) for _ in range(2)]
    assert outs[0] == outs[1]


DET = dict(scales=[28, 32], max_size=64, flip=True, nms_iou=0.3, score_thresh=0.0, max_det=20)


def _detect() -> list[dict] | None:
    """The gathered detections (rank 0), None on the other ranks."""
    from weaksam.wsod.infer import detect_split_distributed

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    items = tiny_items(7)
    return detect_split_distributed(model, [it.image_id for it in items],
                                    lambda i: items[i].pixels,
                                    {it.image_id: it.boxes for it in items}, [1, 2, 3], **DET)


@pytest.mark.slow
def test_inference_shared_among_two_ranks_equals_one_process(tmp_path):
    """Rank r of 2 detects images r, r + 2, ...; rank 0's gathered list is byte for byte the one
    process's list (image order, each image's detections in order), 7 images: uneven shares."""
    from weaksam.wsod.infer import detect_split, detect_split_distributed

    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    items = tiny_items(7)
    args = ([it.image_id for it in items], lambda i: items[i].pixels,
            {it.image_id: it.boxes for it in items}, [1, 2, 3])
    one = detect_split(model, *args, **DET)
    assert detect_split_distributed(model, *args, **DET) == one  # no process group
    assert len({d["image_id"] for d in one}) == 7
    got, other = run_gloo(_detect, tmp=tmp_path)
    assert other is None
    assert json.dumps(one) == json.dumps(got)


def _run_uneven() -> dict | None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    curve: list[dict] = []
    # 9 images in batches of 4: the last batch has one image, so rank 1 has none that step
    run_wsod(model, tiny_items(9), on_epoch=lambda e, m: curve.append(m),
             **{**KW, "epochs": 2})
    rank = dist.get_rank() if dist.is_initialized() else 0
    return ({"curve": curve, "w": model.refine[0].weight.flatten()[:20].tolist()}
            if rank == 0 else None)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_process_without_an_image_in_a_step_still_steps(tmp_path):
    """Regression (paper-profile dry run, 3 images in batches of 2 on 2 processes): a process
    whose share of a global batch is empty used to skip the DDP forward and the gloo all-reduce
    aborted ("collective mismatch"); it now runs the batch's first image at weight 0, and the
    curve still follows one process."""
    a = _run_uneven()
    b = run_gloo(_run_uneven, tmp=tmp_path)[0]
    for ea, eb in zip(a["curve"], b["curve"], strict=True):
        for k in ea:
            assert eb[k] == pytest.approx(ea[k], rel=1e-4, abs=1e-6), k
    assert b["w"] == pytest.approx(a["w"], rel=1e-3, abs=1e-5)


def _resume_run(folder: str, stop_after: int | None, resume: bool) -> dict | None:
    """A 3-epoch MIST run with dropout (each rank's own RNG stream) writing its training state to
    ``<folder>/state.pt``; ``resume``: continue from that state. Rank 0: curve and weights."""
    from pathlib import Path

    from weaksam.wsod.train import resumable

    torch.set_num_threads(1)
    torch.manual_seed(5 if resume else 0)  # a resumed process's RNG is replaced by the saved one
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, dropout=0.5, cdb_net="light")
    state = Path(folder) / "state.pt"
    curve: list = []
    run_wsod(model, tiny_items(9), on_epoch=lambda e, m: curve.append((e, m)), state_file=state,
             fingerprint="fp", stop_after=stop_after,
             resume=resumable(state, "fp") if resume else None, **KW)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return {"curve": curve, "state": model.state_dict()} if rank == 0 else None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_processes_stopped_and_resumed_equal_an_unbroken_two_process_run(tmp_path):
    """Each rank's dropout stream is saved (gathered to rank 0) and restored to its rank."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = run_gloo(_resume_run, str(tmp_path / "a"), None, False, tmp=tmp_path)[0]
    part = run_gloo(_resume_run, str(tmp_path / "b"), 0, False, tmp=tmp_path)[0]
    rest = run_gloo(_resume_run, str(tmp_path / "b"), None, True, tmp=tmp_path)[0]
    assert len(part["curve"]) == 1 and part["curve"] + rest["curve"] == full["curve"]
    for k, v in full["state"].items():
        assert torch.equal(v, rest["state"][k]), k
