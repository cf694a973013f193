"""The base every Run Doctor package stands on: small, standard-library-only mechanisms.

``executor``, ``doctor``, ``reports`` and ``chaos`` all import from here, and this package
imports nothing of theirs and nothing outside the standard library, so a worker host that runs
only the executor never loads the analysis stack (DuckDB, Polars, Arrow). See
``docs/architecture.md`` for the layers.

Modules:

- :mod:`rundoctor.atomic`: atomic file writes (temporary file, fsync, rename or link).
- :mod:`rundoctor.clock`: the ``Clock`` type every package injects.
- :mod:`rundoctor.config`: the config file (TOML) the command lines read.
- :mod:`rundoctor.durations`: the one duration grammar (``1h30m``) and its formatter.
- :mod:`rundoctor.lazy`: lazy front doors (a package's names load on first use).
- :mod:`rundoctor.liveness`: is a recorded process alive here, and plausibly the same one.
- :mod:`rundoctor.markdown`: escaping artifact text for Markdown.
- :mod:`rundoctor.signature`: canonical failure signatures (what the executor's breaker
  counts and the doctor groups by).
- :mod:`rundoctor.errors`: exit codes, "did you mean" (one cutoff), the crash guard.
- :mod:`rundoctor.words`: counted nouns ("1 run", "3 runs").
- :mod:`rundoctor.passwords`: database passwords hidden in URLs and in messages that echo them.
- :mod:`rundoctor.paths`: the state directory every default lives under; reading a regular
  file without blocking on a FIFO.
- :mod:`rundoctor.terminal`: artifact text on a terminal (control characters made visible).
"""

from __future__ import annotations

__all__: list[str] = []
