"""Top-1 PGT: the highest-scoring detection of each labelled class."""

from __future__ import annotations

import numpy as np

from weaksam.pgt.top1 import top1_image


def test_top_box_per_labelled_class_ties_first_in_file_order():
    scores = np.array([0.2, 0.9, 0.9, 0.5, 0.99, 0.3])
    cats = np.array([1, 1, 1, 2, 4, 2])
    # class 1: tie between index 1 and 2 -> 1; class 2: index 3; class 4 not labelled;
    # class 3 labelled without detection -> nothing
    assert top1_image(scores, cats, labels=[2, 1, 3]).tolist() == [1, 3]
    assert top1_image(np.zeros(0), np.zeros(0), labels=[1]).tolist() == []
