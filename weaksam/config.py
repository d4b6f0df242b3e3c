"""Typed configuration: frozen dataclasses built from one ``params.yaml`` section.

The stage scripts (``pipeline/``) read params.yaml and call :func:`from_section`; the library
gets the resulting frozen dataclass (STYLE.md 2: config becomes arguments in one place). A key
of the section that the dataclass does not have is an error naming the key and the params path,
so a typo fails at once instead of silently running the default. A dataclass default, where one
exists, equals params.yaml's value of the same key (``tests/test_config.py`` checks it), so
there is one source of defaults.

Values are coerced to the field's annotated type the way the stages did by hand (``int(x)``,
``float(x)``, ``str(x)``, ``bool(x)``; ``tuple[T, ...]`` element-wise), so a profile that
writes ``tau_reg: 1`` gives the same float as ``tau_reg: 1.0``. A field whose type is itself a
dataclass takes a nested section (``where`` then names ``section.key``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A params section that does not fit its dataclass (unknown, missing or mistyped key)."""


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (int, float, str, bool, tuple[...], X | None, a dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        return _coerce(tp, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return from_section(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
        if len(args) != len(items):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in
                     enumerate(zip(args, items, strict=True)))
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return tp(value)
        except ValueError as e:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from e
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_section(cls: type[T], section: Mapping[str, Any], where: str,
                 ignore: Collection[str] = (), **extra: Any) -> T:
    """The frozen dataclass ``cls`` from ``section``, a params mapping found at ``where``
    (e.g. ``"params.yaml retrain.frcnn.model"``, used in every error message).

    ``ignore``: keys of the section that the calling stage consumes itself (not ``cls``'s, e.g.
    the input kind). ``extra``: values that do not come from the section (a seed derived from
    ``params.seed``); giving one that the section also has is an error. Raises
    :class:`ConfigError` on an unknown key, a missing key without default, or a value of the
    wrong type."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: expected a section (mapping), got {section!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in section if k not in fields and k not in ignore]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    stray = [k for k in extra if k not in fields]
    if stray:
        raise TypeError(f"{cls.__name__} has no field {stray[0]!r}")
    both = [k for k in extra if k in section]
    if both:
        raise ConfigError(f"{where}: {both[0]!r} is set by the stage, not by params")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in extra:
            kwargs[name] = extra[name]
        elif name in section:
            kwargs[name] = _coerce(hints[name], section[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key {name!r}")
    return cls(**kwargs)
