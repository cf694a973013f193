"""DuckDB's engine, imported without its Python relation layer where a connection needs none.

The ``duckdb`` package is the C++ engine (the ``_duckdb`` extension module, 10 ms to import)
under a Python layer: the relation and expression API (``con.sql``, ``.pl()``, Arrow export)
and the package's version lookup, 50 ms more. A scan's batch only runs statements
(``execute``/``fetchall``), so it asks for the engine alone: a rescan after one run grew
imports DuckDB for that one run. Connections made through either are the same type; once
the ``duckdb`` package is imported (a notebook, ``Tables.frame``), every connection has its
relation API.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["engine"]


def engine(*, relations: bool = True) -> ModuleType:
    """The module to connect through and catch DuckDB's exceptions from.

    ``relations=False``: the ``_duckdb`` extension module when DuckDB is packaged that way
    (its ``connect``, ``execute`` and exception classes are those ``duckdb`` re-exports), else
    the ``duckdb`` package; the package whenever it is already loaded.
    """
    loaded = sys.modules.get("duckdb")
    if loaded is not None:
        return loaded
    if not relations:
        try:
            import _duckdb
        except ImportError:
            pass
        else:
            return _duckdb
    import duckdb

    return duckdb
