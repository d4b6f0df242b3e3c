"""The tiny SAM architecture every SAM test builds (64 px frame, 8 x 8 tokens; builds in ms)."""

from __future__ import annotations

from dataclasses import replace

from weaksam.sam.model import SmallSamConfig

TINY_SAM = SmallSamConfig(img_size=64, patch_size=8, encoder_width=32, encoder_depth=1,
                          encoder_heads=2, encoder_window=0, prompt_dim=32, decoder_depth=1,
                          decoder_heads=2, decoder_mlp_dim=32, iou_head_hidden=16, stem="patch")
TINY_SAM_DEPTH2 = replace(TINY_SAM, encoder_depth=2)  # checkpoint tests: more than one block
