"""Where Run Doctor keeps its state on a host: one answer for every package.

The executor's default queue and runs directory, the doctor's default roots and the watch
state all live under :func:`state_home`. Only command lines call it; library code takes paths.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_home"]


def state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state`` (the CLI's default; the library never calls it).

    >>> state_home().is_absolute()
    True
    """
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
