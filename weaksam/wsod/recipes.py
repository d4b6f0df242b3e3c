"""The settings of one WSOD method: its named recipe, then its own section, then ``wsod``.

The paper profiles name a recipe per method (``wsod.<method>.recipe: release`` selects
``wsod.<method>.recipes.release``, the WeakSAM release's optimiser, schedule, scales and test
flips; issue 23); the default profile names none. One lookup serves the WSOD stage and the
cost model, so both read the same schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def method_setting(wsod: Mapping[str, Any], method: str, key: str) -> Any:
    """The value of ``key`` for ``method`` given the ``wsod`` params section: the named
    recipe's ``<method>.recipes.<recipe>.<key>`` when ``<method>.recipe`` is set and the recipe
    has the key (not null), else ``<method>.<key>`` unless missing or null, else ``<key>``
    of the section (``KeyError`` when missing there too). An unknown recipe name is a
    ``ValueError`` naming the choices."""
    m = wsod[method]
    name = m.get("recipe")
    if name is not None:
        recipes = m.get("recipes") or {}
        if name not in recipes:
            raise ValueError(f"wsod.{method}.recipe {name!r} is not one of "
                             f"wsod.{method}.recipes {sorted(recipes)}")
        if recipes[name].get(key) is not None:
            return recipes[name][key]
    return m[key] if m.get(key) is not None else wsod[key]
