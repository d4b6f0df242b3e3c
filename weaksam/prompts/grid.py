"""Dense spatial prompts (paper Sec. 3.1, "Prompt Points Generation"): split the image into
S x S patches and take their centres.

    grid_points(width, height, s) -> (S*S, 2) float32 (x, y) in pixels, raster order
    (row by row); patch (i, j) of width W/S has its centre at ((j + 0.5) W/S, (i + 0.5) H/S).
"""

from __future__ import annotations

import numpy as np


def grid_points(width: int, height: int, s: int) -> np.ndarray:
    """Centres of an ``s x s`` grid of patches over a ``width x height`` image."""
    if s < 1:
        raise ValueError(f"grid size must be >= 1, got {s}")
    xs = (np.arange(s, dtype=np.float64) + 0.5) * (width / s)
    ys = (np.arange(s, dtype=np.float64) + 0.5) * (height / s)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
