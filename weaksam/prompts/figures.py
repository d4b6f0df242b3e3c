"""Figure like the paper's Fig. 2 (left): image, coarse CAM, fine CAM and cross-attention map
with the prompt points extracted from each, one row per image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from weaksam.clues.store import ImageClues  # noqa: E402
from weaksam.prompts.peaks import prepare_maps  # noqa: E402
from weaksam.utils.atomic import atomic_path  # noqa: E402

MARKERS = {"dense": ("w", "."), "cam_coarse": ("c", "o"), "cam_fine": ("lime", "*"),
           "cross": ("magenta", "^")}


def draw_clues_figure(
    path: str | Path,
    rows: list[tuple[np.ndarray, ImageClues, dict[str, dict[str, np.ndarray]]]],
    class_names: dict[int, str],
) -> None:
    """Write a PNG with one row per ``(image (H, W, 3) uint8, clues, prompts)``: the image with
    dense points, then the coarse CAM, fine CAM and cross-attention map (its layer or head maps
    averaged) of the image's top-scoring class, each with its own source's points (CAM panels:
    that class's points; cross-attention: all, as they are instance-aware)."""
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    for r, (img, clue, prompts) in enumerate(rows):
        h, w = img.shape[:2]
        k = int(np.argmax(clue.class_scores)) if len(clue.classes) else None
        name = class_names.get(int(clue.classes[k]), "?") if k is not None else "none"
        panels = [("image", None, "dense")]
        if k is not None:
            panels += [
                (f"coarse CAM: {name}", clue.cam_coarse[k], "cam_coarse"),
                (f"fine CAM: {name}", clue.cam_fine[k], "cam_fine"),
                (f"cross-attention: {name}", clue.cross[k].mean(0), "cross"),
            ]
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c >= len(panels):
                continue
            title, m, src = panels[c]
            ax.imshow(img)
            if m is not None:
                up = prepare_maps(m[None], h, w)[0].numpy()
                ax.imshow(up, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            p = prompts.get(src)
            if p is not None and src in ("cam_coarse", "cam_fine"):  # the shown class only
                sel = p["class"] == clue.classes[k]
                p = {key: v[sel] for key, v in p.items()}
            if p is not None and len(p["x"]):
                color, marker = MARKERS[src]
                ax.scatter(p["x"], p["y"], c=color, marker=marker, s=60 if src != "dense" else 12,
                           edgecolors="k", linewidths=0.5)
            ax.set_title(f"{clue.image_id}: {title}", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
