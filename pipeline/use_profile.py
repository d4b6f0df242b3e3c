"""Switch profiles: deep-merge ``configs/<name>.yaml`` into ``params.yaml`` (one command).

    python -m pipeline.use_profile paper_voc07      # VOC 2007, SAM ViT-H, VGG16 ...
    python -m pipeline.use_profile tiny             # seconds-long smoke profile

``git checkout params.yaml`` returns to the default profile.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pipeline.common import ROOT, deep_merge, load_params
from weaksam.utils.atomic import atomic_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("profile", help="name of a file configs/<profile>.yaml")
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args()
    cfg = ROOT / "configs" / f"{a.profile}.yaml"
    if not cfg.is_file():
        names = sorted(x.stem for x in (ROOT / "configs").glob("*.yaml"))
        raise SystemExit(f"{cfg}: no such profile (have: {', '.join(names)})")
    merged = deep_merge(load_params(a.params), yaml.safe_load(cfg.read_text()) or {})
    with atomic_path(Path(a.params)) as tmp:
        tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
    print(f"{a.params}: profile {a.profile} merged in")


if __name__ == "__main__":
    main()
