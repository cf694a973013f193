"""The fault catalog: one module per fault, all listed in :data:`FAULTS`.

Each fault is a plain function ``(Target) -> Injection | None`` wrapped in a
:class:`~chaos._injection.Fault` that declares the doctor findings it may cause and the
reclaim-latency bound its leases are held to. Faults are selected by name (``--faults``),
unknown names are refused with the closest known ones.

>>> [f.name for f in FAULTS]  # doctest: +NORMALIZE_WHITESPACE
['sigkill_stage', 'sigkill_worker', 'sigstop_worker', 'sigterm_worker', 'torn_write',
 'stall_database', 'restart_database', 'database_outage', 'remove_pipeline', 'kill_mid_write',
 'disk_full', 'read_only_root']
>>> select_faults(["torn_wirte"])
Traceback (most recent call last):
chaos._errors.UsageError: unknown fault 'torn_wirte' (did you mean 'torn_write'?); \
`doctor chaos faults` lists them all
"""

from __future__ import annotations

from collections.abc import Iterable

from chaos import (
    _database_outage,
    _disk_full,
    _kill_mid_write,
    _read_only_root,
    _remove_pipeline,
    _restart_database,
    _sigkill_stage,
    _sigkill_worker,
    _sigstop_worker,
    _sigterm_worker,
    _stall_database,
    _torn_write,
)
from chaos._errors import UsageError
from chaos._injection import Fault
from rundoctor.errors import close_matches, did_you_mean
from rundoctor.terminal import quoted

__all__ = ["FAULTS", "fault_names", "parse_faults", "select_faults"]

#: Every fault, in the order ``doctor chaos faults`` lists them.
FAULTS: tuple[Fault, ...] = (
    _sigkill_stage.FAULT,
    _sigkill_worker.FAULT,
    _sigstop_worker.FAULT,
    _sigterm_worker.FAULT,
    _torn_write.FAULT,
    _stall_database.FAULT,
    _restart_database.FAULT,
    _database_outage.FAULT,
    _remove_pipeline.FAULT,
    _kill_mid_write.FAULT,
    _disk_full.FAULT,
    _read_only_root.FAULT,
)


def fault_names() -> tuple[str, ...]:
    """The names of every fault, in catalog order."""
    return tuple(f.name for f in FAULTS)


def select_faults(names: Iterable[str]) -> tuple[Fault, ...]:
    """The faults named, in catalog order; all of them when ``names`` is empty.

    >>> [f.name for f in select_faults(["stall_database", "sigkill_worker"])]
    ['sigkill_worker', 'stall_database']
    """
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not wanted:
        return FAULTS
    known = fault_names()
    for name in wanted:
        if name not in known:
            raise UsageError(
                f"unknown fault {quoted(name)}{did_you_mean(close_matches(name, known))}; "
                "`doctor chaos faults` lists them all"
            )
    return tuple(f for f in FAULTS if f.name in wanted)


def parse_faults(text: str | None) -> tuple[str, ...]:
    """``--faults a,b`` as names in catalog order (every fault for ``None`` or ``all``).

    A selection that names no fault (``""``, ``" , "``) is refused rather than read as "all":
    an empty shell variable must not turn a one-fault campaign into an every-fault one.

    >>> parse_faults("torn_write, sigkill_stage")
    ('sigkill_stage', 'torn_write')
    >>> parse_faults(None) == fault_names()
    True
    >>> parse_faults(" , ")
    Traceback (most recent call last):
    chaos._errors.UsageError: --faults ' , ' names no fault; give fault names separated by \
commas (`doctor chaos faults` lists them), or leave --faults out to run all of them
    """
    if text is None or text.strip() == "all":
        return fault_names()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(
            f"--faults {text!r} names no fault; give fault names separated by commas "
            "(`doctor chaos faults` lists them), or leave --faults out to run all of them"
        )
    return tuple(f.name for f in select_faults(names))
