"""Promptable pre-training of the small SAM on the class-agnostic corpus (default profile).

Follows SAM's training recipe (Kirillov et al., 2023, Sec. 3 and appendix A) at CPU scale:
each step encodes ``B`` corpus images once and decodes ``P`` prompts per image, each prompt a
single foreground point drawn uniformly inside a segment (multimask output: the loss of the
best of the 3 masks is back-propagated, which is how SAM learns part / whole ambiguity) or the
segment's box with noise (single-mask output). Mask loss: ``focal_weight * focal + dice``
(SAM: 20 : 1), on the LOW-RESOLUTION logits (``(B*P, 4E, 4E)``) against the ground truth
area-downsampled to that size (soft targets). IoU head: MSE between predicted and actual IoU of
every output mask. AdamW with linear warm-up and cosine decay per step; the optimiser, lr rule,
optimiser step (gradient clipping), gradient all-reduce, non-finite check, loop and
fingerprinted checkpoint come from ``weaksam.engine``.

Resumable: a step draws only from its own generators (below; never from torch's), and its rate
is a function of the step, so a run continued from a checkpoint (weights, AdamW state, the step
and the curves logged so far) gives the bytes of an unbroken run (:func:`pretrain`).

Devices: training runs wherever ``sam`` is (``sam.to(device)`` by the caller): images, prompts
and targets are drawn on the CPU (numpy generators, so the draws do not depend on the device)
and moved to ``sam.device`` per step.

Data parallel (W > 1 processes of the initialised torch.distributed group, read from
``weaksam.engine.world.world()``; ``pipeline.launch`` starts them under torchrun): each process
takes a contiguous block of the step's ``B`` images. Image ``b`` of step ``s`` is corpus sample
``s * B + b`` with its own prompt generator ``default_rng([corpus_seed, s, b])``, so the union of
the blocks is exactly the one-process batch. Every process back-propagates the SUM of its
per-prompt losses; one all-reduce adds the gradients and the prompt counts, and the gradients
are divided by the global count: the gradient of the mean over every prompt of the step, the
one-process step up to the order of float additions. Clipping and AdamW then run on identical
gradients in every process, so the replicas stay identical without a broadcast per step.

Shapes: ``images (B, 3, S, S)`` padded frame, ``gt (P, 4E, 4E)`` soft masks in [0, 1],
``logits (P, K, 4E, 4E)`` with K = 3 (points) or 1 (boxes), ``iou_pred (P, K)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torchvision.ops import sigmoid_focal_loss
from tqdm import tqdm

from weaksam.engine.checkpoint import resume_state, save_state
from weaksam.engine.guard import check_finite
from weaksam.engine.loop import run_epochs
from weaksam.engine.optim import make_optimizer, optimizer_step
from weaksam.engine.schedule import set_lr, warmup_cosine_floor_factor
from weaksam.engine.world import sum_gradients_flagged
from weaksam.engine.world import world as process_world
from weaksam.sam.corpus import RADIUS_RANGE, CorpusSample, generate_sample
from weaksam.utils.boxes import masks_to_boxes


@dataclass(frozen=True)
class PretrainConfig:
    """Knobs of :func:`pretrain`: params.yaml ``sam_pretrain.train`` through
    :func:`weaksam.config.from_section` (``corpus_seed`` from ``params.seed``). Every default
    equals params.yaml's value (``tests/test_config.py``)."""

    steps: int = 5000
    batch_images: int = 16
    prompts_per_image: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    focal_weight: float = 20.0
    focal_alpha: float = -1.0  # torchvision convention: < 0 disables the alpha balancing
    focal_gamma: float = 2.0  # 0: plain binary cross-entropy
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    point_prob: float = 0.5  # fraction of prompts that are points (the rest boxes)
    box_noise: float = 0.1  # std of box-corner noise, fraction of the box side (SAM: 0.1)
    grad_clip: float = 1.0
    corpus_radius: tuple[float, float] = RADIUS_RANGE  # segment radii, fraction of short side
    segments: str = "balanced"  # which segments get the prompts (:func:`sample_prompts`)
    corpus_seed: int = 0


# ----------------------------------------------------------------------------- batches


def pad_image(sam: Sam, image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 at the model frame (max side == img_size) -> (3, S, S) normalised, padded
    exactly as ``Sam.preprocess`` does for ``SamPredictor``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    return sam.preprocess(x.to(sam.device))[0]


def lowres_targets(masks: np.ndarray, frame: int, lowres: int) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, lowres, lowres) float soft targets of the padded frame."""
    n, h, w = masks.shape
    full = torch.zeros((n, 1, frame, frame))
    full[:, 0, :h, :w] = torch.from_numpy(masks.astype(np.float32))
    return F.adaptive_avg_pool2d(full, lowres)[:, 0]


@dataclass
class PromptBatch:
    """Prompts of one image: point or box, with their low-resolution targets."""

    points: torch.Tensor  # (Pp, 1, 2) xy pixels of the frame
    point_gt: torch.Tensor  # (Pp, L, L)
    boxes: torch.Tensor  # (Pb, 4) xyxy pixels of the frame
    box_gt: torch.Tensor  # (Pb, L, L)

    def to(self, device: torch.device) -> PromptBatch:
        """The same prompts on ``device``."""
        return PromptBatch(self.points.to(device), self.point_gt.to(device),
                           self.boxes.to(device), self.box_gt.to(device))


def sample_prompts(
    sample: CorpusSample, n: int, point_prob: float, box_noise: float, frame: int, lowres: int,
    rng: np.random.Generator, segments: str = "sqrt_area",
) -> PromptBatch:
    """Draw ``n`` prompts on segments of ``sample`` (uniform point inside, noisy box).

    ``segments``: ``sqrt_area`` draws each prompt's segment independently with probability
    ~ sqrt(area); ``balanced`` walks random permutations of the segments, so every segment gets
    a prompt before any gets a second (the held-out evaluation weighs segments equally).
    """
    masks = sample.masks
    if len(masks) == 0:
        z = torch.zeros
        return PromptBatch(z((0, 1, 2)), z((0, lowres, lowres)), z((0, 4)), z((0, lowres, lowres)))
    if segments == "balanced":
        rounds = -(-n // len(masks))
        pick = np.concatenate([rng.permutation(len(masks)) for _ in range(rounds)])[:n]
    elif segments == "sqrt_area":  # large segments more often than specks
        w = np.sqrt(masks.reshape(len(masks), -1).sum(1).astype(np.float64))
        pick = rng.choice(len(masks), size=n, p=w / w.sum())
    else:
        raise ValueError(f"segments must be 'sqrt_area' or 'balanced', got {segments!r}")
    is_point = rng.random(n) < point_prob
    gt = lowres_targets(masks[pick], frame, lowres)
    boxes, _ = masks_to_boxes(masks[pick])
    h, w = masks.shape[1:]
    pts, bxs = [], []
    for i, k in enumerate(pick):
        if is_point[i]:
            ys, xs = np.nonzero(masks[k])
            j = rng.integers(len(xs))
            pts.append([xs[j], ys[j]])
        else:
            b = boxes[i].astype(np.float64)
            side = np.array([b[2] - b[0], b[3] - b[1]] * 2)
            b = b + rng.normal(0, 1, 4) * box_noise * side
            b = np.clip(b, 0, [w, h, w, h])
            bxs.append(b)
    return PromptBatch(
        torch.tensor(np.array(pts, np.float32).reshape(-1, 1, 2)),
        gt[torch.from_numpy(is_point)],
        torch.tensor(np.array(bxs, np.float32).reshape(-1, 4)),
        gt[torch.from_numpy(~is_point)],
    )


# ----------------------------------------------------------------------------- losses


def mask_losses(logits: torch.Tensor, gt: torch.Tensor, focal_weight: float, focal_alpha: float,
                dice_weight: float, focal_gamma: float = 2.0) -> torch.Tensor:
    """Per-mask loss ``focal_weight * focal + dice_weight * dice``.

    logits ``(P, K, L, L)``, gt ``(P, L, L)`` soft -> ``(P, K)`` (focal averaged over pixels).
    """
    t = gt[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, t, alpha=focal_alpha, gamma=focal_gamma,
                               reduction="none")
    focal = focal.flatten(2).mean(-1)
    p = logits.sigmoid().flatten(2)
    tt = t.flatten(2)
    dice = 1 - (2 * (p * tt).sum(-1) + 1) / (p.sum(-1) + tt.sum(-1) + 1)
    return focal_weight * focal + dice_weight * dice


def mask_iou(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``gt > 0.5``: ``(P, K, L, L)``, ``(P, L, L)`` -> ``(P, K)``."""
    pred = logits > 0
    t = (gt > 0.5)[:, None]
    inter = (pred & t).flatten(2).sum(-1).float()
    union = (pred | t).flatten(2).sum(-1).float()
    return inter / union.clamp(min=1)


def decode(sam: Sam, emb: torch.Tensor, points: torch.Tensor | None, boxes: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """All 4 mask tokens of SAM's decoder for prompts on one image embedding ``(1, C, E, E)``.

    Returns ``(logits (P, 4, L, L), iou_pred (P, 4))``; token 0 is the single-mask output,
    tokens 1..3 the multimask outputs (``MaskDecoder.forward`` slices the same way).
    """
    pts = None
    if points is not None:
        pts = (points, torch.ones(points.shape[:2], dtype=torch.int, device=points.device))
    sparse, dense = sam.prompt_encoder(points=pts, boxes=boxes, masks=None)
    return sam.mask_decoder.predict_masks(
        image_embeddings=emb, image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
    )


def decode_many(sam: Sam, emb: torch.Tensor, image_idx: torch.Tensor,
                sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` for prompts on SEVERAL images in one call.

    The library's ``predict_masks`` repeats a single image embedding for all its prompts, so
    training would call it once per image and prompt type: eight small calls per step, whose
    fixed per-op cost was most of a step. Here each prompt takes the embedding of its own image,
    ``emb[image_idx]``, and everything else is the library's computation: ``emb (B, C, E, E)``,
    ``image_idx (P,)``, ``sparse (P, T, C)``, ``dense (P, C, E, E)`` -> ``(logits (P, 4, L, L),
    iou_pred (P, 4))`` (tokens as :func:`decode`).
    """
    dec = sam.mask_decoder
    n, c = sparse.shape[0], dec.transformer_dim
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])
    tokens = torch.cat([out_tokens[None].expand(n, -1, -1), sparse], 1)
    src = emb[image_idx] + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    h, w = src.shape[-2:]
    hs, src = dec.transformer(src, pos, tokens)
    up = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))  # (P, C/8, L, L)
    hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in
                         enumerate(dec.output_hypernetworks_mlps)], 1)  # (P, 4, C/8)
    logits = (hyper @ up.flatten(2)).view(n, -1, *up.shape[-2:])
    return logits, dec.iou_prediction_head(hs[:, 0])


def prompt_losses(sam: Sam, emb: torch.Tensor, batches: list[PromptBatch], cfg: PretrainConfig
                  ) -> dict[str, torch.Tensor]:
    """Per-prompt losses of the prompts ``batches[b]`` on image ``b`` of ``emb (B, C, E, E)``:
    ``{"mask": (P,), "iou": (P,), "miou": (P,)}``, point prompts of all images first (image
    order), then box prompts. All prompts go through one decoder call (:func:`decode_many`)."""
    points = torch.cat([pb.points for pb in batches])
    boxes = torch.cat([pb.boxes for pb in batches])
    gts = [torch.cat([pb.point_gt for pb in batches]), torch.cat([pb.box_gt for pb in batches])]
    dev = emb.device
    image_idx = torch.cat([torch.full((len(pb.points),), b, device=dev)
                           for b, pb in enumerate(batches)]
                          + [torch.full((len(pb.boxes),), b, device=dev)
                             for b, pb in enumerate(batches)])
    # sparse (n, 2, C): a point plus SAM's padding point, or a box's two corners
    sparse, dense = [], []
    if len(points):
        labels = torch.ones(points.shape[:2], dtype=torch.int, device=dev)
        sp, de = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        sparse.append(sp)
        dense.append(de.expand(len(points), -1, -1, -1))
    if len(boxes):
        sp, de = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        sparse.append(sp)
        dense.append(de.expand(len(boxes), -1, -1, -1))
    logits, iou_pred = decode_many(sam, emb, image_idx, torch.cat(sparse), torch.cat(dense))
    mask_l, iou_l, miou = [], [], []
    # points: the three multimask outputs (tokens 1..3); boxes: the single-mask output (token 0)
    for gt, rows, sl in ((gts[0], slice(0, len(points)), slice(1, 4)),
                         (gts[1], slice(len(points), None), slice(0, 1))):
        if len(gt) == 0:
            continue
        lg, ip = logits[rows, sl], iou_pred[rows, sl]
        ml = mask_losses(lg, gt, cfg.focal_weight, cfg.focal_alpha, cfg.dice_weight,
                         cfg.focal_gamma)
        best = ml.argmin(1)  # SAM: back-propagate only the best of the multimask outputs
        actual = mask_iou(lg.detach(), gt)
        mask_l.append(ml.gather(1, best[:, None])[:, 0])
        iou_l.append(((ip - actual) ** 2).mean(1))
        miou.append(actual.gather(1, best[:, None])[:, 0])
    cat = torch.cat
    return {"mask": cat(mask_l), "iou": cat(iou_l), "miou": cat(miou)}


# ----------------------------------------------------------------------------- loop


def lowres_size(sam: Sam) -> int:
    """Side of the decoder's low-resolution masks (4 x the image embedding side)."""
    return 4 * sam.prompt_encoder.image_embedding_size[0]


def _draw(sam: Sam, samples: list[CorpusSample],
          rng: np.random.Generator | Sequence[np.random.Generator], cfg: PretrainConfig
          ) -> tuple[torch.Tensor, list[PromptBatch]]:
    """Encode ``samples`` once and draw ``cfg.prompts_per_image`` prompts on each: with ``rng``
    for every image in turn, or with ``rng[b]`` for image ``b``."""
    frame = sam.image_encoder.img_size
    low = lowres_size(sam)
    rngs = [rng] * len(samples) if isinstance(rng, np.random.Generator) else list(rng)
    if len(rngs) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(rngs)} prompt generators")
    x = torch.stack([pad_image(sam, s.image) for s in samples])
    emb = sam.image_encoder(x)
    # an image with no segment left draws no prompts (and no generator numbers)
    batches = [sample_prompts(s, cfg.prompts_per_image, cfg.point_prob, cfg.box_noise, frame,
                              low, r, cfg.segments).to(emb.device)
               for s, r in zip(samples, rngs, strict=True)]
    return emb, batches


def batch_losses(sam: Sam, samples: list[CorpusSample],
                 rng: np.random.Generator | Sequence[np.random.Generator],
                 cfg: PretrainConfig) -> dict[str, torch.Tensor]:
    """Losses of one training batch: the images encoded once, ``cfg.prompts_per_image`` prompts
    drawn on each (with ``rng``, or ``rng[b]`` for image ``b``). Returns ``{"loss"}`` (scalar, to
    back-propagate) and the per-prompt ``{"mask", "iou", "miou"}`` (``(B * P,)``, prompts of all
    images)."""
    emb, batches = _draw(sam, samples, rng, cfg)
    if not any(len(pb.point_gt) + len(pb.box_gt) for pb in batches):
        z = emb.sum() * 0.0  # no segment in the whole batch: a zero loss that still has a graph
        return {"loss": z, "mask": z[None], "iou": z[None], "miou": z[None].detach()}
    out = prompt_losses(sam, emb, batches, cfg)
    # one reduction: mean over every prompt of the batch (all prompts weigh the same)
    out["loss"] = out["mask"].mean() + cfg.iou_weight * out["iou"].mean()
    return out


def shard(n: int, rank: int, world: int) -> range:
    """The contiguous block of ``range(n)`` that process ``rank`` of ``world`` takes (sizes
    differ by at most one)."""
    return range(n * rank // world, n * (rank + 1) // world)


def step_batch(cfg: PretrainConfig, step: int, frame: int, rank: int = 0, world: int = 1
               ) -> tuple[list[CorpusSample], list[np.random.Generator]]:
    """Corpus samples and prompt generators of process ``rank``'s block of step ``step``:
    image ``b`` is sample ``step * B + b`` of ``cfg.corpus_seed``, prompted with
    ``default_rng([corpus_seed, step, b])`` (independent of ``world``)."""
    bs = shard(cfg.batch_images, rank, world)
    samples = [generate_sample(cfg.corpus_seed, step * cfg.batch_images + b, size=frame,
                               radius_range=tuple(cfg.corpus_radius)) for b in bs]
    return samples, [np.random.default_rng([cfg.corpus_seed, step, b]) for b in bs]


def step_loss(sam: Sam, cfg: PretrainConfig, step: int, rank: int = 0, world: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass of step ``step`` on this process's block of images: the SUM of its
    per-prompt losses ``mask + iou_weight * iou`` (a graph that reaches the encoder even with
    no prompt) and its statistics ``(4,)``: sums of mask loss, IoU loss and best-mask IoU, and
    the prompt count (:func:`mean_gradients` turns both into the step's mean)."""
    samples, rngs = step_batch(cfg, step, sam.image_encoder.img_size, rank, world)
    emb, batches = _draw(sam, samples, rngs, cfg)
    total = emb.sum() * 0.0  # the encoder always has a (zero) gradient, even with no prompt
    stats = torch.zeros(4, device=emb.device)
    if any(len(pb.point_gt) + len(pb.box_gt) for pb in batches):
        out = prompt_losses(sam, emb, batches, cfg)
        total = total + out["mask"].sum() + cfg.iou_weight * out["iou"].sum()
        stats = torch.stack([out["mask"].detach().sum(), out["iou"].detach().sum(),
                             out["miou"].sum(), torch.tensor(float(len(out["mask"])),
                                                             device=emb.device)])
    return total, stats


def mean_gradients(params: Sequence[torch.nn.Parameter], stats: torch.Tensor, iou_weight: float,
                   world: int = 1) -> dict[str, float]:
    """After every process's ``backward`` of its :func:`step_loss` sum: each ``p.grad`` of
    ``params`` becomes the gradient of the step's mean over ALL prompts (``world > 1``: one
    all-reduce of gradients, has-gradient flags and ``stats`` over the process group; a
    parameter no process has a gradient for keeps ``None``, as a one-process ``backward``
    leaves it). Returns the step's ``{"loss", "loss_mask", "loss_iou", "train_miou",
    "prompts"}`` (means over all prompts; identical in every process)."""
    if world > 1:
        grads, stats = sum_gradients_flagged(params, stats)
    else:
        grads = [p.grad for p in params]
    n_prompts = float(stats[3])
    s_mask, s_iou, s_miou = (float(v) / max(n_prompts, 1.0) for v in stats[:3])
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g / max(n_prompts, 1.0)
    return {"loss": s_mask + iou_weight * s_iou, "loss_mask": s_mask, "loss_iou": s_iou,
            "train_miou": s_miou, "prompts": n_prompts}


def step_gradients(sam: Sam, cfg: PretrainConfig, step: int, rank: int = 0, world: int = 1
                   ) -> dict[str, float]:
    """Forward and backward pass of step ``step`` (:func:`step_loss` then
    :func:`mean_gradients`): every ``p.grad`` holds the gradient of the step's loss, the mean
    over ALL prompts of the step (every process's), as :func:`batch_losses`' ``loss``. Returns
    :func:`mean_gradients`' values."""
    total, stats = step_loss(sam, cfg, step, rank, world)
    for p in sam.parameters():
        p.grad = None
    total.backward()
    params = [p for p in sam.parameters() if p.requires_grad]
    return mean_gradients(params, stats, cfg.iou_weight, world)


def pretrain(
    sam: Sam,
    cfg: PretrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 10,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    checkpoint_every: int = 0,
) -> dict[str, float]:
    """Train ``sam`` in place for ``cfg.steps`` steps on the on-the-fly corpus.

    Step ``s`` uses corpus samples ``s * B .. s * B + B - 1`` of ``cfg.corpus_seed``, image ``b``
    prompted by ``default_rng([corpus_seed, s, b])`` (no draw from torch's generators), at the
    rate ``lr * warmup_cosine_floor_factor(s)``: the same steps for any process count W (data
    parallel over the initialised process group, ``weaksam.engine.world.world()``, see the
    module docstring; W must not exceed ``cfg.batch_images``; the parameters of rank 0 are
    broadcast first). The engine's loop (:func:`weaksam.engine.loop.run_epochs`) runs windows
    of ``log_every`` steps (the last one shorter); after each, ``on_step(end, {"loss",
    "loss_mask", "loss_iou", "train_miou", "lr"})`` gets the window's means and the rate of
    step ``end`` (pass it on rank 0 only).

    ``checkpoint`` (``checkpoint_every`` > 0): rank 0 writes ``{"model", "optimizer", "step",
    "curves", "fingerprint"}`` there after the window that reaches each multiple of
    ``checkpoint_every`` steps and after the last one (so the file exists for any step count);
    a run finding one with ``fingerprint`` (every process reads it)
    continues after its step and first replays its curves (every ``(end, values)`` logged so
    far) through ``on_step``, so weights and curves are those of an unbroken run. Returns the
    last logged values plus ``seconds``.
    """
    rank, world = process_world()
    if not 1 <= world <= cfg.batch_images:
        raise ValueError(f"{world} processes for {cfg.batch_images} images per step")
    if world > 1:
        for t in sam.state_dict().values():
            dist.broadcast(t, 0)
    params = [p for p in sam.parameters() if p.requires_grad]
    opt = make_optimizer(params, "adamw", cfg.lr, 0.0, cfg.weight_decay)
    curves: list[tuple[int, dict[str, float]]] = []
    state = (resume_state(checkpoint, fingerprint, "small SAM training checkpoint")
             if checkpoint is not None and checkpoint_every > 0 else None)
    if state is not None:
        sam.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        curves = list(state["curves"])
        for end, values in curves:
            if on_step is not None:
                on_step(end, values)
    start = 0 if state is None else int(state["step"])
    del state
    sam.train()
    bar = tqdm(total=cfg.steps, initial=start, desc="sam_pretrain",
               disable=None if rank == 0 else True)

    def window(w: int) -> range:  # steps of window w
        return range(w * log_every, min((w + 1) * log_every, cfg.steps))

    def train_step(step: int) -> dict[str, float]:
        set_lr(opt, cfg.lr * warmup_cosine_floor_factor(step, cfg.steps, cfg.warmup_steps))
        total, stats = step_loss(sam, cfg, step, rank, world)
        vals: dict[str, float] = {}

        def reduce() -> None:  # the step's mean gradients, checked before the update
            vals.update(mean_gradients(params, stats, cfg.iou_weight, world))
            vals.pop("prompts")
            check_finite(vals["loss"], stage="sam_pretrain", epoch=0, step=step, losses=vals,
                         checkpoint=checkpoint if checkpoint_every > 0 else None)

        optimizer_step(opt, total, params, cfg.grad_clip, reduce=reduce)
        bar.update()
        return vals

    def train_window(w: int) -> dict[str, float]:
        acc: dict[str, list[float]] = {}
        for step in window(w):
            for k, v in train_step(step).items():
                acc.setdefault(k, []).append(v)
        end = window(w).stop  # the logged rate is the next step's (LambdaLR's last rate)
        return {**{k: float(np.mean(v)) for k, v in acc.items()},
                "lr": cfg.lr * warmup_cosine_floor_factor(end, cfg.steps, cfg.warmup_steps)}

    def log(w: int, means: dict[str, float]) -> None:
        curves.append((window(w).stop, means))
        if on_step is not None:
            on_step(window(w).stop, means)

    def save(w: int, _: dict[str, float]) -> None:
        steps = window(w)
        if (rank != 0 or checkpoint is None or checkpoint_every <= 0
                or (steps.stop // checkpoint_every == steps.start // checkpoint_every
                    and steps.stop < cfg.steps)):
            return  # saved at each multiple of checkpoint_every and after the last step
        save_state(checkpoint, {"model": sam.state_dict(), "optimizer": opt.state_dict(),
                                "step": steps.stop, "curves": curves,
                                "fingerprint": fingerprint})

    timing = run_epochs(range(-(-start // log_every), -(-cfg.steps // log_every)), train_window,
                        [log, save])
    bar.close()
    sam.eval()
    last = curves[-1][1] if curves else {}
    return {**last, "seconds": timing.seconds}  # a copy: on_step may keep the logged dict


@torch.no_grad()
def evaluate(sam: Sam, seed: int, num_images: int, masks_per_image: int = 4,
             radius_range: tuple[float, float] = RADIUS_RANGE) -> dict[str, float]:
    """Held-out mask IoU on corpus samples ``0..num_images-1`` of ``seed`` (use a seed the
    training never saw; ``radius_range`` as in training). Point: one uniform point inside the
    segment, multimask output, the mask with the highest predicted IoU (SAM's automatic choice).
    Box: the tight box, single mask. IoU at the image's own resolution (logits upsampled to the
    frame, cropped, > 0).

    Returns ``{"miou_point", "miou_box", "num_masks"}`` (IoU in [0, 1]).
    """
    sam.eval()
    frame = sam.image_encoder.img_size
    rng = np.random.default_rng([seed, 0xE7A1])
    ious_p: list[float] = []
    ious_b: list[float] = []
    for i in range(num_images):
        s = generate_sample(seed, i, size=frame, radius_range=tuple(radius_range))
        if len(s.masks) == 0:
            continue
        pick = rng.permutation(len(s.masks))[:masks_per_image]
        m = s.masks[pick]
        h, w = m.shape[1:]
        emb = sam.image_encoder(pad_image(sam, s.image)[None])
        pts = []
        for k in range(len(m)):
            ys, xs = np.nonzero(m[k])
            j = rng.integers(len(xs))
            pts.append([[xs[j], ys[j]]])
        boxes, _ = masks_to_boxes(m)
        dev = sam.device
        lp, ip = decode(sam, emb, torch.tensor(np.array(pts, np.float32), device=dev), None)
        lb, _ = decode(sam, emb, None, torch.from_numpy(boxes).to(dev))
        best = ip[:, 1:].argmax(1) + 1
        lp = lp[torch.arange(len(m), device=dev), best]
        gt = torch.from_numpy(m).to(dev)
        for logits, out in ((lp, ious_p), (lb[:, 0], ious_b)):
            up = F.interpolate(logits[:, None], (frame, frame), mode="bilinear",
                               align_corners=False)[:, 0, :h, :w] > 0
            inter = (up & gt).flatten(1).sum(1).float()
            union = (up | gt).flatten(1).sum(1).float().clamp(min=1)
            out.extend((inter / union).tolist())
    return {"miou_point": float(np.mean(ious_p)) if ious_p else 0.0,
            "miou_box": float(np.mean(ious_b)) if ious_b else 0.0,
            "num_masks": len(ious_p)}
