"""No stage's library code moves a tensor to a device its params did not name (issue 16).

Every network stage is run here with ``device="cpu"`` under a ``TorchDispatchMode`` that fails
on any tensor (input or output of any torch operation) living elsewhere, and with ``.to`` /
``.cuda`` of tensors and modules patched to fail on any non-CPU target: a hard-coded
``.cuda()``, ``device="cuda"`` or "device 0" anywhere in the path fails the test on this CPU
machine instead of only on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tests.sam.tiny import TINY_SAM
from weaksam.clues.infer import multiscale_maps
from weaksam.clues.model import CluesViT
from weaksam.clues.train import CluesTrainConfig, fit
from weaksam.proposals.sam import AmgConfig, PromptingConfig, SamPromptProposer
from weaksam.sam.model import build_small_sam
from weaksam.sam.train import PretrainConfig, evaluate, pretrain


class CpuOnly(TorchDispatchMode):
    """Fails on any tensor not on the CPU, in or out of any dispatched operation."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves((args, kwargs, out)):
            if isinstance(t, torch.Tensor) and t.device.type != "cpu":
                raise AssertionError(f"{func} touched a tensor on {t.device}")
        self.ops += 1
        return out


@pytest.fixture
def cpu_only(monkeypatch):
    """Patch every explicit move so a non-CPU target fails, and watch every operation."""
    moves = []

    def guard(orig):
        def wrapped(self, *args, **kwargs):
            for a in (*args, *kwargs.values()):
                if isinstance(a, (str, torch.device)) and torch.device(a).type != "cpu":
                    raise AssertionError(f"moved to {a}")
            moves.append(args)
            return orig(self, *args, **kwargs)
        return wrapped

    def no_cuda(self, *args, **kwargs):
        raise AssertionError(".cuda() called")

    monkeypatch.setattr(torch.Tensor, "to", guard(torch.Tensor.to))
    monkeypatch.setattr(torch.nn.Module, "to", guard(torch.nn.Module.to))
    monkeypatch.setattr(torch.Tensor, "cuda", no_cuda)
    monkeypatch.setattr(torch.nn.Module, "cuda", no_cuda)
    mode = CpuOnly()
    with mode:
        yield mode


TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                cross_layers=[0, 1])


def test_guard_catches_a_foreign_device(cpu_only):
    with pytest.raises(AssertionError):
        torch.zeros(2).to("cuda")
    with pytest.raises(AssertionError):
        torch.zeros(2).cuda()


def test_clues_train_and_inference_stay_on_cpu(cpu_only, tmp_path):
    torch.manual_seed(0)
    m = CluesViT(num_classes=2, drop_path_rate=0.1, **TINY_VIT)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    y = torch.tensor([[1, 0], [0, 1]] * 3, dtype=torch.float32)
    cfg = CluesTrainConfig(epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, warmup_epochs=0,
                           shift=2, seed=0, amp=True, randaugment="rand-m9-mstd0.5-inc1",
                           erasing=0.5)
    fit(m, x[:4], y[:4], x[4:], y[4:], cfg, checkpoint=tmp_path / "c.pt", fingerprint="f",
        device="cpu")
    out = multiscale_maps(m, torch.randint(0, 256, (1, 3, 24, 40), dtype=torch.uint8),
                          scales=(1.0, 0.8), flip=True, cross_heads="each", device="cpu",
                          amp=True)
    assert all(v.device.type == "cpu" for v in out.values())
    assert cpu_only.ops > 0


def test_sam_pretrain_and_proposals_stay_on_cpu(cpu_only):
    torch.manual_seed(0)
    sam = build_small_sam(TINY_SAM).to("cpu")
    pretrain(sam, PretrainConfig(steps=2, batch_images=2, prompts_per_image=4, warmup_steps=1))
    evaluate(sam, seed=5, num_images=2)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    pts = np.stack([rng.uniform(0, 56, 12), rng.uniform(0, 40, 12)], 1).astype(np.float32)
    src = np.array([0, 1, 1, 2, 2, 3, 3, 3, 0, 1, 2, 3], np.uint8)
    cls = np.where(src == 0, -1, 1 + np.arange(12) % 2)
    cfg = PromptingConfig(classwise="add", cross_nms_iou=0.9, dense_mode="amg",
                          amg=AmgConfig(points_per_side=3, points_per_batch=4,
                                        pred_iou_thresh=0.0, stability_score_thresh=0.0))
    props = SamPromptProposer(sam, cfg).propose(img, pts, src, cls)
    assert isinstance(props.boxes, np.ndarray)
    assert cpu_only.ops > 0


def test_sam_device_rule():
    """sam.device overrides runtime.device for the SAM stages; null falls back to it; a device
    this machine lacks fails before any work."""
    from weaksam.utils.device import sam_device  # shared by proposals, pseudo_masks, sam_pretrain

    assert sam_device(None, "cpu") == "cpu"
    assert sam_device("cpu", "cpu") == "cpu"
    if not torch.cuda.is_available():
        assert sam_device("cpu", "cuda") == "cpu"  # the override wins over runtime.device
        with pytest.raises(ValueError, match="cuda"):
            sam_device(None, "cuda")
        with pytest.raises(ValueError, match="cuda"):
            sam_device("cuda", "cpu")


def test_pseudo_masks_stage_follows_sam_device(monkeypatch):
    """The pseudo_masks stage loads SAM on ``sam.device`` when set (the proposals' rule)."""
    import pipeline.pseudo_masks as stage

    seen = []

    class Stop(Exception):
        pass

    def fake_load(model, checkpoint, device):
        seen.append(device)
        raise Stop

    monkeypatch.setattr("weaksam.sam.checkpoint.load_sam", fake_load)
    monkeypatch.setattr(stage, "read_json", lambda *a, **k: {})
    monkeypatch.setattr(stage, "index_from_dict", lambda raw, path: None)
    params = {"seed": 0, "runtime": {"threads": 1, "device": "cuda:7"},
              "sam": {"model": "small", "checkpoint": "x.pt", "device": "cpu"},
              "pseudo_masks": {"pgt": "p", "batch_size": 4}}
    monkeypatch.setattr(stage, "load_params", lambda path: params)
    monkeypatch.setattr(stage, "stage_args", lambda desc: type("A", (), {"params": "p.yaml"}))
    with pytest.raises(Stop):
        stage.main()
    assert seen == [torch.device("cpu")]  # runtime.device (a CUDA card) was not used
