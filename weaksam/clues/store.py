"""The clues file contract: ``clues/{split}.npz``, one compressed array file per split.

Maps are stored at token resolution (the n_i x m_i patch grid of image i in the CAM network;
images inferred at their own aspect ratio have grids of their own) for the classes present in
each image only (image-level labels on trainval, predicted labels on test), each min-max
normalised to [0, 1]. Every map is stored in the top-left corner of one split-wide n x m array
(n, m the largest grid sides; the rest is zero); ``grids`` gives each image's own grid and
:meth:`CluesSet.image` returns the maps cropped to it. Upsampling to image size happens when
prompts are extracted.

Arrays (M images, R rows = (image, present class) pairs, C classes, Lc cross-attention maps per
class, one per (layer, head) or per layer with heads averaged):
    image_ids:    (M,)    int64, split order
    widths:       (M,)    int32, original image width in pixels
    heights:      (M,)    int32, original image height in pixels
    grids:        (M, 2)  int32, token grid (n_i, m_i) of each image's maps
    offsets:      (M+1,)  int64, rows of image i are offsets[i]:offsets[i+1]
    classes:      (R,)    int64, category id of the row
    class_scores: (R,)    float32, predicted probability of that class
    cam_coarse:   (R, n, m)     float16, coarse CAM
    cam_fine:     (R, n, m)     float16, fine CAM (attention-propagated)
    cross:        (R, Lc, n, m) float16, class-to-patch attention maps
    cross_layers: (Lc,)   int64, 0-based transformer layer of each cross map
    cross_heads:  (Lc,)   int64, attention head of each cross map (-1: the layer's heads averaged)
    category_ids: (C,)    int64, class order of ``probs``
    probs:        (M, C)  float32, predicted class probabilities of every image (all classes)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path, write_npz
from weaksam.utils.readers import read_npz

KEYS = ("image_ids", "widths", "heights", "grids", "offsets", "classes", "class_scores",
        "cam_coarse", "cam_fine", "cross", "cross_layers", "cross_heads", "category_ids", "probs")


@dataclass
class ImageClues:
    """Maps of one image on its own token grid: ``classes (K,)`` category ids,
    ``cam_coarse, cam_fine (K, n_i, m_i)``, ``cross (K, Lc, n_i, m_i)`` float32 in [0, 1],
    ``class_scores (K,)``."""

    image_id: int
    width: int
    height: int
    classes: np.ndarray
    class_scores: np.ndarray
    cam_coarse: np.ndarray
    cam_fine: np.ndarray
    cross: np.ndarray


@dataclass
class CluesSet:
    """All arrays of one split (see the module docstring)."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["image_ids"])

    @property
    def image_ids(self) -> list[int]:
        return [int(i) for i in self.arrays["image_ids"]]

    @property
    def category_ids(self) -> list[int]:
        return [int(i) for i in self.arrays["category_ids"]]

    def image(self, i: int) -> ImageClues:
        """Clues of the ``i``-th image of the split (position, not id)."""
        a = self.arrays
        s, e = int(a["offsets"][i]), int(a["offsets"][i + 1])
        n, m = (int(v) for v in a["grids"][i])
        return ImageClues(
            image_id=int(a["image_ids"][i]),
            width=int(a["widths"][i]),
            height=int(a["heights"][i]),
            classes=a["classes"][s:e],
            class_scores=a["class_scores"][s:e],
            cam_coarse=a["cam_coarse"][s:e, :n, :m].astype(np.float32),
            cam_fine=a["cam_fine"][s:e, :n, :m].astype(np.float32),
            cross=a["cross"][s:e, :, :n, :m].astype(np.float32),
        )

    def __iter__(self) -> Iterator[ImageClues]:
        return (self.image(i) for i in range(len(self)))


def build_clues(
    images: list[ImageClues],
    grid: tuple[int, int],
    cross_layers: list[int],
    category_ids: list[int],
    probs: np.ndarray,
    cross_heads: list[int] | None = None,
) -> CluesSet:
    """Pack per-image clues into the split arrays (maps stored as float16).

    Each image's grid is the last two axes of its ``cam_coarse``; ``grid = (n, m)`` is the
    split-wide array size and must hold every image's grid. ``cross_layers`` / ``cross_heads``
    (Lc,) describe the cross maps (heads default to -1: averaged)."""
    n, m = grid
    ls = len(cross_layers)
    heads = [-1] * ls if cross_heads is None else list(cross_heads)
    if len(heads) != ls:
        raise ValueError(f"{len(heads)} cross_heads for {ls} cross_layers")
    counts = np.array([len(im.classes) for im in images], dtype=np.int64)
    grids = np.array([np.asarray(im.cam_coarse).shape[-2:] for im in images],
                     dtype=np.int32).reshape(-1, 2)
    if len(grids) and ((grids[:, 0] > n).any() or (grids[:, 1] > m).any()):
        raise ValueError(f"an image grid exceeds the store grid {grid}: {grids.max(0).tolist()}")

    def cat(key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if len(shape) < 2:  # per-row values, no map
            parts = [np.asarray(getattr(im, key), dtype=dtype).reshape((-1, *shape))
                     for im in images]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)
        parts = []
        for im, (gn, gm) in zip(images, grids, strict=True):
            a = np.asarray(getattr(im, key), dtype=dtype)
            a = a.reshape((-1, *shape[:-2], int(gn), int(gm)))
            pad = np.zeros((len(a), *shape), dtype)
            pad[..., :gn, :gm] = a
            parts.append(pad)
        return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype)

    arrays = {
        "image_ids": np.array([im.image_id for im in images], dtype=np.int64),
        "widths": np.array([im.width for im in images], dtype=np.int32),
        "heights": np.array([im.height for im in images], dtype=np.int32),
        "grids": grids,
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "classes": cat("classes", (), np.int64),
        "class_scores": cat("class_scores", (), np.float32),
        "cam_coarse": cat("cam_coarse", (n, m), np.float16),
        "cam_fine": cat("cam_fine", (n, m), np.float16),
        "cross": cat("cross", (ls, n, m), np.float16),
        "cross_layers": np.asarray(cross_layers, dtype=np.int64),
        "cross_heads": np.asarray(heads, dtype=np.int64),
        "category_ids": np.asarray(category_ids, dtype=np.int64),
        "probs": np.asarray(probs, dtype=np.float32),
    }
    return CluesSet(arrays)


def save_clues(path: str | Path, clues: CluesSet) -> None:
    """Validate and write ``clues`` atomically to ``path`` (compressed .npz)."""
    validate(clues.arrays, path)
    with atomic_path(path) as tmp:
        write_npz(tmp, clues.arrays)


def validate(a: dict[str, np.ndarray], path: str | Path) -> None:
    """Check keys, shapes and offsets; InputError naming ``path`` on the first problem."""
    missing = [k for k in KEYS if k not in a]
    if missing:
        raise InputError(path, f"missing arrays {missing}")
    mcount = len(a["image_ids"])
    if a["widths"].shape != (mcount,) or a["heights"].shape != (mcount,):
        raise InputError(path, "widths/heights must have one entry per image")
    if a["grids"].shape != (mcount, 2):
        raise InputError(path, f"grids must be (M, 2)=({mcount}, 2), got {a['grids'].shape}")
    off = a["offsets"]
    if off.shape != (mcount + 1,) or off[0] != 0 or np.any(np.diff(off) < 0):
        raise InputError(path, f"offsets must be (M+1,)=({mcount + 1},) non-decreasing from 0")
    r = int(off[-1])
    if a["classes"].shape != (r,) or a["class_scores"].shape != (r,):
        raise InputError(path, f"classes/class_scores must have {r} rows")
    cc, cf, cr = a["cam_coarse"], a["cam_fine"], a["cross"]
    if cc.ndim != 3 or cc.shape[0] != r:
        raise InputError(path, f"cam_coarse must be (R={r}, n, m), got {cc.shape}")
    if cf.shape != cc.shape:
        raise InputError(path, f"cam_fine shape {cf.shape} != cam_coarse shape {cc.shape}")
    ls = len(a["cross_layers"])
    if a["cross_heads"].shape != (ls,):
        raise InputError(path, f"cross_heads must be ({ls},) like cross_layers")
    if mcount and ((a["grids"] < 1).any() or (a["grids"][:, 0] > cc.shape[1]).any()
                   or (a["grids"][:, 1] > cc.shape[2]).any()):
        raise InputError(path, f"grids must lie within the map size {cc.shape[1:]}")
    if cr.shape != (r, ls, *cc.shape[1:]):
        raise InputError(path, f"cross must be {(r, ls, *cc.shape[1:])}, got {cr.shape}")
    c = len(a["category_ids"])
    if a["probs"].shape != (mcount, c):
        raise InputError(path, f"probs must be ({mcount}, {c}), got {a['probs'].shape}")
    if r and not np.isin(a["classes"], a["category_ids"]).all():
        raise InputError(path, "classes holds a category id not in category_ids")


def load_clues(path: str | Path) -> CluesSet:
    """Read and validate a clues file; missing or malformed -> InputError naming it."""
    path = Path(path)
    arrays = read_npz(path, "clues file")
    validate(arrays, path)
    return CluesSet(arrays)
