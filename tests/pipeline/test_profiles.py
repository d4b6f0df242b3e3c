"""Profiles (configs/*.yaml) only set knobs that params.yaml has: a misspelt key in a profile
would otherwise be merged in and silently ignored by every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from weaksam.profiles import resolve_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "configs").glob("*.yaml"))


def _paths(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        out += _paths(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def _get(d: dict[str, Any], path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            raise KeyError(path)
        d = d[k]
    return d


def _under_null(params: dict, path: str) -> bool:
    """Whether ``path`` lies under a key that params.yaml sets to null: an optional section,
    off by default (e.g. ``wsis.mask2former.lsj``), whose keys its typed config checks."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        try:
            if _get(params, ".".join(parts[:i])) is None:
                return True
        except KeyError:
            return False
    return False


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_keys_exist_in_params(profile: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # resolved: a profile's own keys and those of the profiles it extends
    for path, _ in _paths(resolve_profile(profile.stem, profile.parent)):
        parts = path.split(".")
        if parts[0] == "wsod" and len(parts) == 5 and parts[2] == "recipes":
            # a WSOD recipe overrides keys of its method's section or of wsod (issue 23)
            candidates = [f"wsod.{parts[1]}.{parts[4]}", f"wsod.{parts[4]}"]
        elif parts[0] == "wsod" and len(parts) == 3 and parts[1] in ("oicr", "mist"):
            # a method's own value of a wsod key (weaksam.wsod.recipes.method_setting)
            candidates = [path, f"wsod.{parts[2]}"]
        else:
            candidates = [path]
        found = False
        for cand in candidates:
            try:
                _get(params, cand)
                found = True
            except KeyError:
                found = found or _under_null(params, cand)
        if not found:
            pytest.fail(f"{profile.name}: {path} is not a key of params.yaml")


def test_profiles_found() -> None:
    assert {p.stem for p in PROFILES} >= {"tiny", "paper_voc07"}
