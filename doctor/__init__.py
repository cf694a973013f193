"""Run Doctor's forensic half: diagnose one run, scan all runs.

>>> from doctor import DETECTORS
>>> "stale_heartbeat" in [d.__name__ for d in DETECTORS]
True
"""

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
from doctor._model import Diagnosis, Finding, Severity
from doctor._queue_ingest import load_queue
from doctor._signature import SIGNATURE_VERSION, canonical_signature, signature_groups
from doctor._tables import Tables

__all__ = [
    "DETECTORS",
    "SIGNATURE_VERSION",
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
    "Tables",
    "UnsafeRunId",
    "UsageError",
    "canonical_signature",
    "default_roots",
    "describe",
    "diagnose",
    "diagnose_path",
    "discover",
    "list_run_dirs",
    "load_queue",
    "load_runs",
    "scan",
    "select",
    "signature_groups",
]
