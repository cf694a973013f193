"""Lazy front doors (PEP 562): a package exports names whose modules load on first use.

``doctor`` and ``executor`` list each public name with the module that defines it, so
``import executor`` stays cheap (a worker host or ``doctor --help`` loads only what it uses).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    homes: Mapping[str, str],
    names: Sequence[str],
    namespace: MutableMapping[str, Any],
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose globals are ``namespace``:
    a name of ``homes`` is imported from its module on first access and kept in
    ``namespace``, so later look-ups skip the function.

    >>> ns: dict[str, object] = {}
    >>> getattr_, dir_ = lazy_exports("demo", {"dedent": "textwrap"}, ["dedent"], ns)
    >>> getattr_("dedent")("  x") == "x", "dedent" in ns, dir_()
    (True, True, ['dedent'])
    >>> getattr_("nope")
    Traceback (most recent call last):
    AttributeError: module 'demo' has no attribute 'nope'
    """

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value  # once: later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
