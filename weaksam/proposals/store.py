"""The proposals file contract: one compressed ``.npz`` per split.

Arrays (P proposals over M images):
    image_ids:    (M,)   int64, in the order of the split's COCO ``images``
    offsets:      (M+1,) int64, proposals of image i are rows offsets[i]:offsets[i+1]
    boxes:        (P, 4) float32 xyxy in pixels of the original image
    scores:       (P,)   float32 objectness (SAM predicted IoU; Selective Search rank score)
    sources:      (P,)   uint8 index into ``source_names``
    source_names: (S,)   str, e.g. ["ss"] or ["dense", "cam_fine", "cam_coarse", "cross"]

``to_detectron2`` exports the detectron2 proposal format (ids, boxes, objectness_logits).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path, write_npz
from weaksam.utils.readers import read_npz


@dataclass
class ImageProposals:
    """Proposals of one image: ``boxes (R, 4)`` xyxy float32, ``scores (R,)``, ``sources (R,)``."""

    boxes: np.ndarray
    scores: np.ndarray
    sources: np.ndarray

    @classmethod
    def empty(cls) -> ImageProposals:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint8)
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> ImageProposals:
        return ImageProposals(self.boxes[keep], self.scores[keep], self.sources[keep])

    def unique(self) -> ImageProposals:
        """Drop exact duplicate boxes across sources: of each box the highest-scoring copy is
        kept (ties: the lowest source index); the kept rows stay in their original order."""
        if len(self) < 2:
            return self
        order = np.lexsort((self.sources, -self.scores))  # best copy of a box first
        _, first = np.unique(self.boxes[order], axis=0, return_index=True)
        return self.select(np.sort(order[first]))


@dataclass
class ProposalSet:
    """Proposals of a split: ``images[image_id] -> ImageProposals`` in split order."""

    source_names: list[str]
    images: dict[int, ImageProposals] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def mean_count(self) -> float:
        """Average number of proposals per image (0 for an empty set)."""
        if not self.images:
            return 0.0
        return float(np.mean([len(p) for p in self.images.values()]))

    def filter_sources(self, keep_names: Iterable[str], unique: bool = True) -> ProposalSet:
        """Keep only proposals whose source is in ``keep_names`` (a Table 4 variant).

        The stored file keeps a box once per source, so each variant sees its own boxes; with
        ``unique`` the variant is the union of its sources' boxes (:meth:`ImageProposals.unique`),
        which is what its proposal count, its recall and the WSOD training see."""
        keep_names = list(keep_names)
        unknown = set(keep_names) - set(self.source_names)
        if unknown:
            raise ValueError(
                f"unknown proposal sources {sorted(unknown)}; have {self.source_names}"
            )
        idx = np.array([self.source_names.index(n) for n in keep_names], dtype=np.uint8)
        out = ProposalSet(list(self.source_names))
        for iid, p in self.images.items():
            sel = p.select(np.isin(p.sources, idx))
            out.images[iid] = sel.unique() if unique else sel
        return out


def save_proposals(path: str | Path, props: ProposalSet) -> None:
    """Write ``props`` atomically to ``path`` (.npz)."""
    ids = np.array(list(props.images.keys()), dtype=np.int64)
    counts = np.array([len(p) for p in props.images.values()], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    plist = list(props.images.values())

    def cat(attr: str, shape: Sequence[int], dtype: type) -> np.ndarray:
        arrs = [np.asarray(getattr(p, attr), dtype=dtype).reshape(-1, *shape) for p in plist]
        return np.concatenate(arrs) if arrs else np.zeros((0, *shape), dtype)

    arrays = {
        "image_ids": ids,
        "offsets": offsets,
        "boxes": cat("boxes", (4,), np.float32),
        "scores": cat("scores", (), np.float32),
        "sources": cat("sources", (), np.uint8),
        "source_names": np.array(props.source_names, dtype=str),
    }
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays)


def load_proposals(path: str | Path) -> ProposalSet:
    """Read a proposals file; a missing or malformed file raises :class:`InputError`."""
    path = Path(path)
    d = read_npz(path, "proposals file")
    need = {"image_ids", "offsets", "boxes", "scores", "sources", "source_names"}
    if not need <= set(d):
        raise InputError(path, f"proposals file lacks arrays {sorted(need - set(d))}")
    off = d["offsets"]
    if len(off) != len(d["image_ids"]) + 1 or off[-1] != len(d["boxes"]):
        raise InputError(path, "offsets do not match image_ids and boxes")
    if d["boxes"].ndim != 2 or d["boxes"].shape[1] != 4:
        raise InputError(path, f"boxes have shape {d['boxes'].shape}, expected (P, 4)")
    if not len(d["scores"]) == len(d["sources"]) == len(d["boxes"]):
        raise InputError(path, "boxes, scores and sources differ in length")
    if len(d["sources"]) and int(d["sources"].max()) >= len(d["source_names"]):
        raise InputError(path, "a source index is out of range of source_names")
    out = ProposalSet([str(s) for s in d["source_names"]])
    for i, iid in enumerate(d["image_ids"].tolist()):
        s, e = int(off[i]), int(off[i + 1])
        out.images[int(iid)] = ImageProposals(
            d["boxes"][s:e], d["scores"][s:e], d["sources"][s:e]
        )
    return out


def to_detectron2(props: ProposalSet, path: str | Path) -> None:
    """Export in detectron2's precomputed-proposal format (a pickle of ids, boxes, logits).

    ``objectness_logits`` are the scores mapped through the logit function (scores in (0, 1)).
    """
    ids, boxes, logits = [], [], []
    for iid, p in props.images.items():
        s = np.clip(p.scores.astype(np.float64), 1e-6, 1 - 1e-6)
        ids.append(iid)
        boxes.append(p.boxes.astype(np.float32))
        logits.append(np.log(s / (1 - s)).astype(np.float32))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump({"ids": ids, "boxes": boxes, "objectness_logits": logits}, f)
