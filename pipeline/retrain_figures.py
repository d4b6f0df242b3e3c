"""Stage ``retrain_figures``: paper Figures 3 and 5 from the per-RoI losses recorded in the
last epoch of the Faster R-CNN preliminary training on ``retrain.figures.pgt``.

    python -m pipeline.retrain_figures

Inputs: ``retrain/prelim_frcnn_<pgt>/roi_losses.npz`` (``pipeline.retrain_prelim``),
``pgt/<pgt>/trainval.json`` and ``data/annotations/trainval.json`` (the hidden ground truth,
read here for the error analysis only: training never saw it). Outputs:
``reports/figures/fig3_roi_cls_loss.png``, ``reports/figures/fig5_roi_reg_loss.png`` and
``metrics/retrain_figures.json`` (per-bin counts and error rates; the error rate of the
foreground RoIs that the RoI drop of ``retrain.frcnn.drop`` would drop and keep).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.common import load_params, setup_logging, stage_args
from pipeline.retrain_common import TRAINVAL, pgt_path, prelim_name
from weaksam.data.index import load_index
from weaksam.errors import InputError
from weaksam.retrain.data import load_pgt
from weaksam.retrain.figures import bin_stats, normalise_per_step, plot_loss_bins, roi_errors
from weaksam.retrain.roi_drop import drop_mask
from weaksam.utils.atomic import atomic_path, write_json

FIGS = Path("reports/figures")


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    log = setup_logging("retrain_figures")
    cfg, drop = params["retrain"]["figures"], params["retrain"]["frcnn"]["drop"]
    src = Path("retrain") / prelim_name("frcnn", cfg["pgt"]) / "roi_losses.npz"
    if not src.is_file():
        raise InputError(src, "per-RoI losses not found: run retrain_prelim for frcnn first")
    with np.load(src) as z:
        rec = {k: z[k] for k in z.files}
    fg = rec["labels"] > 0
    n_cls = normalise_per_step(rec["l_cls"], rec["step"], np.ones_like(fg))
    n_reg = normalise_per_step(rec["l_reg"], rec["step"], fg)
    pgt = load_pgt(pgt_path(cfg["pgt"]))
    # hidden ground truth, for the analysis only, in the PGT's label space (1..K)
    index = load_index(TRAINVAL)
    label_of = {cid: k + 1 for k, cid in enumerate(pgt.category_ids)}
    gt = {}
    for iid in index.image_ids:
        b, c, _ = index.gt_boxes(iid)
        gt[iid] = (b, np.array([label_of[int(x)] for x in c], np.int64))
    err = roi_errors(rec["image_id"][fg], rec["gt_index"][fg], pgt.boxes, pgt.labels, gt,
                     float(cfg["error_iou"]))
    bins = int(cfg["bins"])
    cls_stats = bin_stats(n_cls[fg], err, bins)
    reg_stats = bin_stats(n_reg[fg], err, bins)
    keep = drop_mask(torch.from_numpy(rec["l_cls"][fg]), torch.from_numpy(rec["l_reg"][fg]),
                     float(drop["tau_cls"]), float(drop["tau_reg"]), str(drop["rule"])).numpy()
    FIGS.mkdir(parents=True, exist_ok=True)
    n = int(fg.sum())
    where = f"Faster R-CNN, last preliminary epoch on {cfg['pgt']} PGT: {n} foreground RoIs"
    for name, stats, what in (("fig3_roi_cls_loss", cls_stats, "classification"),
                              ("fig5_roi_reg_loss", reg_stats, "regression")):
        with atomic_path(FIGS / f"{name}.png") as tmp:
            plot_loss_bins(stats, tmp, xlabel=f"normalised {what} loss",
                           title=f"Fig. {3 if what == 'classification' else 5}: {what} loss, "
                                 f"RoIs and error rate per bin\n{where}")

    def rate(m: np.ndarray) -> float | None:
        return round(float(100 * err[m].mean()), 2) if m.any() else None

    metrics = {
        "pgt": cfg["pgt"], "foreground_rois": n, "error_rate": rate(np.ones(n, bool)),
        "cls_bins": cls_stats, "reg_bins": reg_stats,
        "drop": {"rule": drop["rule"], "tau_cls": drop["tau_cls"], "tau_reg": drop["tau_reg"],
                 "share_dropped": round(float(1 - keep.mean()), 5) if n else None,
                 "error_rate_dropped": rate(~keep), "error_rate_kept": rate(keep)},
    }
    write_json(Path("metrics") / "retrain_figures.json", metrics)
    log.info("figures 3 and 5: %d fg RoIs, error rate %s %%, dropped %s (error %s %%)", n,
             metrics["error_rate"], metrics["drop"]["share_dropped"],
             metrics["drop"]["error_rate_dropped"])


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        raise SystemExit(f"retrain_figures: {e}") from e
