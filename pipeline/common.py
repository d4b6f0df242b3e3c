"""Shared plumbing for stage scripts: params loading, profile merging, logging.

Each stage script is run by DVC as ``python -m pipeline.<stage> [--params params.yaml]`` from the
repository root. Only this package reads params files; ``weaksam`` gets keyword arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from weaksam.profiles import deep_merge  # noqa: F401  (re-exported: profile merging lives there)

ROOT = Path(__file__).resolve().parent.parent


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the params file (a clear error naming it when missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        sys.exit(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        sys.exit(f"{path}: not valid YAML ({e})")
    if not isinstance(params, dict):
        sys.exit(f"{path}: expected a mapping at the top level")
    return params


def training_seed(params: dict[str, Any]) -> int:
    """The seed of the trainings downstream of the SAM (WSOD, retraining, WSIS and their
    reference rows): ``train_seed`` when set, else the global ``seed``. A seed sweep
    (``make seeds``, docs/seeds.md) varies ``train_seed`` with data, clues, prompts and SAM
    fixed."""
    value = params.get("train_seed")
    return int(params["seed"] if value is None else value)


def stage_args(description: str, extra: list[tuple[str, dict[str, Any]]] | None = None):
    """Parse the common ``--params`` option (plus stage-specific ``extra`` options)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    for name, kw in extra or []:
        p.add_argument(name, **kw)
    return p.parse_args()


def setup_logging(name: str) -> logging.Logger:
    """The stage's logger; under torchrun only rank 0 logs below WARNING (one copy per line)."""
    level = os.environ.get("WEAKSAM_LOGLEVEL", "INFO")
    if int(os.environ.get("RANK", "0")) > 0:
        level = "WARNING"
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return logging.getLogger(name)


def set_threads(params: dict[str, Any]) -> None:
    """Use the thread count of params ``runtime.threads`` (0: torch's default)."""
    import torch

    n = int(params.get("runtime", {}).get("threads", 0) or 0)
    if n > 0:
        torch.set_num_threads(n)
