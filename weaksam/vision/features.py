"""Precomputed backbone maps as a model input (default profile: the frozen ``backbone_pretrain``
CNN's maps, cached once by :mod:`weaksam.retrain.features`).

Shorthand: B images, D channels, (h_i, w_i) cells of image i's map, (H_i, W_i) its pixels,
``stride`` px per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weaksam.vision.imaging import pad_batch, valid_mask


@dataclass
class FeatureBatch:
    """Precomputed backbone maps of B images: ``maps[i]`` (D, h_i, w_i) float, ``image_sizes[i]``
    the (H_i, W_i) px of the image they were computed from."""

    maps: list[torch.Tensor]
    image_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.maps)

    def padded(self) -> torch.Tensor:
        """(B, D, max h_i, max w_i): the maps zero-padded at the bottom / right
        (:func:`weaksam.vision.imaging.pad_batch`)."""
        return pad_batch(self.maps)

    def mask(self) -> torch.Tensor:
        """(B, max h_i, max w_i) bool, True on each map's own cells (the padding mask of
        :meth:`padded`)."""
        hm = max(m.shape[-2] for m in self.maps)
        wm = max(m.shape[-1] for m in self.maps)
        return valid_mask([(int(m.shape[-2]), int(m.shape[-1])) for m in self.maps], (hm, wm),
                          device=self.maps[0].device)
