"""Run Doctor's forensic half: diagnose one run, scan all runs.

>>> from doctor import DETECTORS
>>> "stale_heartbeat" in [d.__name__ for d in DETECTORS]
True
"""

from doctor._atomic import write_atomic
from doctor._config import DoctorConfig, default_roots
from doctor._detectors import DETECTORS, Context, describe, select
from doctor._diagnose import ScanResult, diagnose, diagnose_path, scan
from doctor._errors import (
    DoctorError,
    IngestError,
    RootError,
    RunNotFound,
    UnsafeRunId,
    UsageError,
)
from doctor._ingest import load_runs
from doctor._layout import discover, list_run_dirs
from doctor._metrics import fleet_metrics
from doctor._model import Diagnosis, Finding, Severity
from doctor._queue_ingest import load_queue
from doctor._signature import SIGNATURE_VERSION, canonical_signature, signature_groups
from doctor._tables import Tables
from doctor._timeline import Bar, Stretch, Timeline, run_timeline
from doctor._watch import WatchConfig, WatchEvent, WatchState, watch, watch_pass

__all__ = [
    "DETECTORS",
    "SIGNATURE_VERSION",
    "Bar",
    "Context",
    "Diagnosis",
    "DoctorConfig",
    "DoctorError",
    "Finding",
    "IngestError",
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
    "default_roots",
    "describe",
    "diagnose",
    "diagnose_path",
    "discover",
    "fleet_metrics",
    "list_run_dirs",
    "load_queue",
    "load_runs",
    "run_timeline",
    "scan",
    "select",
    "signature_groups",
    "watch",
    "watch_pass",
    "write_atomic",
]
