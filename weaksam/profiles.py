"""Profiles: ``configs/<name>.yaml`` deep-merged into a params file (one command switches the
whole DAG between the embedded default, the tiny smoke profile and the paper's data sets).

Used by ``python -m pipeline.use_profile NAME`` and ``weaksam profile NAME``. Nothing here is a
stage: these functions edit the params file they are handed, they never configure ``weaksam``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in recursively (override wins on leaves)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def list_profiles(configs_dir: str | Path) -> list[str]:
    """Names of the profiles in ``configs_dir`` (``<name>.yaml`` files), sorted."""
    return sorted(p.stem for p in Path(configs_dir).glob("*.yaml"))


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InputError(path, f"{what} is not valid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"{what}: expected a mapping at the top level")
    return data


#: Top-level key of a profile file naming the profile(s) it builds on (applied first).
EXTENDS = "extends"


def resolve_profile(name: str, configs_dir: str | Path,
                    _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of profile ``name``: ``configs_dir/<name>.yaml`` deep-merged over the
    profiles its ``extends`` key names (a name or a list, applied in order, recursively),
    without the ``extends`` key. Unknown profiles and cycles raise
    :class:`~weaksam.errors.InputError` naming the file."""
    configs_dir = Path(configs_dir)
    cfg = configs_dir / f"{name}.yaml"
    if not cfg.is_file():
        have = ", ".join(list_profiles(configs_dir)) or "none"
        raise InputError(cfg, f"no such profile (have: {have})")
    if name in _seen:
        raise InputError(cfg, f"profile cycle: {' -> '.join((*_seen, name))}")
    data = _read_mapping(cfg, "profile")
    bases = data.pop(EXTENDS, None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise InputError(cfg, f"{EXTENDS}: expected a profile name or a list of names")
    out: dict[str, Any] = {}
    for base in bases:
        out = deep_merge(out, resolve_profile(base, configs_dir, (*_seen, name)))
    return deep_merge(out, data)


def apply_profile(name: str, params_path: str | Path, configs_dir: str | Path) -> Path:
    """Deep-merge ``configs_dir/<name>.yaml`` into ``params_path`` (rewritten atomically, keys
    in their order; comments are not kept: ``git checkout params.yaml`` restores the default)
    and set its top-level ``profile`` to ``name`` (unless the profile file sets it). The
    profile's ``extends`` bases are applied first (:func:`resolve_profile`).

    Returns the profile file. An unknown profile or a malformed file raises
    :class:`~weaksam.errors.InputError` naming the file (and the profiles there are).
    """
    override = resolve_profile(name, configs_dir)
    params_path = Path(params_path)
    if not params_path.is_file():
        raise InputError(params_path, "params file not found")
    merged = deep_merge(_read_mapping(params_path, "params file"), override)
    # the report names the profile of the run it reports (params ``profile``)
    merged["profile"] = override.get("profile", name)
    with atomic_path(params_path) as tmp:
        tmp.write_text(yaml.safe_dump(merged, sort_keys=False))
    return Path(configs_dir) / f"{name}.yaml"
