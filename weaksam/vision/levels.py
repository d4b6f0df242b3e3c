"""A parameter-free transformers backbone over feature levels computed elsewhere, so a
transformers detector (Deformable DETR, Mask2Former) built from a config takes our levels
through public paths (``AutoConfig.register`` / ``AutoBackbone.register``), with no placeholder
network to build and discard.

Shorthand: B images, L levels, D_l channels of level l, (h_l, w_l) its size.

- :class:`FeatureLevelsConfig`: the backbone config (``channels`` = [D_0, .., D_{L-1}]; the
  model type ``weaksam_feature_levels``), passed as ``backbone_config`` to the detector's config.
- :class:`FeatureLevels`: the backbone transformers builds from it (``load_backbone``);
  ``channels`` is what transformers reads to size the layers after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoBackbone, AutoConfig, PretrainedConfig, PreTrainedModel


class FeatureLevelsConfig(PretrainedConfig):
    """Backbone config of :class:`FeatureLevels`: the channels D_l of its L output levels."""

    model_type = "weaksam_feature_levels"

    def __init__(self, channels: Sequence[int] = (64,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]


class FeatureLevels(PreTrainedModel):
    """A transformers backbone of the given levels: ``pixel_values`` -> its L feature levels.

    Without a trunk (cached maps) ``pixel_values`` already is the padded level (B, D_0, h, w)
    and passes through; with one (:meth:`set_trunk`) ``pixel_values`` are padded normalised
    images (B, 3, H, W) and the trunk gives the L maps (no gradient when frozen). transformers'
    wrapper interpolates ``pixel_mask`` to every level (nearest), so the detector passes the
    mask at level-0 resolution. Parameter-free itself. Mask2Former
    (:mod:`weaksam.wsis.mask2former`) uses it only to size its pixel decoder by ``channels``."""

    config_class = FeatureLevelsConfig
    main_input_name = "pixel_values"

    def __init__(self, config: FeatureLevelsConfig) -> None:
        super().__init__(config)
        self.channels = list(config.channels)
        self.trunk: nn.Module | None = None
        self.train_trunk = False
        self.post_init()

    def set_trunk(self, trunk: nn.Module, trainable: bool) -> None:
        """Compute the levels with ``trunk`` ((B, 3, H, W) -> a map or a list of L maps)."""
        self.trunk, self.train_trunk = trunk, bool(trainable)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        if self.trunk is None:
            return [pixel_values]
        with torch.set_grad_enabled(self.train_trunk and torch.is_grad_enabled()):
            feats = self.trunk(pixel_values)
        return [feats] if isinstance(feats, torch.Tensor) else list(feats)


AutoConfig.register(FeatureLevelsConfig.model_type, FeatureLevelsConfig, exist_ok=True)
AutoBackbone.register(FeatureLevelsConfig, FeatureLevels, exist_ok=True)
