"""Per-image reductions over the proposals of a whole batch (one autograd op per batch).

The WSOD heads run on the concatenated proposals of B images, N = sum_i R_i rows; ``seg (N,)``
says which image each row belongs to. Image-level quantities of OICR / MIST (WSDDN's softmax
over an image's proposals, its image score, the 1/|R| loss average) are segment reductions:
written once here with ``index_add`` / ``scatter_reduce`` (deterministic on the CPU) instead of a
Python loop of small ops per image, whose fixed cost dominated an epoch with few proposals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class RoIBatch:
    """Proposals and labels of B images, concatenated.

    ``boxes (N, 4)`` xyxy px of each image's network input, ``seg (N,)`` long image index,
    ``labels (B, C)`` multi-hot, ``counts (B,)`` long proposals per image (each >= 1)."""

    boxes: torch.Tensor
    seg: torch.Tensor
    labels: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def of(cls, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> RoIBatch:
        """Per-image ``boxes[i] (R_i, 4)`` and ``labels[i] (C,)`` -> one batch."""
        dev = boxes[0].device
        counts = torch.tensor([len(b) for b in boxes], dtype=torch.long, device=dev)
        return cls(torch.cat(list(boxes)), torch.repeat_interleave(counts),
                   torch.stack(list(labels)), counts)

    @property
    def num_images(self) -> int:
        return len(self.counts)

    @property
    def sizes(self) -> list[int]:
        return self.counts.tolist()


def segment_sum(x: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """(N, ...) -> (n, ...): row i is the sum of the rows of x whose ``seg`` is i."""
    return x.new_zeros((n, *x.shape[1:])).index_add(0, seg, x)


def segment_mean(x: torch.Tensor, seg: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(N,) -> (n,) mean of each segment (``counts (n,)`` rows each, all >= 1)."""
    return segment_sum(x, seg, len(counts)) / counts.to(x.dtype)


def segment_max(x: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """(N, C) -> (n, C) column-wise maximum of each segment (no gradient)."""
    idx = seg[:, None].expand_as(x)
    return x.new_full((n, x.shape[1]), float("-inf")).scatter_reduce(
        0, idx, x.detach(), "amax", include_self=True)


def segment_softmax(x: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """(N, C) -> (N, C): softmax over the rows of each segment, column by column (WSDDN's
    softmax over an image's proposals)."""
    e = (x - segment_max(x, seg, n)[seg]).exp()
    return e / segment_sum(e, seg, n)[seg]


def segment_argmax(x: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    """(N, C) -> (n, C) long: the row of the column-wise maximum of each segment (the first
    such row on ties, as ``argmax`` of the segment alone; NaN counts as the maximum, as there,
    so a NaN loss still reaches the trainer's guard)."""
    hit = (x == segment_max(x, seg, n)[seg]) | x.isnan()
    rows = torch.arange(len(x), device=x.device)[:, None].expand_as(x)
    cand = torch.where(hit, rows, len(x))
    return torch.full((n, x.shape[1]), len(x), dtype=torch.long, device=x.device).scatter_reduce(
        0, seg[:, None].expand_as(x), cand, "amin", include_self=True)
