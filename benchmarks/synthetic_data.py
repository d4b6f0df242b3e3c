"""Benchmark: generating the default profile's synthetic images (the data stage's work).

    .venv/bin/python benchmarks/synthetic_data.py [--images 100] [--rounds 5]

Each round generates ``images`` test images (default size range, 128..192 px) on one thread;
rounds are repeated and the fastest and median round are reported (interference only adds
time, so the fastest is the best estimate of the cost), with the projection to the default
profile's 600 images. Target: 600 images well under 30 s on one core (the data stage stays a
small part of ``make repro``). Prints a table and writes
``benchmarks/results/synthetic_data.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from weaksam.data.synthetic import generate_image  # noqa: E402

TARGET_S = 30.0
DEFAULT_IMAGES = 600  # data.num_trainval + data.num_test of params.yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    seconds = []
    for r in range(args.rounds):
        t = time.perf_counter()
        for i in range(args.images):
            generate_image(0, "test", i)
        seconds.append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}: {seconds[-1]:.2f} s", flush=True)
    n = args.images
    per = {"fastest": min(seconds) / n, "median": statistics.median(seconds) / n}
    print(f"{'':8} {'ms / image':>11} {f'{DEFAULT_IMAGES} images (s)':>17}")
    for k, v in per.items():
        print(f"{k:8} {v * 1e3:11.1f} {v * DEFAULT_IMAGES:17.1f}")
    ok = per["fastest"] * DEFAULT_IMAGES < TARGET_S
    print(f"target: {DEFAULT_IMAGES} images < {TARGET_S:.0f} s on one core: "
          f"{'met' if ok else 'NOT met'}")
    out = ROOT / "benchmarks" / "results" / "synthetic_data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": args.images, "rounds": seconds,
                               "seconds_per_image": per, "target_met": ok}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
