"""The small SAM of the default profile, built from segment_anything's own classes.

The official SAM (Kirillov et al., 2023; paper Sec. 4.1 uses ViT-H) is ``Sam(ImageEncoderViT,
PromptEncoder, MaskDecoder(TwoWayTransformer))`` at 1024 px with patch 16 and a 256-wide
decoder. The small SAM is the same classes at a CPU size: images are resized (longest side) to
``img_size`` px, the encoder sees ``(img_size / patch_size)^2`` tokens, the decoder predicts
low-resolution masks at ``4 * img_size / patch_size`` px (a quarter of ``img_size`` when the
patch is 16, half when it is 8). ``stem="conv"`` swaps the encoder's linear patch projection for
a convolutional stem (weaksam/utils/stems.py), which a ViT trained from scratch on a small
corpus learns far faster with; the official models keep the linear one.

Shapes: image embedding ``(B, prompt_dim, E, E)`` with ``E = img_size // patch_size``; masks
``(B, 3 or 1, 4E, 4E)`` logits; IoU predictions ``(B, 3 or 1)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from weaksam.utils.stems import conv_stem


@dataclass(frozen=True)
class SmallSamConfig:
    """Architecture of the small SAM (saved in its checkpoint, so loading needs no params):
    params.yaml ``sam_pretrain.model`` through :func:`weaksam.config.from_section`. No field
    has a default (params.yaml is the one source, ``tests/test_config.py``)."""

    img_size: int
    patch_size: int
    encoder_width: int
    encoder_depth: int
    encoder_heads: int
    encoder_window: int  # 0: global attention in every block (few tokens)
    prompt_dim: int  # decoder / prompt embedding width (official: 256); divisible by 8
    decoder_depth: int
    decoder_heads: int
    decoder_mlp_dim: int
    iou_head_hidden: int
    stem: str  # patch: SAM's linear patch projection; conv: 3x3 stride-2 conv stem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_small_sam(cfg: SmallSamConfig) -> Sam:
    """Build an untrained small SAM from segment_anything's classes (same wiring as
    ``segment_anything.build_sam._build_sam``, other sizes). Returned in eval mode."""
    if cfg.img_size % cfg.patch_size:
        raise ValueError(f"img_size {cfg.img_size} is not a multiple of patch {cfg.patch_size}")
    if cfg.stem not in ("patch", "conv"):
        raise ValueError(f"stem must be 'patch' or 'conv', got {cfg.stem!r}")
    if cfg.prompt_dim % 8:
        raise ValueError(f"prompt_dim {cfg.prompt_dim} must be divisible by 8")
    emb = cfg.img_size // cfg.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.encoder_width,
            depth=cfg.encoder_depth,
            num_heads=cfg.encoder_heads,
            mlp_ratio=4,
            out_chans=cfg.prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=cfg.encoder_window,
            global_attn_indexes=tuple(range(cfg.encoder_depth)) if cfg.encoder_window else (),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_heads,
            ),
            transformer_dim=cfg.prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=cfg.iou_head_hidden,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    if cfg.stem == "conv":  # same (B, E, E, width) tokens, from early convolutions
        sam.image_encoder.patch_embed.proj = conv_stem(3, cfg.encoder_width, cfg.patch_size)
    sam.eval()
    return sam


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
