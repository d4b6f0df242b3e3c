"""Paired-bootstrap interval width of WSOD comparisons against the number of test images
(issue 24 item 4): the figures behind the recommended ``data.num_test`` (docs/test_split.md).

    python benchmarks/test_split_intervals.py --workspace DIR [--sizes 50 100 200]
        [--subsets 20] [--resamples 1000] [--seed 0] [--out FILE]

``DIR``: a workspace with the committed outputs (a clone after ``dvc checkout``):
``data/annotations/test.json`` and ``wsod/{run}/detections_test.json``. For each comparison
(``COMPARISONS``: Table 1's WeakSAM against Selective Search, OICR and MIST) and each size n,
``--subsets`` random subsets of n test images are drawn (seeded; n = all images: the split
itself, once), and on each the paired bootstrap of the report (``weaksam.eval.bootstrap``:
both sides on the same ``--resamples`` resampled image sets, 95 % percentile interval) gives the
AP50 difference and its interval. A subset is a weight vector over the split's images (0 off the
subset), so the per-image matches are computed once; VOC AP is per image, so this equals
evaluating the subset alone.

Printed (and written as JSON): per comparison and n, the mean interval width and half-width
over the subsets, the mean difference, the share of subsets whose interval excludes 0, and the
fit half-width = c / sqrt(n) (least squares over the sizes) with the n at which the half-width
is 2 AP50 points: a 2-point difference is then resolvable (its interval clears 0).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from weaksam.eval import bootstrap as bs
from weaksam.utils.readers import read_json

# (label, left run, right run): left - right, as the report's Table 1 checks
COMPARISONS = (
    ("OICR: WeakSAM - SS", "oicr_weaksam", "oicr_ss"),
    ("MIST: WeakSAM - SS", "mist_weaksam", "mist_ss"),
)


def subset_weights(n_images: int, members: np.ndarray, n_resamples: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``(B, N)`` draw counts of B resamples with replacement of the images ``members`` (a
    subset of the N images), 0 on every other image."""
    idx = rng.integers(0, len(members), size=(n_resamples, len(members)))
    w = np.zeros((n_resamples, n_images))
    np.add.at(w, (np.arange(n_resamples)[:, None], members[idx]), 1.0)
    return w


def difference(left: bs.ImageStats, right: bs.ImageStats, weights: np.ndarray,
               level: float = 0.95) -> tuple[float, float, float]:
    """(point difference on the subset, low, high) of ``left - right`` under ``weights``; the
    point is evaluated with weight 1 on the subset's images (the first row's support)."""
    support = (weights.sum(axis=0) > 0).astype(float)[None, :]
    point = float(left.value(support)[0] - right.value(support)[0])
    d = left.value(weights) - right.value(weights)
    d = d[~np.isnan(d)]
    a = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(d, [a, 100.0 - a])
    return point, float(lo), float(hi)


def fit_sqrt(sizes: list[int], half: list[float]) -> float:
    """c of half = c / sqrt(n), least squares."""
    x = 1.0 / np.sqrt(np.asarray(sizes, float))
    y = np.asarray(half, float)
    return float((x @ y) / (x @ x))


def measure(workspace: Path, sizes: list[int], subsets: int, resamples: int, seed: int
            ) -> dict:
    gt = read_json(workspace / "data/annotations/test.json", "annotation file",
                   want_object=True)
    n_all = len(gt["images"])
    runs = {r for _, a, b in COMPARISONS for r in (a, b)}
    stats = {r: bs.voc_ap_stats(gt, read_json(workspace / "wsod" / r / "detections_test.json",
                                              "detections file"), 0.5, use_07_metric=True)
             for r in sorted(runs)}
    rng = np.random.default_rng(seed)
    out: dict = {"test_images": n_all, "resamples": resamples, "subsets": subsets,
                 "seed": seed, "comparisons": {}}
    for label, a, b in COMPARISONS:
        full = bs.paired_difference(stats[a], stats[b],
                                    bs.resample_weights(n_all, resamples, seed))
        rows = {}
        for n in sizes:
            if n > n_all:
                raise SystemExit(f"--sizes {n}: the split has {n_all} test images")
            reps = 1 if n == n_all else subsets
            res = []
            for _ in range(reps):
                members = (np.arange(n_all) if n == n_all
                           else np.sort(rng.choice(n_all, size=n, replace=False)))
                res.append(difference(stats[a], stats[b],
                                      subset_weights(n_all, members, resamples, rng)))
            arr = np.array(res)
            width = arr[:, 2] - arr[:, 1]
            rows[n] = {"subsets": reps, "mean_difference": float(arr[:, 0].mean()),
                       "mean_width": float(width.mean()), "mean_half_width":
                       float(width.mean() / 2), "sd_width": float(width.std()),
                       "share_excluding_0": float(((arr[:, 1] > 0) | (arr[:, 2] < 0)).mean())}
        c = fit_sqrt(list(rows), [r["mean_half_width"] for r in rows.values()])
        out["comparisons"][label] = {
            "full_split": {"difference": full.point, "low": full.low, "high": full.high},
            "by_size": rows, "fit_c": c,
            "n_for_half_width_2": math.ceil((c / 2.0) ** 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--subsets", type=int, default=20)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    res = measure(args.workspace, args.sizes, args.subsets, args.resamples, args.seed)
    for label, c in res["comparisons"].items():
        f = c["full_split"]
        print(f"{label}: full split {f['difference']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}]")
        for n, r in c["by_size"].items():
            print(f"  n={n:4d} ({r['subsets']:2d} subsets): width {r['mean_width']:.2f} "
                  f"(sd {r['sd_width']:.2f}), half {r['mean_half_width']:.2f}, mean diff "
                  f"{r['mean_difference']:+.2f}, interval excludes 0 in "
                  f"{100 * r['share_excluding_0']:.0f} %")
        print(f"  fit half = {c['fit_c']:.1f} / sqrt(n): half-width 2 at n = "
              f"{c['n_for_half_width_2']}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
