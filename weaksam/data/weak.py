"""Weak (image-level) view of a split: the ONLY way training code reads a training split.

WeakSAM and every WSOD/WSIS baseline train from image-level labels alone (paper Sec. 3,
"weakly-supervised": only the classes present in each image are known). ``WeakView`` copies out,
per image, only ``image_id``, ``path``, ``width``, ``height`` and a multi-hot label vector
``labels: (C,) float32`` in ``categories`` order; it keeps no reference to the annotations, the
index, boxes or masks, so code holding a ``WeakView`` has no route to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksam.data.index import CocoIndex, read_image


@dataclass(frozen=True)
class WeakImage:
    """One image with its image-level labels: ``labels (C,) float32`` multi-hot, 1 = present."""

    image_id: int
    path: Path
    width: int
    height: int
    labels: np.ndarray


class WeakView:
    """Image-level view of a :class:`CocoIndex`: ``view[i] -> WeakImage``, ``view.read(i)``."""

    __slots__ = ("_items", "categories", "category_ids", "category_names")

    def __init__(self, index: CocoIndex) -> None:
        self.category_ids: tuple[int, ...] = tuple(index.category_ids)
        self.category_names: tuple[str, ...] = tuple(index.category_names)
        self.categories: tuple[tuple[int, str], ...] = tuple(
            zip(self.category_ids, self.category_names, strict=True)
        )
        cat_index = index.cat_index
        items: list[WeakImage] = []
        for iid in index.image_ids:
            rec = index.image(iid)
            lab = np.zeros(len(self.category_ids), dtype=np.float32)
            for cid in index.labels_of(iid):
                lab[cat_index[cid]] = 1.0
            lab.setflags(write=False)
            items.append(
                WeakImage(
                    image_id=int(iid),
                    path=Path(index.image_path(iid)),
                    width=int(rec["width"]),
                    height=int(rec["height"]),
                    labels=lab,
                )
            )
        self._items: tuple[WeakImage, ...] = tuple(items)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def image_ids(self) -> list[int]:
        return [it.image_id for it in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> WeakImage:
        return self._items[i]

    def __iter__(self):
        return iter(self._items)

    def labels(self) -> np.ndarray:
        """All labels stacked: ``(num_images, C)`` float32."""
        if not self._items:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.stack([it.labels for it in self._items])

    def read(self, i: int) -> np.ndarray:
        """Pixels of image ``i``: ``(H, W, 3)`` uint8 RGB (InputError if missing/corrupt)."""
        return read_image(self._items[i].path)
