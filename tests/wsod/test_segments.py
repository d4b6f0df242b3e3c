"""Segment reductions over a batch's concatenated proposals equal the per-image operations."""

from __future__ import annotations

import torch

from weaksam.wsod.segments import (
    RoIBatch,
    segment_argmax,
    segment_max,
    segment_mean,
    segment_softmax,
    segment_sum,
)


def _batch() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(0)
    sizes = [3, 1, 5]
    x = torch.randn(sum(sizes), 4, generator=g)
    seg = torch.repeat_interleave(torch.tensor(sizes))
    return x, seg, sizes


def test_roi_batch_concatenates_and_indexes_images():
    b = RoIBatch.of([torch.zeros(2, 4), torch.ones(3, 4)], [torch.tensor([1.0, 0]),
                                                             torch.tensor([0, 1.0])])
    assert b.seg.tolist() == [0, 0, 1, 1, 1] and b.sizes == [2, 3] and b.num_images == 2
    assert b.boxes.shape == (5, 4) and b.labels.tolist() == [[1, 0], [0, 1]]


def test_sum_mean_max_softmax_match_each_segment_alone():
    x, seg, sizes = _batch()
    parts = x.split(sizes)
    assert torch.allclose(segment_sum(x, seg, 3), torch.stack([p.sum(0) for p in parts]))
    assert torch.allclose(segment_mean(x[:, 0], seg, torch.tensor(sizes)),
                          torch.stack([p[:, 0].mean() for p in parts]))
    assert torch.equal(segment_max(x, seg, 3), torch.stack([p.amax(0) for p in parts]))
    soft = segment_softmax(x, seg, 3)
    assert torch.allclose(soft, torch.cat([torch.softmax(p, dim=0) for p in parts]), atol=1e-7)


def test_softmax_gradient_matches_per_segment_softmax():
    x, seg, sizes = _batch()
    w = torch.randn_like(x)
    a = x.clone().requires_grad_()
    (segment_softmax(a, seg, 3) * w).sum().backward()
    b = x.clone().requires_grad_()
    (torch.cat([torch.softmax(p, dim=0) for p in b.split(sizes)]) * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_argmax_is_the_first_row_of_the_maximum_in_each_segment():
    x = torch.tensor([[1.0], [3.0], [3.0], [2.0], [5.0], [5.0]])
    seg = torch.tensor([0, 0, 0, 1, 2, 2])
    assert segment_argmax(x, seg, 3).flatten().tolist() == [1, 3, 4]  # ties: the first row
    x[0, 0] = float("nan")  # NaN counts as the maximum (as torch.argmax), so it propagates
    assert segment_argmax(x, seg, 3)[0, 0].item() == 0
