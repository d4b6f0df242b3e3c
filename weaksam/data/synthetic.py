"""Synthetic VOC-like data set: the embedded default of the workspace (DESIGN.md).

Stands in for PASCAL VOC 2007 (paper Sec. 4.1: train on trainval, test on test) so the whole
DAG runs on 2 CPU cores. Each image is a cluttered textured background with 1..K objects of
C = 10 classes that differ in shape AND appearance (colour, texture):

    disc, square, triangle, star, ring, cross, hexagon, crescent, car, house

``car`` (orange striped body + two dark wheels that are discs) and ``house`` (chequered
square body + triangular roof) contain parts shaped like smaller objects of other classes: the
part-domination problem of WSOD (a detector fires on the discriminative part, not the whole).

Objects overlap and occlude each other (painter's order). Instance masks are the VISIBLE
pixels; boxes are the tight boxes of the visible masks (xyxy, x2/y2 exclusive, via
``weaksam.utils.boxes.masks_to_boxes``). An instance whose visible fraction is below
``difficult_visible`` is ``difficult`` (as VOC, excluded from AP). Backgrounds carry
low-frequency colour noise, stripes and small random distractor blobs of no class (a third of
them in a class colour), which give low-level proposal methods (Selective Search) and
colour-driven classifiers false positives.

Every image depends only on ``(seed, split, index)`` (its own ``numpy`` generator), so images
can be generated in any order or in parallel.

Shapes: an image is ``(H, W, 3)`` uint8 RGB; masks ``(N, H, W)`` bool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_utils
from tqdm import tqdm

from weaksam.utils.boxes import masks_to_boxes, xyxy_to_xywh

CLASS_NAMES: tuple[str, ...] = (
    "disc", "square", "triangle", "star", "ring", "cross", "hexagon", "crescent", "car", "house",
)
SPLITS: dict[str, int] = {"trainval": 0, "test": 1}
# image ids: trainval 1..N, test 500001..500000+N (unique across splits, like VOC ids)
ID_OFFSET: dict[str, int] = {"trainval": 0, "test": 500_000}

# Per class: base RGB colour per part and texture name per part.
_PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "disc": ((215, 45, 40),),
    "square": ((45, 85, 215),),
    "triangle": ((40, 170, 60),),
    "star": ((240, 205, 35),),
    "ring": ((195, 50, 195),),
    "cross": ((30, 195, 205),),
    "hexagon": ((120, 60, 185),),
    "crescent": ((235, 235, 230),),
    "car": ((235, 125, 30), (35, 35, 35)),  # body, wheels
    "house": ((150, 100, 60), (165, 25, 30)),  # body, roof
}
_TEXTURE: dict[str, tuple[str, ...]] = {
    "disc": ("solid",),
    "square": ("hstripes",),
    "triangle": ("solid",),
    "star": ("solid",),
    "ring": ("solid",),
    "cross": ("checker",),
    "hexagon": ("dots",),
    "crescent": ("gradient",),
    "car": ("dstripes", "solid"),
    "house": ("checker", "solid"),
}


@dataclass
class SyntheticImage:
    """One generated image and its ground truth (all instances visible, z-order kept)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, H, W) bool, visible pixels
    category_ids: np.ndarray  # (N,) int64 in 1..C
    difficult: np.ndarray  # (N,) bool
    visible_fraction: np.ndarray  # (N,) float64 visible / full area


# ----------------------------------------------------------------------------- shapes
def _poly(cx: float, cy: float, r: float, n: int, angle: float, r_inner: float | None = None
          ) -> np.ndarray:
    """Regular n-gon (or 2n-point star when ``r_inner``) as (P, 2) int32 pixel coordinates."""
    if r_inner is None:
        t = angle + np.arange(n) * 2 * np.pi / n
        rad = np.full(n, r)
    else:
        t = angle + np.arange(2 * n) * np.pi / n
        rad = np.where(np.arange(2 * n) % 2 == 0, r, r_inner)
    pts = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], axis=1)
    return np.round(pts).astype(np.int32)


def _rot(pts: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Rotate (P, 2) float points about (cx, cy) by ``angle`` radians -> int32."""
    c, s = math.cos(angle), math.sin(angle)
    d = pts - [cx, cy]
    out = np.stack([cx + c * d[:, 0] - s * d[:, 1], cy + s * d[:, 0] + c * d[:, 1]], axis=1)
    return np.round(out).astype(np.int32)


def _fill(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, polys, 1)
    return m.astype(bool)


def _circle(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (round(cx), round(cy)), max(1, round(r)), 1, -1)
    return m.astype(bool)


Parts = list[np.ndarray]  # one (H, W) bool mask per part, in _PALETTE order


def _draw(name: str, shape: tuple[int, int], cx: float, cy: float, r: float, angle: float,
          rng: np.random.Generator) -> Parts:
    """Part masks of one object of class ``name`` centred at (cx, cy) with radius ``r`` px."""
    if name == "disc":
        return [_circle(shape, cx, cy, r)]
    if name == "square":
        return [_fill(shape, [_poly(cx, cy, r, 4, angle)])]
    if name == "triangle":
        return [_fill(shape, [_poly(cx, cy, r, 3, angle)])]
    if name == "star":
        return [_fill(shape, [_poly(cx, cy, r, 5, angle, r_inner=0.45 * r)])]
    if name == "hexagon":
        return [_fill(shape, [_poly(cx, cy, r, 6, angle)])]
    if name == "ring":
        return [_circle(shape, cx, cy, r) & ~_circle(shape, cx, cy, rng.uniform(0.45, 0.6) * r)]
    if name == "cross":
        w = rng.uniform(0.28, 0.4) * r
        bar = np.array([[-r, -w], [r, -w], [r, w], [-r, w]], float) + [cx, cy]
        return [_fill(shape, [_rot(bar, cx, cy, angle), _rot(bar, cx, cy, angle + np.pi / 2)])]
    if name == "crescent":
        off = rng.uniform(0.35, 0.55) * r
        return [_circle(shape, cx, cy, r)
                & ~_circle(shape, cx + off * math.cos(angle), cy + off * math.sin(angle), 0.85 * r)]
    tilt = (angle % (2 * np.pi) - np.pi) * 0.1  # cars and houses stay nearly upright (+-18 deg)
    if name == "car":
        flip = 1.0 if rng.random() < 0.5 else -1.0
        hb = 0.45 * r  # half body height
        body = np.array([[-r, -0.1 * r], [-0.55 * r * flip, -0.1 * r],
                         [-0.35 * r * flip, -hb * 1.4], [0.45 * r * flip, -hb * 1.4],
                         [0.7 * r * flip, -0.1 * r], [r, -0.1 * r],
                         [r, 0.35 * r], [-r, 0.35 * r]], float) + [cx, cy]
        wr = 0.28 * r
        wheels = np.array([[cx - 0.55 * r, cy + 0.38 * r], [cx + 0.55 * r, cy + 0.38 * r]])
        wheels = _rot(wheels.astype(float), cx, cy, tilt)
        body_m = _fill(shape, [_rot(body, cx, cy, tilt)])
        wheel_m = _circle(shape, *wheels[0], wr) | _circle(shape, *wheels[1], wr)
        return [body_m & ~wheel_m, wheel_m]
    if name == "house":
        b = 0.6 * r
        body = np.array([[-b, -0.1 * r], [b, -0.1 * r], [b, r], [-b, r]], float) + [cx, cy]
        roof = np.array([[-0.85 * r, -0.1 * r], [0.85 * r, -0.1 * r], [0, -r]], float) + [cx, cy]
        roof_m = _fill(shape, [_rot(roof, cx, cy, tilt)])
        return [_fill(shape, [_rot(body, cx, cy, tilt)]) & ~roof_m, roof_m]
    raise ValueError(f"unknown class {name!r}")


# ----------------------------------------------------------------------------- textures
def _texture(kind: str, ys: np.ndarray, xs: np.ndarray, r: float, rng: np.random.Generator
             ) -> np.ndarray:
    """Brightness modulation in about [-1, 1] at pixels (ys, xs) for an object of radius r."""
    if kind == "solid":
        return np.zeros(len(ys))
    period = max(3.0, rng.uniform(0.25, 0.4) * r)
    ph = rng.uniform(0, 2 * np.pi)
    if kind == "hstripes":
        return np.sign(np.sin(2 * np.pi * ys / period + ph))
    if kind == "dstripes":
        return np.sign(np.sin(2 * np.pi * (xs + ys) / period + ph))
    if kind == "checker":
        return np.where(((xs // (period / 1.5)).astype(int) + (ys // (period / 1.5)).astype(int))
                        % 2 == 0, 1.0, -1.0)
    if kind == "dots":
        p = period / 1.2
        d = np.hypot((xs % p) - p / 2, (ys % p) - p / 2)
        return np.where(d < p * 0.3, -1.5, 0.4)
    if kind == "gradient":
        return (ys - ys.min()) / max(1.0, float(np.ptp(ys))) * 2 - 1
    raise ValueError(f"unknown texture {kind!r}")


def _background(h: int, w: int, rng: np.random.Generator, num_distractors: float) -> np.ndarray:
    """Cluttered background (H, W, 3) float32 in [0, 255]: colour noise, stripes, blobs."""
    g = int(rng.integers(3, 8))
    low = rng.uniform(30, 200, size=(g, g, 3)).astype(np.float32)
    bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:  # oriented stripes
        th = rng.uniform(0, np.pi)
        period = rng.uniform(6, 24)
        amp = rng.uniform(10, 35)
        s = np.sin(2 * np.pi * (xx * math.cos(th) + yy * math.sin(th)) / period)
        bg += (amp * s)[..., None] * rng.uniform(0.5, 1.0, 3).astype(np.float32)
    palette = np.array([c for cols in _PALETTE.values() for c in cols], dtype=np.float64)
    for _ in range(int(rng.poisson(num_distractors))):  # small blobs of no class
        # a third of them take a class colour: colour alone must not give the class away
        if rng.random() < 1 / 3:
            base = palette[rng.integers(len(palette))] + rng.uniform(-20, 20, 3)
        else:
            base = rng.uniform(0, 255, 3)
        col = tuple(float(c) for c in np.clip(base, 0, 255))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(rng.integers(2, 9)), int(rng.integers(2, 9)))
            cv2.ellipse(bg, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, col, -1)
        elif kind == 1:  # irregular polygon (random radii: no class shape)
            n = int(rng.integers(4, 8))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(2, 10, n)
            pts = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1).astype(np.int32)
            cv2.fillPoly(bg, [pts], col)
        else:  # scribble line
            p2 = (int(cx + rng.uniform(-25, 25)), int(cy + rng.uniform(-25, 25)))
            cv2.line(bg, (int(cx), int(cy)), p2, col, int(rng.integers(1, 4)))
    return bg


# ----------------------------------------------------------------------------- images
def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: depends on (seed, split, index) only."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))


def generate_image(
    seed: int,
    split: str,
    index: int,
    *,
    image_min: int = 128,
    image_max: int = 192,
    min_instances: int = 1,
    max_instances: int = 5,
    size_min: float = 0.1,
    size_max: float = 0.3,
    min_visible: float = 0.2,
    difficult_visible: float = 0.4,
    num_distractors: float = 6.0,
    noise_std: float = 6.0,
    max_tries: int = 12,
) -> SyntheticImage:
    """Generate image ``index`` of ``split``.

    Width and height are drawn independently in [image_min, image_max] px; the object count
    in [min_instances, max_instances]; each object's radius in [size_min, size_max] x the short
    side (log-uniform). A placement that would leave an earlier object less than ``min_visible``
    of its area visible is resampled (``max_tries`` times, then the object is skipped; the first
    object is always placed, so every image has at least one instance; its class is
    ``index mod C`` so that every class appears in any C consecutive images). ``difficult`` marks
    visible fraction < ``difficult_visible``. ``noise_std``: per-pixel Gaussian noise (grey levels).
    """
    if not (1 <= min_instances <= max_instances):
        raise ValueError("need 1 <= min_instances <= max_instances")
    if not (16 <= image_min <= image_max):
        raise ValueError("need 16 <= image_min <= image_max")
    rng = image_rng(seed, split, index)
    h, w = (int(v) for v in rng.integers(image_min, image_max + 1, size=2))
    img = _background(h, w, rng, num_distractors)
    short = min(h, w)
    k = int(rng.integers(min_instances, max_instances + 1))
    full: list[np.ndarray] = []
    parts_of: list[Parts] = []
    cats: list[int] = []
    radii: list[float] = []
    for j in range(k):
        # the first object cycles through the classes (every class appears once a split has
        # C images); the others are uniform
        c = index % len(CLASS_NAMES) if j == 0 else int(rng.integers(len(CLASS_NAMES)))
        name = CLASS_NAMES[c]
        for _try in range(max_tries):
            r = float(np.exp(rng.uniform(np.log(size_min * short), np.log(size_max * short))))
            r = max(r, 6.0)
            cx = rng.uniform(r, w - r)
            cy = rng.uniform(r, h - r)
            parts = _draw(name, (h, w), cx, cy, r, rng.uniform(0, 2 * np.pi), rng)
            m = np.logical_or.reduce(parts)
            if not m.any():
                continue
            # visible fraction of every earlier object once this one is on top
            ok = all(
                (f & ~m & ~np.logical_or.reduce(full[j + 1:] or [np.zeros_like(m)])).sum()
                >= min_visible * f.sum()
                for j, f in enumerate(full)
            )
            if ok:
                full.append(m)
                parts_of.append(parts)
                cats.append(c + 1)
                radii.append(r)
                break
    # paint in z-order
    for c, parts, r in zip(cats, parts_of, radii, strict=True):
        name = CLASS_NAMES[c - 1]
        gain = rng.uniform(0.8, 1.15)
        for part, base, tex in zip(parts, _PALETTE[name], _TEXTURE[name], strict=True):
            ys, xs = np.nonzero(part)
            col = np.clip(np.asarray(base, np.float32) * gain + rng.uniform(-25, 25, 3), 0, 255)
            mod = _texture(tex, ys.astype(np.float32), xs.astype(np.float32), r, rng)
            img[ys, xs] = col[None, :] * (1.0 + 0.22 * mod[:, None]).astype(np.float32)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img += rng.normal(0.0, noise_std, img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    n = len(full)
    masks = np.zeros((n, h, w), dtype=bool)
    above = np.zeros((h, w), dtype=bool)
    for i in range(n - 1, -1, -1):
        masks[i] = full[i] & ~above
        above |= full[i]
    areas_full = np.array([f.sum() for f in full], dtype=np.float64)
    vis = masks.reshape(n, -1).sum(1) / np.maximum(areas_full, 1)
    return SyntheticImage(
        image=image,
        masks=masks,
        category_ids=np.asarray(cats, dtype=np.int64),
        difficult=vis < difficult_visible,
        visible_fraction=vis,
    )


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> COCO RLE dict with ``counts`` as str (pycocotools.mask.encode)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def categories() -> list[dict[str, Any]]:
    """COCO ``categories[]``: ids 1..C with the class names."""
    return [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)]


def annotations_of(sample: SyntheticImage, image_id: int) -> list[dict[str, Any]]:
    """COCO ``annotations[]`` of one image (ids ``image_id * 100 + k``)."""
    boxes, _ = masks_to_boxes(sample.masks)
    xywh = xyxy_to_xywh(boxes)
    out = []
    for k in range(len(sample.category_ids)):
        out.append({
            "id": int(image_id) * 100 + k,
            "image_id": int(image_id),
            "category_id": int(sample.category_ids[k]),
            "bbox": [float(v) for v in xywh[k]],
            "area": float(sample.masks[k].sum()),
            "iscrowd": 0,
            "difficult": int(sample.difficult[k]),
            "segmentation": encode_rle(sample.masks[k]),
        })
    return out


def generate_split(
    split: str,
    num_images: int,
    image_dir: str | Path,
    image_root: str,
    *,
    seed: int,
    progress: bool = True,
    **image_kwargs: Any,
) -> dict[str, Any]:
    """Generate ``num_images`` images of ``split`` as PNGs ``{image_dir}/{id:06d}.png`` and return
    the split's COCO dict, with ``info.image_root = image_root`` (the folder's final path;
    ``image_dir`` may be a temporary folder renamed there later). ``image_kwargs`` go to
    :func:`generate_image`."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    it: Callable = tqdm if progress else (lambda x, **_: x)
    for i in it(range(num_images), desc=f"synthetic {split}", disable=None):
        sample = generate_image(seed, split, i, **image_kwargs)
        image_id = ID_OFFSET[split] + i + 1
        name = f"{image_id:06d}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise RuntimeError(f"{image_dir / name}: PNG encoding failed")
        (image_dir / name).write_bytes(buf.tobytes())
        h, w = sample.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        anns.extend(annotations_of(sample, image_id))
    return {
        "info": {"image_root": str(image_root), "description": f"synthetic VOC-like {split}",
                 "seed": int(seed)},
        "images": images,
        "categories": categories(),
        "annotations": anns,
    }
