"""Benchmark: Algorithm 1's greedy suppression (``weaksam.prompts.peaks.suppress``), the O(P)
grid walk against the P x P distance matrix it replaced, on the point sets of the default
profile's clue maps.

    .venv/bin/python benchmarks/peak_suppression.py [--images 100] [--rounds 5]

Collects every (sorted, above-tau) point set ``find_peaks`` hands to ``suppress`` on the first
``images`` trainval images of ``clues/trainval.npz`` (needs ``make repro``'s outputs), checks
both give the same keep masks, then times each over all sets in interleaved rounds (fastest and
median; interference only adds time) and a 375 x 500 plateau map (the paper_voc07 full dry run's
case: the matrix would need hundreds of GiB, so only the grid is timed there). Prints a table and
writes ``benchmarks/results/peak_suppression.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from weaksam.clues.store import load_clues  # noqa: E402
from weaksam.prompts import peaks  # noqa: E402
from weaksam.prompts.extract import image_prompts  # noqa: E402


def dense_suppress(points: np.ndarray, radius: float) -> np.ndarray:
    """The suppression before the grid: the full P x P distance matrix (O(P^2) memory)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(pts), dtype=bool)
    if len(pts) < 2:
        return keep
    near = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1) <= radius * radius
    for i in range(len(pts)):
        if keep[i]:
            keep[i + 1 :] &= ~near[i, i + 1 :]
    return keep


def collect(images: int, params: dict) -> list[tuple[np.ndarray, float]]:
    """Every (points, radius) ``suppress`` sees on the first ``images`` trainval images."""
    seen: list[tuple[np.ndarray, float]] = []
    real = peaks.suppress

    def spy(points, radius):
        seen.append((np.asarray(points).copy(), float(radius)))
        return real(points, radius)

    cfg = params["prompts"]
    kw = dict(grid=int(cfg["grid"]), kernel=int(cfg["kernel"]), tau=float(cfg["tau"]),
              cross_kernel=int(cfg["cross_kernel"]), cross_tau=float(cfg["cross_tau"]),
              cross_clusters=int(cfg["cross_clusters"]), seed=int(params["seed"]),
              cross_points_per_cluster=int(cfg["cross_points_per_cluster"]),
              cross_representative=str(cfg["cross_representative"]))
    clues = load_clues(ROOT / "clues/trainval.npz")
    peaks.suppress = spy
    try:
        for i in tqdm(range(min(images, len(clues))), desc="collect", disable=None):
            image_prompts(clues.image(i), **kw)
    finally:
        peaks.suppress = real
    return seen


def timed(fn, sets: list[tuple[np.ndarray, float]]) -> float:
    t = time.perf_counter()
    for pts, r in sets:
        fn(pts, r)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    sets = collect(args.images, params)
    for pts, r in sets:
        if peaks.suppress(pts, r).tolist() != dense_suppress(pts, r).tolist():
            raise SystemExit("grid and dense suppression disagree")
    sizes = [len(p) for p, _ in sets]
    times: dict[str, list[float]] = {"grid": [], "dense": []}
    for _ in tqdm(range(args.rounds), desc="rounds", disable=None):
        times["grid"].append(timed(peaks.suppress, sets))
        times["dense"].append(timed(dense_suppress, sets))
    plateau = torch.ones(1, 375, 500)
    plateau[0, 0, 0] = 0.0
    flat = peaks.local_maxima(plateau, 7)[0].nonzero()[:, [1, 0]].numpy()
    t = time.perf_counter()
    kept = peaks.suppress(flat, 3.5)
    plateau_s = time.perf_counter() - t
    out = {
        "images": args.images, "point_sets": len(sets),
        "points_per_set": {"mean": round(float(np.mean(sizes)), 1), "max": int(max(sizes))},
        **{f"{k}_seconds": {"fastest": round(min(v), 4), "median": round(statistics.median(v), 4)}
           for k, v in times.items()},
        "plateau": {"points": int(len(flat)), "kept": int(kept.sum()),
                    "grid_seconds": round(plateau_s, 3),
                    "dense_matrix_gib": round(len(flat) ** 2 * 2 * 8 / 2**30, 1)},
    }
    print(f"{len(sets)} point sets from {args.images} images, {out['points_per_set']} points")
    print("| suppression | fastest (s) | median (s) |\n|---|---:|---:|")
    for k in times:
        print(f"| {k} | {out[k + '_seconds']['fastest']} | {out[k + '_seconds']['median']} |")
    print(f"plateau 375 x 500: {len(flat)} peaks -> {out['plateau']['kept']} kept in "
          f"{plateau_s:.2f} s (the matrix: {out['plateau']['dense_matrix_gib']} GiB)")
    res = ROOT / "benchmarks/results"
    res.mkdir(exist_ok=True)
    (res / "peak_suppression.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
