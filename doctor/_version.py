"""The installed distribution's version, read from its metadata (one source: pyproject.toml).

>>> package_version().count(".") >= 1
True
"""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "package_version"]

DISTRIBUTION = "rundoctor"


def package_version() -> str:
    """The version of the installed ``rundoctor``, or ``0+unknown`` when run from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version  # only --version pays for it

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
