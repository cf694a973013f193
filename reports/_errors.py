"""The reports' exception tree.

A report error is a doctor error, so the ``doctor`` CLI maps it to one red line and exit 2::

    doctor.DoctorError
     └── ReportError           a queue or template input the reports cannot use

Dependency errors (duckdb, jinja2) are wrapped at the boundary with ``raise ... from``.
"""

from __future__ import annotations

from doctor import DoctorError

__all__ = ["ReportError"]


class ReportError(DoctorError):
    """A report cannot be made from what it was given."""
