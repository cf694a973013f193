"""The detectors: one module each, one signature, listed in :data:`DETECTORS`.

A detector is a plain function ``(Context) -> list[Finding]`` named after the finding code it
reports; its docstring's first line is what ``doctor checks`` prints.

The catalog (:data:`DETECTORS`, :func:`select`, :func:`describe`, in
:mod:`doctor._detectors._catalog`) loads on first use (PEP 562): a detector module imported
alone (a rescan's ``idle_gap``) does not import the others. So does the context
(:mod:`doctor._detectors._context`): ``doctor checks`` reads
:mod:`doctor._detectors._listing` and needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rundoctor.lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from doctor._detectors._catalog import DETECTORS, describe, select
    from doctor._detectors._context import Context, Detector, Needs, more, needs

__all__ = ["DETECTORS", "Context", "Detector", "Needs", "describe", "more", "needs", "select"]

_CATALOG = "doctor._detectors._catalog"
_CONTEXT = "doctor._detectors._context"
__getattr__, __dir__ = _lazy_exports(
    "doctor._detectors",
    {"DETECTORS": _CATALOG, "describe": _CATALOG, "select": _CATALOG}
    | dict.fromkeys(("Context", "Detector", "Needs", "more", "needs"), _CONTEXT),
    __all__,
    globals(),
)
