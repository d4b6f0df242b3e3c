"""Switch profiles: deep-merge ``configs/<name>.yaml`` into ``params.yaml`` (one command).

    python -m pipeline.use_profile paper_voc07      # VOC 2007, SAM ViT-H, VGG16 ...
    python -m pipeline.use_profile tiny             # seconds-long smoke profile

Same as ``weaksam profile NAME`` (both call :func:`weaksam.profiles.apply_profile`).
``git checkout params.yaml`` returns to the default profile.
"""

from __future__ import annotations

import argparse

from pipeline.common import ROOT
from weaksam.errors import InputError
from weaksam.profiles import apply_profile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("profile", help="name of a file configs/<profile>.yaml")
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args()
    try:
        apply_profile(a.profile, a.params, ROOT / "configs")
    except InputError as e:
        raise SystemExit(str(e)) from None
    print(f"{a.params}: profile {a.profile} merged in")


if __name__ == "__main__":
    main()
