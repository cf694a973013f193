"""The base every Run Doctor package stands on: small, standard-library-only mechanisms.

``executor``, ``doctor``, ``reports`` and ``chaos`` all import from here, and this package
imports nothing of theirs and nothing outside the standard library, so a worker host that runs
only the executor never loads the analysis stack (DuckDB, Polars, Arrow). See
``docs/architecture.md`` for the layers.

Modules:

- :mod:`rundoctor.signature`: canonical failure signatures (what the executor's breaker
  counts and the doctor groups by).
- :mod:`rundoctor.errors`: exit codes, "did you mean" (one cutoff), the crash guard.
- :mod:`rundoctor.words`: counted nouns ("1 run", "3 runs").
- :mod:`rundoctor.paths`: the state directory every default lives under.
"""

from __future__ import annotations

__all__: list[str] = []
