"""Run Doctor's forensic half: diagnose one run, scan all runs.

>>> from doctor import DETECTORS
>>> "stale_heartbeat" in [d.__name__ for d in DETECTORS]
True
"""

import typing

from rundoctor.lazy import lazy_exports as _lazy_exports

if typing.TYPE_CHECKING:
    from doctor._atomic import check_output, write_atomic
    from doctor._budget import check_budget
    from doctor._cli import config_from_env, given_run
    from doctor._config import DoctorConfig, default_roots
    from doctor._detectors import DETECTORS, Context, describe, select
    from doctor._diagnose import ScanResult, diagnose, diagnose_path, scan
    from doctor._discovery import list_run_dirs
    from doctor._errors import (
        DoctorError,
        IngestError,
        OverBudget,
        RootError,
        RunNotFound,
        UnsafeRunId,
        UsageError,
    )
    from doctor._ingest import load_runs
    from doctor._layout import discover
    from doctor._metrics import fleet_metrics
    from doctor._model import Diagnosis, Finding, Severity
    from doctor._notes import (
        STOPPED_OWNER_HINT,
        continue_command,
        resumed_past_lines,
        terminal_detail_lines,
    )
    from doctor._queue_ingest import load_queue, queue_tables
    from doctor._tables import Tables
    from doctor._timeline import (
        MAX_TIMELINE_BARS,
        MAX_TIMELINE_STRETCHES,
        Bar,
        Stretch,
        Timeline,
        run_timeline,
    )
    from doctor._watch import WatchConfig, WatchEvent, WatchState, watch, watch_pass
    from rundoctor.signature import SIGNATURE_VERSION, canonical_signature, signature_groups

__all__ = [
    "DETECTORS",
    "MAX_TIMELINE_BARS",
    "MAX_TIMELINE_STRETCHES",
    "SIGNATURE_VERSION",
    "STOPPED_OWNER_HINT",
    "Bar",
    "Context",
    "Diagnosis",
    "DoctorConfig",
    "DoctorError",
    "Finding",
    "IngestError",
    "OverBudget",
    "RootError",
    "RunNotFound",
    "ScanResult",
    "Severity",
    "Stretch",
    "Tables",
    "Timeline",
    "UnsafeRunId",
    "UsageError",
    "WatchConfig",
    "WatchEvent",
    "WatchState",
    "canonical_signature",
    "check_budget",
    "check_output",
    "config_from_env",
    "continue_command",
    "default_roots",
    "describe",
    "diagnose",
    "diagnose_path",
    "discover",
    "fleet_metrics",
    "given_run",
    "list_run_dirs",
    "load_queue",
    "load_runs",
    "queue_tables",
    "resumed_past_lines",
    "run_timeline",
    "scan",
    "select",
    "signature_groups",
    "terminal_detail_lines",
    "watch",
    "watch_pass",
    "write_atomic",
]

# The front door is lazy (PEP 562): `import doctor` costs nothing until a name is used, so
# `doctor --help` and `doctor checks` do not load DuckDB, Polars or Arrow, and a command
# pays only for the modules it needs. Each name lives in the module written beside it.
_HOMES = {
    "Bar": "doctor._timeline",
    "Context": "doctor._detectors",
    "DETECTORS": "doctor._detectors",
    "MAX_TIMELINE_BARS": "doctor._timeline",
    "MAX_TIMELINE_STRETCHES": "doctor._timeline",
    "Diagnosis": "doctor._model",
    "DoctorConfig": "doctor._config",
    "DoctorError": "doctor._errors",
    "Finding": "doctor._model",
    "IngestError": "doctor._errors",
    "OverBudget": "doctor._errors",
    "RootError": "doctor._errors",
    "RunNotFound": "doctor._errors",
    "SIGNATURE_VERSION": "rundoctor.signature",
    "STOPPED_OWNER_HINT": "doctor._notes",
    "ScanResult": "doctor._diagnose",
    "Severity": "doctor._model",
    "Stretch": "doctor._timeline",
    "Tables": "doctor._tables",
    "Timeline": "doctor._timeline",
    "UnsafeRunId": "doctor._errors",
    "UsageError": "doctor._errors",
    "WatchConfig": "doctor._watch",
    "WatchEvent": "doctor._watch",
    "WatchState": "doctor._watch",
    "canonical_signature": "rundoctor.signature",
    "check_budget": "doctor._budget",
    "check_output": "doctor._atomic",
    "config_from_env": "doctor._cli",
    "continue_command": "doctor._notes",
    "default_roots": "doctor._config",
    "describe": "doctor._detectors",
    "diagnose": "doctor._diagnose",
    "diagnose_path": "doctor._diagnose",
    "discover": "doctor._layout",
    "fleet_metrics": "doctor._metrics",
    "given_run": "doctor._cli",
    "list_run_dirs": "doctor._discovery",
    "load_queue": "doctor._queue_ingest",
    "load_runs": "doctor._ingest",
    "queue_tables": "doctor._queue_ingest",
    "resumed_past_lines": "doctor._notes",
    "run_timeline": "doctor._timeline",
    "scan": "doctor._diagnose",
    "select": "doctor._detectors",
    "signature_groups": "rundoctor.signature",
    "terminal_detail_lines": "doctor._notes",
    "watch": "doctor._watch",
    "watch_pass": "doctor._watch",
    "write_atomic": "doctor._atomic",
}


__getattr__, __dir__ = _lazy_exports("doctor", _HOMES, __all__, globals())
