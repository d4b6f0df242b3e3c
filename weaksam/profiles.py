"""Profiles: ``configs/<name>.yaml`` deep-merged into a params file (one command switches the
whole DAG between the embedded default, the tiny smoke profile and the paper's data sets).

Used by ``python -m pipeline.use_profile NAME`` and ``weaksam profile NAME``. Nothing here is a
stage: these functions edit the params file they are handed, they never configure ``weaksam``.

Values follow PyYAML's ``safe_load`` (what every stage reads) and :func:`deep_merge`; the text is
rewritten with ruamel.yaml's round trip (the library DVC edits params files with), so the params
file keeps its comments, key order and layout; a key the profile adds brings its comment along.
"""

from __future__ import annotations

import copy
import io
import re
import warnings
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.tokens import CommentToken

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


def _rt_yaml() -> YAML:
    """ruamel.yaml round trip as params files are written: ``null`` spelled out, quotes kept,
    lines wrapped near the repository's 100 columns."""
    y = YAML()
    y.width = 100
    y.preserve_quotes = True
    y.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def _rt_load(path: Path) -> CommentedMap:
    """``path`` as a round-trip mapping (already validated by :func:`_read_mapping`; ruamel
    also refuses what PyYAML lets pass, e.g. a key twice in one mapping: InputError)."""
    try:
        data = _rt_yaml().load(path.read_text())
    except RuamelError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(path, f"not valid YAML{where}: {getattr(e, 'problem', None) or e}"
                         ) from e
    return data if data is not None else CommentedMap()


def _rt_profile(name: str, configs_dir: Path) -> CommentedMap:
    """:func:`resolve_profile` on round-trip nodes (comments and styles of the profile files;
    validation is :func:`resolve_profile`'s, run first)."""
    data = _rt_load(configs_dir / f"{name}.yaml")
    bases = data.pop(EXTENDS, None) or []
    out = CommentedMap()
    for base in [bases] if isinstance(bases, str) else bases:
        _merge_rt(out, _rt_profile(str(base), configs_dir), comments="over")
    _merge_rt(out, data, comments="over")
    return out


def _slot(node: Any) -> tuple[CommentedMap, Any] | None:
    """The (mapping, key) whose end-of-line comment token ends ``node``'s text (the last leaf),
    or None for a scalar or an empty mapping."""
    if not isinstance(node, CommentedMap) or not node:
        return None
    last = next(reversed(node))
    return _slot(node[last]) or (node, last)


def _token(slot: tuple[CommentedMap, Any] | None) -> CommentToken | None:
    items = slot[0].ca.items.get(slot[1]) if slot else None
    return items[2] if items and len(items) > 2 else None


def _cut(slot: tuple[CommentedMap, Any] | None) -> str:
    """Remove and return the comment lines after the line of ``slot`` (in ruamel they hang off
    the last leaf before them, but belong to what comes next: a blank line, a section
    header)."""
    tok = _token(slot)
    if tok is None or "\n" not in tok.value:
        return ""
    head, rest = tok.value.split("\n", 1)
    tok.value = head + "\n"
    return rest


def _add(slot: tuple[CommentedMap, Any] | None, rest: str) -> None:
    """Hang the comment lines ``rest`` after the line of ``slot`` (see :func:`_cut`)."""
    if not rest or slot is None:
        return
    tok = _token(slot)
    if tok is None:
        slot[0].ca.items.setdefault(slot[1], [None, None, None, None])[2] = CommentToken(
            "\n" + rest, CommentMark(0), None)
    else:
        tok.value = tok.value + rest


def _eol(m: CommentedMap, key: Any) -> CommentToken | None:
    """A copy of the end-of-line comment of ``key`` in ``m`` (its first line only)."""
    tok = _token((m, key))
    if tok is None or not tok.value.startswith("#"):
        return None
    return CommentToken(tok.value.split("\n", 1)[0] + "\n", CommentMark(tok.column), None)


def _merge_rt(base: CommentedMap, over: CommentedMap, comments: str) -> None:
    """:func:`deep_merge` in place on round-trip mappings. A key ``base`` has keeps its comment
    (``comments="base"``) or takes ``over``'s when it has one (``"over"``); a new key takes
    ``over``'s. Comment lines after a replaced value, or after ``base``'s end, stay there."""
    rest = _cut(_slot(base))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge_rt(base[k], v, comments)
            continue
        v = copy.deepcopy(v)
        _cut(_slot(v))  # the profile's lines before its next key are not this value's
        tok = _eol(over, k)
        after = _cut(_slot(base[k]) or (base, k)) if k in base else ""
        keep = k in base and (comments == "base" or tok is None)
        base[k] = v
        if not keep:
            base.ca.items.pop(k, None)
            if tok is not None:
                base.ca.items[k] = [None, None, tok, None]
        _add(_slot(v) or (base, k), after)
    _add(_slot(base), rest)


def _rewrite(params_path: Path, override: CommentedMap, name: str) -> str:
    """The params file's text with ``override`` merged in and ``profile`` set, comments kept."""
    doc = _rt_load(params_path)
    _merge_rt(doc, override, comments="base")
    doc["profile"] = override.get("profile", name)
    out = io.StringIO()
    _rt_yaml().dump(doc, out)
    return re.sub(r", +\n", ",\n", out.getvalue())  # no trailing blank of a wrapped flow list


def apply_profile(name: str, params_path: str | Path, configs_dir: str | Path) -> Path:
    """Deep-merge ``configs_dir/<name>.yaml`` into ``params_path`` (rewritten atomically, its
    comments and key order kept; keys the profile adds come last in their mapping, with the
    profile's comment) and set its top-level ``profile`` to ``name`` (unless the profile file
    sets it). The profile's ``extends`` bases are applied first (:func:`resolve_profile`).
    ``git checkout params.yaml`` restores the default.

    The values written are exactly :func:`deep_merge`'s as ``yaml.safe_load`` reads them; should
    the round trip ever read back otherwise, the file is written without comments and a warning
    says so. Returns the profile file. An unknown profile or a malformed file raises
    :class:`~weaksam.errors.InputError` naming the file (and the profiles there are).
    """
    override = resolve_profile(name, configs_dir)
    params_path = Path(params_path)
    if not params_path.is_file():
        raise InputError(params_path, "params file not found")
    merged = deep_merge(_read_mapping(params_path, "params file"), override)
    # the report names the profile of the run it reports (params ``profile``)
    merged["profile"] = override.get("profile", name)
    text = _rewrite(params_path, _rt_profile(name, Path(configs_dir)), name)
    if yaml.safe_load(text) != merged:
        warnings.warn(f"{params_path}: the comment-keeping rewrite would change values; "
                      "written without comments", stacklevel=2)
        text = yaml.safe_dump(merged, sort_keys=False)
    with atomic_path(params_path) as tmp:
        tmp.write_text(text)
    return Path(configs_dir) / f"{name}.yaml"
