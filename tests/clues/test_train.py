"""Training helpers, and that an interrupted training resumes to the same weights."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.stage_main import run_stage
from weaksam.clues.model import CluesViT
from weaksam.clues.train import (
    CluesTrainConfig,
    autocast,
    classification_map,
    fit,
    holdout_split,
    lr_at,
    rand_augment,
    random_erasing,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
            cross_layers=[1])


def test_classification_map_hand_computed():
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.9]])
    # class 0: ranks 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = (1/1 + 2/3) / 2 = 0.8333
    # class 1: ranks 0.9(-) 0.7(+) ...: AP = 1/2
    assert classification_map(scores, labels) == pytest.approx(100 * (0.8333333 + 0.5) / 2)
    # a class without positives is skipped
    assert classification_map(scores[:, :1], labels[:, :1]) == pytest.approx(83.33333, 1e-4)


def test_holdout_split_and_lr():
    tr, va = holdout_split(20, 0.15, seed=3)
    assert len(va) == 3 and len(tr) == 17 and set(tr) | set(va) == set(range(20))
    assert holdout_split(20, 0.15, seed=3)[1].tolist() == va.tolist()
    assert len(holdout_split(5, 0.0, 0)[1]) == 0
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.01)


def _data(n=12, c=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = (torch.rand(n, c, generator=g) > 0.5).float()
    return x, y


def _fit(ckpt, stop_after=None, model=None):
    torch.manual_seed(0)
    m = model or CluesViT(num_classes=3, **TINY)
    x, y = _data()
    cfg = CluesTrainConfig(epochs=3, batch_size=4, lr=1e-3, weight_decay=0.05,
                           warmup_epochs=1, shift=2, seed=0)
    hist = fit(m, x[:9], y[:9], x[9:], y[9:], cfg, checkpoint=ckpt, fingerprint="fp",
               stop_after=stop_after)
    return m, hist


def test_resume_gives_the_same_weights(tmp_path):
    full, hist_full = _fit(tmp_path / "a.pt")
    _, hist_part = _fit(tmp_path / "b.pt", stop_after=1)
    assert len(hist_part) == 1
    torch.manual_seed(123)  # a different fresh init: the checkpoint must override it
    resumed, hist_res = _fit(tmp_path / "b.pt", model=CluesViT(num_classes=3, **TINY))
    assert len(hist_res) == 3 and hist_res == hist_full
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    # a checkpoint of other params (fingerprint) is ignored: training starts fresh
    m = CluesViT(num_classes=3, **TINY)
    x, y = _data()
    cfg = CluesTrainConfig(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, warmup_epochs=0,
                           shift=0, seed=0)
    h = fit(m, x[:9], y[:9], x[9:], y[9:], cfg, checkpoint=tmp_path / "b.pt", fingerprint="other")
    assert len(h) == 1


def test_random_erasing_follows_timm_spec():
    """WeakTr: RandomErasing(0.25, mode="pixel", max_count=1): one rectangle of 2 % to 1/3 of
    the image, aspect in [0.3, 1/0.3], filled with per-pixel N(0, 1); p=0 leaves the image."""
    x = torch.zeros(200, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_erasing(x, 0.0, g), x)
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    changed = (out != 0).any(1)  # (B, H, W) erased pixels
    frac = changed.flatten(1).float().mean(1)
    assert (frac > 0).all()  # probability 1: every image erased (32 px leaves room every time)
    assert frac.min() >= 0.02 * 0.9 and frac.max() <= 1 / 3 * 1.1  # rounding of h, w
    for i in range(20):  # one axis-aligned rectangle per image
        ys, xs = torch.nonzero(changed[i], as_tuple=True)
        box = changed[i, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.all()
        asp = box.shape[0] / box.shape[1]
        assert 0.3 / 1.2 <= asp <= 1.2 / 0.3
    vals = out[changed[:, None].expand_as(out)]
    assert abs(float(vals.mean())) < 0.05 and abs(float(vals.std()) - 1) < 0.05  # N(0, 1)
    half = random_erasing(x, 0.25, torch.Generator().manual_seed(1))
    share = (half != 0).flatten(1).any(1).float().mean()
    assert 0.15 < float(share) < 0.35  # about a quarter of the images
    again = random_erasing(x, 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(half, again)  # a function of the generator


def test_rand_augment_weaktr_string_is_deterministic():
    """WeakTr's --aa rand-m9-mstd0.5-inc1 through timm: 2 ops at magnitude 9 (noise std 0.5);
    the result depends only on the generator and leaves Python's / NumPy's global state alone."""
    import random

    from timm.data.auto_augment import rand_augment_transform

    ra = rand_augment_transform("rand-m9-mstd0.5-inc1", {"translate_const": 14})
    assert ra.num_layers == 2
    assert all(op.magnitude == 9 and op.magnitude_std == 0.5 for op in ra.ops)
    imgs = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    random.seed(5)
    before = random.random()
    random.seed(5)
    a = rand_augment(imgs, "rand-m9-mstd0.5-inc1", torch.Generator().manual_seed(3))
    assert random.random() == before
    b = rand_augment(imgs, "rand-m9-mstd0.5-inc1", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == imgs.shape
    assert not torch.equal(a, imgs)
    # magnitude 10 (reached by m9 + noise) posterizes to 0 bits: black, not a Pillow error
    many = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    rand_augment(many, "rand-m10-mstd0-n3-inc1", torch.Generator().manual_seed(0))


def test_fit_with_weaktr_augmentations_and_amp_on_cpu(tmp_path):
    """drop-path, RandAugment and erasing train; ``amp`` on the CPU is bfloat16 autocast (the
    dry run's amp path): finite, deterministic, and not the float32 run."""
    x, y = _data()
    runs = []
    for amp in (False, True, True):
        torch.manual_seed(0)
        m = CluesViT(num_classes=3, drop_path_rate=0.1, **TINY)
        cfg = CluesTrainConfig(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.05,
                               warmup_epochs=1, shift=2, seed=0, amp=amp,
                               randaugment="rand-m9-mstd0.5-inc1", erasing=0.25)
        fit(m, x[:9], y[:9], x[9:], y[9:], cfg, checkpoint=tmp_path / f"{amp}{len(runs)}.pt",
            fingerprint="fp", device="cpu")
        runs.append(m.state_dict())
    assert all(torch.isfinite(v).all() for v in runs[1].values() if v.is_floating_point())
    assert all(torch.equal(runs[1][k], runs[2][k]) for k in runs[1])
    assert not all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with autocast("cpu", True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("cpu", False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.slow
def test_stage_resumes_after_interruption(tmp_path, monkeypatch):
    """The clues_train stage stopped after epoch 1 and rerun equals an uninterrupted run,
    and DVCLive logs each epoch exactly once."""
    from pipeline.common import deep_merge, load_params

    params = deep_merge(load_params(ROOT / "params.yaml"),
                        yaml.safe_load((ROOT / "configs/tiny.yaml").read_text()))
    params["data"].update(num_trainval=10, num_test=2)
    params["clues_train"].update(epochs=3, holdout=0.2, input_size=32, embed_dim=32, depth=2,
                                 num_heads=2, cross_layers=[1], batch_size=4)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(["pipeline.data"], a, monkeypatch)
    shutil.copytree(a, b)
    run_stage(["pipeline.clues_train", "--stop-after", "1"], a, monkeypatch)  # "killed": epoch 1
    assert (a / "checkpoints/clues_train/last.pt").is_file()
    assert not (a / "models/clues/model.pt").exists()
    run_stage(["pipeline.clues_train"], a, monkeypatch)  # resumes at epoch 2
    run_stage(["pipeline.clues_train"], b, monkeypatch)  # uninterrupted
    sa = torch.load(a / "models/clues/model.pt", weights_only=False)["model"]
    sb = torch.load(b / "models/clues/model.pt", weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with open(a / "dvclive/clues_train/plots/metrics/train/loss.tsv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f, delimiter="\t")]
    assert steps == [0, 1, 2]
