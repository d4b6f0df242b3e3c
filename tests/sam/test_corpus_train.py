"""Pre-training corpus and loop of the small SAM (weaksam/sam/corpus.py, weaksam/sam/train.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.sam.tiny import TINY_SAM
from weaksam.sam.corpus import generate_sample
from weaksam.sam.model import build_small_sam
from weaksam.sam.train import (
    PretrainConfig,
    evaluate,
    lowres_targets,
    mask_iou,
    mask_losses,
    pretrain,
    sample_prompts,
)

TINY = TINY_SAM


def test_corpus_deterministic_and_well_formed():
    a, b = generate_sample(7, 3, size=96), generate_sample(7, 3, size=96)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, generate_sample(7, 4, size=96).image)
    for i in range(10):
        s = generate_sample(0, i, size=96, min_area=12)
        h, w = s.image.shape[:2]
        assert max(h, w) == 96 and s.image.dtype == np.uint8
        assert s.masks.shape[1:] == (h, w)
        assert (s.masks.reshape(len(s.masks), -1).sum(1) >= 12).all()
        # visible masks: any two are disjoint or nested (a part inside its whole)
        for j in range(len(s.masks)):
            for k in range(j + 1, len(s.masks)):
                inter = (s.masks[j] & s.masks[k]).sum()
                assert inter in (0, s.masks[j].sum(), s.masks[k].sum())


def test_mask_losses_hand_computed():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    gt = torch.ones(1, 2, 2)
    # BCE (gamma 0) = ln 2 per pixel; dice = 1 - (2*2 + 1) / (2 + 4 + 1) = 2/7
    out = mask_losses(logits, gt, focal_weight=1.0, focal_alpha=-1.0, dice_weight=1.0,
                      focal_gamma=0.0)
    assert out.item() == pytest.approx(math.log(2) + 2 / 7, rel=1e-6)
    # focal with gamma 2: (1 - 0.5)^2 * ln 2 ; weight 20 as SAM
    out = mask_losses(logits, gt, 20.0, -1.0, 1.0, focal_gamma=2.0)
    assert out.item() == pytest.approx(20 * 0.25 * math.log(2) + 2 / 7, rel=1e-6)


def test_mask_iou_and_lowres_targets():
    logits = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])
    gt = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert mask_iou(logits, gt).item() == pytest.approx(1 / 3)
    m = np.zeros((1, 3, 4), bool)
    m[0, :2, :2] = True  # 2x2 block in a 3x4 image, padded to a 4x4 frame, pooled to 2x2
    t = lowres_targets(m, frame=4, lowres=2)
    assert t[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_pretrain_deterministic_and_every_parameter_learns():
    cfg = PretrainConfig(steps=2, batch_images=2, prompts_per_image=3, warmup_steps=1)

    def run():
        torch.manual_seed(0)
        sam = build_small_sam(TINY)
        before = {k: v.clone() for k, v in sam.state_dict().items()}
        seen = []
        out = pretrain(sam, cfg, on_step=lambda s, v: seen.append(s), log_every=1)
        return sam, before, out, seen

    sam, before, out, seen = run()
    sam2, _, out2, _ = run()
    assert seen == [1, 2] and math.isfinite(out["loss"])
    assert out["loss"] == out2["loss"]
    after = sam.state_dict()
    assert all(torch.equal(after[k], sam2.state_dict()[k]) for k in after)
    # every trainable parameter moved (weights that get no gradient would not change)
    unchanged = [n for n, p in sam.named_parameters() if torch.equal(p.detach(), before[n])]
    # the mask-input convs (mask_downscaling) only see mask prompts, which we do not train
    assert all(n.startswith("prompt_encoder.mask_downscaling")
               or n.startswith("prompt_encoder.not_a_point") for n in unchanged), unchanged
    ev = evaluate(sam, seed=99, num_images=2)
    assert 0.0 <= ev["miou_point"] <= 1.0 and 0.0 <= ev["miou_box"] <= 1.0
    assert ev["num_masks"] > 0


def test_fixed_batch_loss_decreases():
    # A few dozen AdamW steps on one fixed batch (same images, same prompts) must reduce the
    # loss: the prompts, targets and decoder wiring are consistent.
    from weaksam.sam.train import batch_losses

    torch.manual_seed(0)
    sam = build_small_sam(TINY).train()
    cfg = PretrainConfig(batch_images=2, prompts_per_image=6, focal_weight=20.0, focal_gamma=2.0)
    samples = [generate_sample(5, i, size=64) for i in range(2)]
    opt = torch.optim.AdamW(sam.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = batch_losses(sam, samples, np.random.default_rng(0), cfg)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_corpus_segments_are_not_specks():
    # segments follow the task's object sizes; specks are clutter, never segments
    sides = []
    for i in range(30):
        s = generate_sample(1, i, size=128)
        for m in s.masks:
            ys, xs = np.nonzero(m)
            sides.append(max(np.ptp(ys), np.ptp(xs)) + 1)
    assert np.median(sides) >= 0.12 * 128


def test_corpus_radius_range_reaches_training_and_evaluation(monkeypatch):
    # smaller radii give smaller segments, and pretrain / evaluate draw with the configured range
    def median_side(rr: tuple[float, float]) -> float:
        sides = [max(np.ptp(np.nonzero(m)[0]), np.ptp(np.nonzero(m)[1])) + 1
                 for i in range(20) for m in generate_sample(1, i, size=128, radius_range=rr).masks]
        return float(np.median(sides))

    assert median_side((0.05, 0.1)) < median_side((0.3, 0.4))
    from weaksam.sam import train as train_mod

    seen: list[tuple[float, float]] = []

    def spy(*a, **k):
        seen.append(k["radius_range"])
        return generate_sample(*a, **k)

    monkeypatch.setattr(train_mod, "generate_sample", spy)
    torch.manual_seed(0)
    sam = build_small_sam(TINY)
    cfg = PretrainConfig(steps=1, batch_images=1, prompts_per_image=2, warmup_steps=1,
                         corpus_radius=(0.05, 0.3))
    pretrain(sam, cfg)
    evaluate(sam, seed=5, num_images=1, radius_range=(0.05, 0.3))
    assert seen and all(r == (0.05, 0.3) for r in seen)


def test_prompt_losses_batched_equal_one_image_at_a_time():
    # one decoder call for the prompts of every image gives each prompt the logits of the
    # library's per-image MaskDecoder.predict_masks (via decode), and therefore the same losses
    from weaksam.sam.train import (
        PromptBatch,
        decode,
        pad_image,
        prompt_losses,
        sample_prompts,
    )

    torch.manual_seed(0)
    sam = build_small_sam(TINY).train()
    cfg = PretrainConfig(prompts_per_image=5, point_prob=0.5)
    samples = [generate_sample(7, i, size=64) for i in range(3)]
    rng = np.random.default_rng(3)
    batches = [sample_prompts(s, 5, 0.5, 0.1, 64, 32, rng) for s in samples]
    empty = PromptBatch(*(torch.zeros(z) for z in ((0, 1, 2), (0, 32, 32), (0, 4), (0, 32, 32))))
    batches.insert(1, empty)  # an image without segments between two with
    x = torch.stack([pad_image(sam, s.image) for s in samples[:1] + samples[:1] + samples[1:]])
    emb = sam.image_encoder(x)
    out = prompt_losses(sam, emb, batches, cfg)
    ref_pts, ref_box = [], []
    for b, pb in enumerate(batches):
        if len(pb.point_gt):
            lg, _ = decode(sam, emb[b : b + 1], pb.points, None)
            ref_pts.append(mask_losses(lg[:, 1:], pb.point_gt, 20.0, -1.0, 1.0).amin(1))
        if len(pb.box_gt):
            lg, _ = decode(sam, emb[b : b + 1], None, pb.boxes)
            ref_box.append(mask_losses(lg[:, :1], pb.box_gt, 20.0, -1.0, 1.0)[:, 0])
    ref = torch.cat(ref_pts + ref_box)
    assert out["mask"].shape == ref.shape == (15,)
    assert torch.allclose(out["mask"], ref, rtol=1e-5, atol=1e-6)


def test_balanced_segments_cover_every_segment_before_repeating():
    s = generate_sample(0, 5, size=96)
    k = len(s.masks)
    assert k >= 2
    rng = np.random.default_rng(3)
    n = 2 * k + 1
    pb = sample_prompts(s, n, point_prob=1.0, box_noise=0.0, frame=96, lowres=24, rng=rng,
                        segments="balanced")
    # every prompt's target is one of the segments; counts differ by at most one
    targets = lowres_targets(s.masks, 96, 24)
    hits = [int(torch.nonzero((targets == g).flatten(1).all(1))[0]) for g in pb.point_gt]
    counts = np.bincount(hits, minlength=k)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    # a point prompt lies inside its segment
    for (x, y), j in zip(pb.points[:, 0].long().tolist(), hits, strict=True):
        assert s.masks[j, y, x]
    with pytest.raises(ValueError, match="balanced"):
        sample_prompts(s, 4, 1.0, 0.0, 96, 24, rng, segments="area")


def test_texture_on_a_mask_equals_the_full_frame_texture_there():
    """The corpus paints each segment's fill on its own pixels only (the speed-up of
    weaksam/sam/corpus.py): the same generator draws and bit-identical values, every kind."""
    from weaksam.sam.corpus import _shape_mask, _texture

    kinds = set()
    for seed in range(60):
        h, w = 77, 128
        m = _shape_mask(np.random.default_rng(seed), h, w, 60.0, 40.0, 25.0)
        r1, r2 = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 1])
        part = _texture(r1, h, w, m)
        full = _texture(r2, h, w)
        assert part.dtype == full.dtype and np.array_equal(part, full[m])
        assert r1.random() == r2.random()  # the same numbers were drawn
        probe = np.random.default_rng([seed, 1])  # the texture's kind: its third draw
        probe.uniform(0, 255, 3), probe.uniform(0, 255, 3)
        kinds.add(int(probe.integers(5)))
    assert kinds == {0, 1, 2, 3, 4}  # solid, stripes, checker, noise, ramp all covered


class _Kill(Exception):
    """Stands for a killed run."""


def _run_logged(tmp_path, name, cfg, kill_at=None, fingerprint="f"):
    """A tiny pre-training logged to ``<tmp>/<name>`` (DVCLive, as the stage logs) with its
    training checkpoint every 2 steps in ``<tmp>/ck.pt`` (shared by the runs), stopped by an
    exception after logging step ``kill_at``; returns the final model file's bytes."""
    from weaksam.engine.live import LiveHook
    from weaksam.sam.checkpoint import save_small_sam

    torch.manual_seed(0)
    sam = build_small_sam(TINY)
    with LiveHook(tmp_path / name, next_step=False, summary=False, rank=0) as live:
        def on_step(step, values):
            live(step, values)
            if step == kill_at:
                raise _Kill
        pretrain(sam, cfg, on_step=on_step, log_every=1, checkpoint=tmp_path / "ck.pt",
                 fingerprint=fingerprint, checkpoint_every=2)
    save_small_sam(tmp_path / f"{name}.pt", sam, TINY)
    return (tmp_path / f"{name}.pt").read_bytes()


def _curves(folder):
    return {f.name: f.read_bytes() for f in sorted(folder.rglob("*.tsv"))}


def test_resumed_run_gives_the_bytes_of_an_unbroken_run(tmp_path, monkeypatch):
    from weaksam.sam import train as train_mod

    trained: list[int] = []  # the steps each run computes
    step_loss = train_mod.step_loss
    monkeypatch.setattr(train_mod, "step_loss",
                        lambda sam, cfg, step, *a: (trained.append(step),
                                                    step_loss(sam, cfg, step, *a))[1])
    cfg = PretrainConfig(steps=5, batch_images=2, prompts_per_image=3, warmup_steps=2,
                         corpus_seed=3)
    unbroken = _run_logged(tmp_path / "u", "run", cfg)
    # killed after logging step 3: the checkpoint holds step 2, the curves already step 3
    with pytest.raises(_Kill):
        _run_logged(tmp_path / "k", "run", cfg, kill_at=3)
    state = torch.load(tmp_path / "k/ck.pt", weights_only=True)
    assert state["step"] == 2 and [s for s, _ in state["curves"]] == [1, 2]
    assert len((tmp_path / "k/run/plots/metrics/train/loss.tsv").read_text().splitlines()) == 4
    trained.clear()
    resumed = _run_logged(tmp_path / "k", "run", cfg)
    assert trained == [2, 3, 4]  # continued after the checkpoint's step 2
    assert resumed == unbroken
    assert _curves(tmp_path / "k/run") == _curves(tmp_path / "u/run")
    assert (len(_curves(tmp_path / "u/run")) == 5
            and (tmp_path / "u/run/plots/metrics/train/loss.tsv").read_text().count("\n") == 6)
    # the checkpoint of other settings (another fingerprint) is not resumed: a fresh run
    with pytest.raises(_Kill):
        _run_logged(tmp_path / "o", "run", replace(cfg, lr=0.1), kill_at=3, fingerprint="lr")
    trained.clear()
    assert _run_logged(tmp_path / "o", "run", cfg) == unbroken
    assert trained == [0, 1, 2, 3, 4]
    # the last step is saved too (5 is no multiple of 2): a finished run's checkpoint always
    # exists (dvc.yaml declares it), and its rerun with the same fingerprint trains nothing
    assert torch.load(tmp_path / "o/ck.pt", weights_only=True)["step"] == 5
    trained.clear()
    assert _run_logged(tmp_path / "o", "run", cfg) == unbroken and trained == []
