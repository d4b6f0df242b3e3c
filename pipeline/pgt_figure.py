"""Stage ``pgt_figure``: paper Figure 7, top-1 against adaptive PGT on a few trainval images.

    python -m pipeline.pgt_figure

Inputs: ``pgt/{run}_top1/trainval.json`` and ``pgt/{run}_adaptive/trainval.json`` for ``run`` =
params ``pgt.figure_run`` (default mist_weaksam), ``data/annotations/trainval.json`` and its
images (the hidden boxes are drawn dashed, for reference only). Output:
``reports/figures/fig7_pgt.png``: the first ``pgt.figure_images`` images (split order) whose
adaptive PGT has another number of boxes than the top-1 PGT (``weaksam.pgt.figure.pick_images``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index, read_image
from weaksam.pgt.figure import FigureRow, draw_pgt_figure, pick_images

FIGURE = Path("reports/figures/fig7_pgt.png")


def _by_image(path: Path) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for a in load_index(path).annotations:
        out.setdefault(int(a["image_id"]), []).append(a)
    return out


def run(params: dict[str, Any], out: Path = FIGURE) -> list[int]:
    """Draw the figure; returns the image ids shown."""
    cfg = params["pgt"]
    name = str(cfg["figure_run"])
    index = load_index(Path("data/annotations/trainval.json"))
    top1 = _by_image(Path("pgt") / f"{name}_top1" / "trainval.json")
    adaptive = _by_image(Path("pgt") / f"{name}_adaptive" / "trainval.json")
    ids = pick_images(top1, adaptive, index.image_ids, int(cfg["figure_images"]))
    rows = [FigureRow(i, read_image(index.image_path(i)), top1.get(i, []), adaptive.get(i, []),
                      index.anns_of(i)) for i in ids]
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    draw_pgt_figure(out, rows, names)
    return ids


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("pgt_figure")
    ids = run(load_params(args.params))
    log.info("wrote %s (images %s)", FIGURE, ids)


if __name__ == "__main__":
    main()
