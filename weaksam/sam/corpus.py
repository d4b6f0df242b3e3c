"""Class-agnostic synthetic mask corpus for pre-training the small SAM (default profile).

Stands in for SA-1B (Kirillov et al., 2023), which the paper's SAM was trained on: random
segments with no class, disjoint from the task's data (no regular discs, squares, triangles,
stars, rings, crosses, hexagons, crescents, cars or houses): smooth random blobs, irregular
random polygons, random ellipses and small specks, filled with random colours and textures
(solid, stripes at any angle, checker at any scale, smooth noise, gradients) over random
textured backgrounds. Some segments have a part of another texture inside them: both the part
and the whole are masks, which teaches SAM's multimask ambiguity (part vs whole). Segment radii
default to 8-40% of the short side (the task's objects are 10-30%); small specks are painted as
clutter that occludes segments but are not segments themselves (so neither training prompts nor
the held-out mIoU are dominated by few-pixel specks that the downstream proposals never need).

Every sample depends only on ``(seed, index)`` (its own numpy generator): the corpus is
generated on the fly, deterministically, in any order.

Shapes: ``image (H, W, 3)`` uint8 RGB with ``max(H, W) == size``; ``masks (N, H, W)`` bool,
visible pixels of each segment (painter's order; later segments occlude earlier ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# default segment radii, fraction of the short side (log-uniform); the task's objects are 10-30 %
RADIUS_RANGE: tuple[float, float] = (0.08, 0.4)


@dataclass
class CorpusSample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, H, W) bool


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of corpus sample ``index`` (independent of every other sample)."""
    return np.random.default_rng([int(seed), int(index), 0x5A3])


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, ch: int) -> np.ndarray:
    """(h, w, ch) float32 smooth noise in [0, 1] (a random ``cells`` grid, cubic-upsampled)."""
    g = rng.random((cells, cells, ch)).astype(np.float32)
    out = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(h, w, ch), 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int, where: np.ndarray | None = None
             ) -> np.ndarray:
    """A random fill (solid, stripes, checker, noise, ramp) of an ``h x w`` frame, float32 or
    float64 RGB in [0, 255]: the whole frame ``(h, w, 3)``, or only its pixels where the bool
    mask ``where (h, w)`` is set, ``(n, 3)`` in row-major order. Both draw the same numbers from
    ``rng`` and give the same values: ``_texture(r, h, w, m) == _texture(r', h, w)[m]`` for
    generators in the same state (computing a segment's fill on its own pixels is the speed-up;
    the ramp's range is the whole frame's, taken at its corners)."""
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    kind = rng.integers(5)
    if where is None:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    else:
        yi, xi = np.nonzero(where)
        ys, xs = yi.astype(np.float32), xi.astype(np.float32)
    if kind == 0:
        return np.broadcast_to(c1, (*ys.shape, 3)).copy()
    if kind == 1:  # stripes at a random angle and period
        a = rng.uniform(0, np.pi)
        period = rng.uniform(3, 14)
        t = (np.cos(a) * xs + np.sin(a) * ys) / period
        sel = (np.floor(t) % 2 == 0)[..., None]
        return np.where(sel, c1, c2)
    if kind == 2:  # checker of random cell size
        s = rng.uniform(3, 12)
        sel = ((np.floor(xs / s) + np.floor(ys / s)) % 2 == 0)[..., None]
        return np.where(sel, c1, c2)
    if kind == 3:  # smooth noise between two colours
        t = _smooth_noise(rng, h, w, int(rng.integers(3, 9)), 1)
        t = t if where is None else t[where]
        return c1 * t + c2 * (1 - t)
    a = rng.uniform(0, 2 * np.pi)  # linear ramp, normalised over the whole frame
    t = np.cos(a) * xs + np.sin(a) * ys
    # a linear function of (x, y) is extreme at the frame's corners, and rounding is monotone,
    # so the corners give exactly the min and range of ``t`` over every pixel
    cx = np.array([0, w - 1, 0, w - 1], np.float32)
    cy = np.array([0, 0, h - 1, h - 1], np.float32)
    tc = np.cos(a) * cx + np.sin(a) * cy
    t = ((t - tc.min()) / max(float(np.ptp(tc)), 1e-6))[..., None]
    return c1 * t + c2 * (1 - t)


def _shape_mask(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float
                ) -> np.ndarray:
    """(h, w) bool mask of a random blob, irregular polygon or ellipse of radius ~``r`` px."""
    kind = rng.integers(3)
    canvas = np.zeros((h, w), np.uint8)
    if kind == 2:  # ellipse with a random aspect ratio and angle
        ax = (max(1, int(r)), max(1, int(r * rng.uniform(0.35, 1.0))))
        cv2.ellipse(canvas, (int(cx), int(cy)), ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return canvas.astype(bool)
    if kind == 0:  # smooth blob: r(theta) = r (1 + sum_k a_k cos(k theta + phi_k))
        th = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        rad = np.ones_like(th)
        for k in range(2, 6):
            rad += rng.uniform(-0.25, 0.25) / (k - 1) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    else:  # irregular polygon, 3..9 vertices at jittered angles and radii
        n = int(rng.integers(3, 10))
        th = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.45, 1.0, n)
    pts = np.stack([cx + r * rad * np.cos(th), cy + r * rad * np.sin(th)], 1)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def generate_sample(
    seed: int,
    index: int,
    size: int = 128,
    max_segments: int = 6,
    radius_range: tuple[float, float] = RADIUS_RANGE,
    part_prob: float = 0.3,
    max_specks: int = 5,
    min_area: int = 12,
) -> CorpusSample:
    """One corpus image and its segment masks (see the module docstring).

    ``radius_range`` is a fraction of the short side (log-uniform); segments whose visible area
    is below ``min_area`` px are dropped.
    """
    rng = sample_rng(seed, index)
    short = int(size * rng.uniform(0.6, 1.0))
    h, w = (size, short) if rng.random() < 0.5 else (short, size)
    img = _texture(rng, h, w) * 0.5 + _smooth_noise(rng, h, w, int(rng.integers(2, 7)), 3) * 127
    masks: list[np.ndarray] = []
    n = int(rng.integers(1, max_segments + 1))
    lo, hi = np.log(radius_range[0] * min(h, w)), np.log(radius_range[1] * min(h, w))
    for _ in range(n):
        r = float(np.exp(rng.uniform(lo, hi)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        m = _shape_mask(rng, h, w, cx, cy, r)
        if not m.any():
            continue
        img[m] = _texture(rng, h, w, m)
        group = [m]
        if rng.random() < part_prob and r > 8:  # a part inside: part and whole are both masks
            ys, xs = np.nonzero(m)
            j = int(rng.integers(len(xs)))
            part = _shape_mask(rng, h, w, xs[j], ys[j], r * rng.uniform(0.25, 0.5)) & m
            if part.any():
                img[part] = _texture(rng, h, w, part)
                group.append(part)
        for k in range(len(masks)):  # occlusion of earlier segments
            masks[k] &= ~m
        masks.extend(group)
    for _ in range(int(rng.integers(0, max_specks + 1))):  # clutter: occludes, not a segment
        m = _shape_mask(rng, h, w, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 5))
        img[m] = rng.uniform(0, 255, 3)
        for k in range(len(masks)):
            masks[k] &= ~m
    img = img + rng.normal(0, rng.uniform(0, 8), img.shape)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    keep = [m for m in masks if m.sum() >= min_area]
    mk = np.stack(keep) if keep else np.zeros((0, h, w), bool)
    return CorpusSample(image, mk)
