"""``missing_final``: a run (or a branch) that stopped without writing its ``final.json``.

Kilroy writes ``final.json`` once, at the top level, when the run terminates; its parallel
branches never get one (format doc §1.5). So for Kilroy-layout runs a branch is reported only
when the top level itself never terminalized (it is stalled or orphaned without a final.json):
the branches' outcomes then exist nowhere but in their event streams. Native-layout runs (the
executor's) terminalize every branch, so there each branch that is not running and has no
valid final.json is reported on its own.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from os.path import dirname
from pathlib import Path

from doctor._attempts import LATEST_ATTEMPTS_SQL
from doctor._detectors._context import Context, more, needs
from doctor._documents import SYMLINK, RunDocuments
from doctor._facts import RunFacts
from doctor._layout import TOP_SQL, is_top_scope
from doctor._model import Finding, Severity
from doctor._superseded import repaired_final_ns
from doctor._timestamps import iso, parse_iso
from rundoctor.liveness import WorkingProcess, working_processes
from rundoctor.markdown import REASON_SHOWN, flatten
from rundoctor.terminal import shell_quote

__all__ = ["missing_final"]

#: Branch states that need no final.json: running, or finished as the parent recorded it
#: (Kilroy's ``branch_subgraph_done``; its branches never write one).
_NOT_MISSING = ("running", "succeeded", "failed", "canceled")

# Last progress per scope, and per run over the top-level scopes (the run and its restarts).
_PROGRESS_SQL = f"""
SELECT run_id, scope, {TOP_SQL} AS top, epoch_ns(max(ts)) AS last_progress
FROM progress_events GROUP BY ALL
"""
# Nodes with an open attempt (LATEST_ATTEMPTS_SQL: a node's latest start with no end, unless
# the run went on in another of its top-level scopes after it), per scope, in start order.
_OPEN_SQL = f"""
SELECT run_id, scope, {TOP_SQL} AS top, list(node_id ORDER BY start_seq)
FROM ({LATEST_ATTEMPTS_SQL})
WHERE is_open GROUP BY ALL
"""

# Per run, the text of its top-level streams' last event that says something went wrong (a
# failure reason, a warning's message, a reason): what the engine last said before it died.
_LAST_WORDS_SQL = f"""
SELECT run_id, arg_max(concat_ws(' ', nullif(failure_reason, ''), nullif(message, ''),
                                 nullif(reason, '')), seq)
FROM progress_events
WHERE {TOP_SQL}
  AND coalesce(nullif(failure_reason, ''), nullif(message, ''), nullif(reason, '')) IS NOT NULL
GROUP BY run_id
"""
#: The words of a full disk (ENOSPC) or an exhausted quota (EDQUOT), as Go, Python and the C
#: library say them.
_DISK_FULL = re.compile(r"(?i)no space left on device|disk quota exceeded|\bENOSPC\b|\bEDQUOT\b")


def _disk_full(words: str | None) -> str | None:
    """``words`` (a run's last words) when they say its disk is full, else None.

    >>> _disk_full("write /r/test/.tmp-1.json: no space left on device, attempts remaining")
    'write /r/test/.tmp-1.json: no space left on device, attempts remaining'
    >>> _disk_full("exit status 1") is None, _disk_full(None) is None
    (True, True)
    """
    return words if words is not None and _DISK_FULL.search(words) else None


def _run_extras(
    docs: RunDocuments,
    facts: RunFacts,
    elsewhere: str | None,
    gone: str | None,
    *,
    no_events: bool,
) -> dict[str, object]:
    """The top level's extra evidence keys, each only when it applies (docs/findings.md)."""
    extras: dict[str, object] = {}
    if facts.get("owner_stopped"):
        extras["owner_stopped"] = True
    if elsewhere is not None:
        extras["owner_elsewhere"] = elsewhere
    extras.update(_stop_evidence(docs, facts))
    if gone:
        extras["superseded_final"] = gone
    if no_events and docs.run_out_tail:
        extras["run_out_tail"] = list(docs.run_out_tail)
    return extras


#: How long after a run's last event a process in its directory may have started and still
#: be taken for one it started (a tool stage's process starts just after its last event;
#: start times are known to the boot time's second).
_STARTED_WITHIN_S = 5.0


def _left_running(
    run_dir: Path, last_event_at: object, seen: _Progress
) -> tuple[str, dict[str, object]]:
    """The processes a run whose owner died left working in its directory: those whose
    working directory is in it (a stage's is the run's worktree) and that started by its last
    event (:data:`_STARTED_WITHIN_S`), with the rest of their process groups (Kilroy starts
    each tool stage in a group of its own). The summary's clause and the ``stage_processes``
    evidence, else nothing. Only this host's processes, as they are now: one that started
    after the run's last event is none of its own, whatever ``now`` the diagnosis is of."""
    last = parse_iso(last_event_at) if isinstance(last_event_at, str) else None
    if last is None:
        return "", {}
    root = os.path.realpath(run_dir)
    inside = [w for w in seen.processes() if w.cwd == root or w.cwd.startswith(root + os.sep)]
    groups = {w.pgid for w in inside if w.started <= last / 1e9 + _STARTED_WITHIN_S}
    left = [w for w in inside if w.pgid in groups]
    if not left:
        return "", {}
    named = [f"pid {w.pid} ({w.name})" for w in left]
    kill = " ".join(f"-{g}" for g in sorted(groups))
    clause = (
        f"; processes it started still work in its directory ({more(named, 3)}): a resume "
        f"would run that stage again beside them, so stop them first (`kill -TERM -- {kill}`)"
    )
    return clause, {
        "stage_processes": [{"pid": w.pid, "pgid": w.pgid, "name": w.name} for w in left]
    }


def _disk_note(docs: RunDocuments, last_words: str | None) -> tuple[str, dict[str, object]]:
    """When the run's last words (its streams', else its ``live.json``'s) say its disk is
    full: the clause the summary ends with and the ``disk_full`` evidence; else nothing.

    The engine could not write its final.json (nor the rest): a terminalize or a resume
    writes to the same disk, and fails there too until space is freed."""
    full = _disk_full(last_words) or _disk_full(_live_words(docs))
    if full is None:
        return "", {}
    clause = (
        f"; its last words say the disk is full ({flatten(full, REASON_SHOWN)!r}): free "
        "space there first, since terminalizing or resuming the run writes to it"
    )
    return clause, {"disk_full": full}


def _live_words(docs: RunDocuments) -> str | None:
    """What the run's ``live.json`` (Kilroy's copy of its latest event, a small file it may
    still write when the disk refused the stream's line) says went wrong, if anything."""
    live = docs.top.live
    value = live.value if live is not None and live.ok else None
    if not isinstance(value, dict):
        return None
    said = [value.get(k) for k in ("failure_reason", "message", "reason")]
    return " ".join(str(w) for w in said if isinstance(w, str) and w) or None


def _idle(now: float, last_progress: int | None) -> float | None:
    return None if last_progress is None else round(now - last_progress / 1e9, 3)


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    if seconds >= 2 * 86400:
        days, rest = divmod(round(seconds / 3600), 24)
        return f"{days} d {rest} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _since(last_progress: int | None) -> str:
    # A time, not an age: the summary of a run that can no longer change stays true, and a
    # cached diagnosis can be reused (idle_s, the age, is recomputed from last_progress_at).
    return iso(last_progress) or "its start (no progress event with a readable time was recorded)"


def _owner(pid: int | None, alive: bool | None, elsewhere: str | None = None) -> str:
    if pid is None:
        return "owner process was never recorded"
    if elsewhere is not None:
        # Kilroy's own stop of this directory would stop that run (it reads run.pid).
        return (
            f"owner pid {pid} works on {elsewhere!r}, not on this directory (a copy of that "
            "run, or moved away from under its engine): nothing writes here any more; "
            "diagnose that directory for the run itself, and never stop that pid for this one"
        )
    return (
        f"owner pid {pid} is " + {True: "alive", False: "dead", None: "of unknown liveness"}[alive]
    )


@dataclass(frozen=True)
class _Progress:
    """Last progress and open attempts, per (run, scope) and per run over its top level."""

    progress: dict[tuple[str, str], int | None]
    top_progress: dict[str, int]
    open_nodes: dict[tuple[str, str], list[str]]
    top_open: dict[str, list[str]]
    #: Per run, its top level's last words (:data:`_LAST_WORDS_SQL`).
    last_words: dict[str, str]
    #: This host's working processes, looked up once for the whole batch (only when an
    #: orphaned run asks: :func:`_left_running`).
    processes: Callable[[], list[WorkingProcess]]


def _read_progress(ctx: Context) -> _Progress:
    """Phase 1: the two queries, grouped per scope and per run's top level."""
    out = _Progress(
        progress={},
        top_progress={},
        open_nodes={},
        top_open={},
        last_words={},
        processes=functools.cache(working_processes),
    )
    for run_id, scope, top, last in ctx.tables.sql(_PROGRESS_SQL):
        out.progress[(run_id, scope)] = last
        if top and last is not None:
            out.top_progress[run_id] = max(out.top_progress.get(run_id, last), last)
    for run_id, scope, top, nodes in ctx.tables.sql(_OPEN_SQL):
        out.open_nodes[(run_id, scope)] = [str(n) for n in nodes]
        if top:
            out.top_open.setdefault(run_id, []).extend(str(n) for n in nodes)
    for run_id, words in ctx.tables.sql(_LAST_WORDS_SQL):
        out.last_words[run_id] = str(words)
    return out


def _top_missing(facts: RunFacts) -> bool:
    # Without a valid final.json the state is running, stalled or orphaned.
    return not facts.get("final_json") and facts.get("_state") in ("stalled", "orphaned")


def _looked_at(ctx: Context) -> bool:
    """Whether a run lacks its final.json, or is native (its branches may lack theirs): the
    only runs :func:`missing_final` reports on (a batch of finished Kilroy runs has none)."""
    return any(
        _top_missing(facts) or ctx.documents(run_id).layout == "native"
        for run_id, facts in ctx.facts.items()
    )


@needs(when=_looked_at)
def missing_final(ctx: Context) -> list[Finding]:
    """Runs and branches that stopped running without ever writing a valid final.json."""
    seen = _read_progress(ctx)
    findings: list[Finding] = []
    for run_id, facts in sorted(ctx.facts.items()):
        docs = ctx.documents(run_id)
        top_missing = _top_missing(facts)
        if top_missing:
            findings.append(_run_finding(ctx, run_id, facts, seen))
        native = docs.layout == "native"
        if not (native or top_missing):
            continue
        findings.extend(_branch_findings(ctx, run_id, facts, seen))
    return findings


def _evidence(
    last: int | None,
    idle: float | None,
    facts: RunFacts,
    nodes: list[str],
    state: object,
    *,
    final: object,
) -> dict[str, object]:
    """A missing_final finding's evidence, the same keys for a run and a branch (FINDINGS.md):
    ``final`` is the scope's final.json document, None when there is none."""
    return {
        "last_progress_at": iso(last),
        "idle_s": idle,
        "owner_pid": facts.get("owner_pid"),
        "owner_alive": facts.get("owner_alive"),
        "open_attempts": nodes,
        "state": state,
        "final_json_present": final is not None,
    }


def _run_finding(ctx: Context, run_id: str, facts: RunFacts, seen: _Progress) -> Finding:
    """The run itself stalled or orphaned without a final.json: orphaned is critical and
    terminalized by repair; stalled is an error for a human to look at."""
    docs = ctx.documents(run_id)
    state = facts.get("_state")
    pid, alive = facts.get("owner_pid"), facts.get("owner_alive")
    elsewhere = docs.owner_elsewhere()
    last = seen.top_progress.get(run_id)
    idle = _idle(ctx.config.now, last)
    nodes = seen.top_open.get(run_id, [])
    where = f" with {more(nodes, 3)} still open" if nodes else ""
    said = _gave_up(docs.run_out_tail) if last is None else None
    gone, writer = _superseded(docs)
    no_final, end = _no_final(docs, gone, writer)
    # A final.json that records no end (torn, not an object) is never overwritten: no
    # terminalize is offered that `repair --apply` would refuse; the finding says what to do.
    fix = "terminalize" if end.startswith("terminalize") else None
    if state == "orphaned" and said is not None:
        severity, repair = Severity.CRITICAL, fix
        summary = (
            f"{no_final} and its {_owner(pid, alive, elsewhere)}: Kilroy gave up before "
            f"its first event, its run.out ending with {said!r}; fix that and start the run "
            f"again, and {end.replace(' it ', ' this one ', 1)}"
        )
    elif state == "orphaned":
        severity, repair = Severity.CRITICAL, fix
        summary = (
            f"{no_final} and its {_owner(pid, alive, elsewhere)}: nothing has "
            f"progressed since {_since(last)}{where}, and it can never finish on its "
            f"own; {end}"
        )
    elif facts.get("owner_stopped"):
        severity, repair = Severity.ERROR, None
        summary = (
            f"{no_final} and its owner pid {pid} is stopped (state T: SIGSTOP, a suspended "
            f"job or a debugger), so it makes no progress{where} (the last at {_since(last)}) "
            f"and will not until it is continued; `kill -CONT {pid}` lets it go on (it is "
            "alive: do not terminalize or resume it)"
        )
    else:
        severity, repair = Severity.ERROR, None
        summary = (
            f"{no_final} and made no progress for {_span(idle)}{where} "
            f"while its {_owner(pid, alive)}; {_stop_how(docs, alive)}"
        )
    disk, full = _disk_note(docs, seen.last_words.get(run_id))
    if state == "orphaned":
        left, procs = _left_running(docs.path, facts.get("last_event_at"), seen)
        disk, full = disk + left, {**full, **procs}
    final = docs.final or gone or _linked_final(docs)  # a symlink is there, if unread
    evidence = _evidence(last, idle, facts, nodes, state, final=final)
    evidence.update(full)
    evidence.update(_run_extras(docs, facts, elsewhere, gone, no_events=last is None))
    return Finding(
        code="missing_final",
        severity=severity,
        summary=summary + disk,
        run_id=run_id,
        scope="",
        node_id=nodes[-1] if nodes else None,
        repair=repair,
        evidence=evidence,
    )


#: How to stop a live Kilroy owner so that it writes its own final.json: through Kilroy's own
#: stop, or, for a run a resume owns, by its signal (``kilroy attractor stop`` refuses such a
#: run: it reads run.pid, which the resume never rewrites, finds that engine gone and says
#: 'run state is "unknown" (expected "running"); refusing to stop').
_STOP_HOW = {
    False: (
        "stop it with `{}` (Kilroy's own stop: SIGTERM, SIGKILL after its grace, and a "
        "final.json it writes itself when the engine wrote none)"
    ),
    True: (
        "stop it with `{}` (the resume owning run.lock.json; Kilroy then writes final.json, "
        "'stopped by signal terminated'), not `kilroy attractor stop`, which refuses a run a "
        "resume owns: it reads run.pid, the engine the resume took over from"
    ),
}


def _stop_how(docs: RunDocuments, alive: bool | None) -> str:
    """What to do about a stalled run's owner: the command that stops a live Kilroy owner
    (:func:`stop_command`), else to inspect and stop it."""
    stop = stop_command(docs) if alive else None
    if stop is None:
        return "inspect the owner and stop it so that it terminalizes"
    return f"inspect the owner, then {_STOP_HOW[docs.owned_by_resume].format(stop)}"


def _stop_evidence(docs: RunDocuments, facts: RunFacts) -> dict[str, str]:
    """``stop_command`` for a run stalled with a live owner that is not stopped."""
    live = facts.get("owner_alive") is True and not facts.get("owner_stopped")
    stop = stop_command(docs) if live and facts.get("_state") == "stalled" else None
    return {"stop_command": stop} if stop is not None else {}


def stop_command(docs: RunDocuments) -> str | None:
    """The command that stops the live owner of a Kilroy run so that the run terminalizes,
    None for another layout or without an owner pid: ``kilroy attractor stop --logs-root
    DIR --force``, or ``kill -TERM PID`` for a run ``kilroy attractor resume`` owns.

    >>> from pathlib import Path
    >>> docs = RunDocuments("r 1", Path("/runs/r 1"), "kilroy", {}, pid=4242)
    >>> stop_command(docs)
    "kilroy attractor stop --logs-root '/runs/r 1' --force"
    >>> docs.owned_by_resume = True
    >>> stop_command(docs)
    'kill -TERM 4242'
    >>> import os  # a name that is not UTF-8: quoted so that it pastes as its bytes
    >>> stop_command(RunDocuments("r", Path(os.fsdecode(b"/r\\xfe")), "kilroy", {}, pid=1))
    "kilroy attractor stop --logs-root $'/r\\\\xfe' --force"
    """
    if docs.layout != "kilroy" or docs.pid is None:
        return None
    if docs.owned_by_resume:
        return f"kill -TERM {int(docs.pid)}"
    # The path itself, quoted: a byte that is not UTF-8 is $'\xNN', which pastes as that byte
    return f"kilroy attractor stop --logs-root {shell_quote(str(docs.path))} --force"


def _no_final(docs: RunDocuments, gone: str | None, writer: str) -> tuple[str, str]:
    """How the summary says the run's end is not recorded, and what it says to do then."""
    end = "terminalize it (write final.json with status fail) so that nothing waits for it"
    if docs.final is not None and gone is None:  # a final.json that records no end
        return (
            f"The run's {docs.final.rel} records no end (it does not parse, or is no final record)",
            f"move {docs.final.rel} aside (the doctor never overwrites one) and `doctor "
            "repair` terminalizes it, so that nothing waits for it",
        )
    linked = _linked_final(docs)
    if linked and gone is None:  # never followed, and never written through: say so
        return (
            f"The run's {linked} is a symlink (the doctor follows none)",
            f"replace {linked} by the file, or move the link aside (the doctor never writes "
            "through a symlink) and `doctor repair` terminalizes it, so that nothing waits for it",
        )
    said = f" ({writer} {gone}, which a resume went on past, is set aside)" if gone else ""
    return f"The run has no final.json{said}", end


def _linked_final(docs: RunDocuments) -> str | None:
    """The run's top-level final.json when it is a symlink (its ``unreadable_artifact``)."""
    for u in docs.unreadable:
        if u.kind == "final" and u.detail.startswith(SYMLINK) and is_top_scope(dirname(u.rel)):
            return u.rel
    return None


def _superseded(docs: RunDocuments) -> tuple[str | None, str]:
    """The path of a top-level final.json a resume went past (:mod:`doctor._superseded`),
    None without one, and who wrote it ("doctor repair's", "Kilroy's")."""
    for name, sd in docs.scopes.items():
        if is_top_scope(name) and sd.superseded_final is not None:
            ours = repaired_final_ns(sd.superseded_final.value) is not None
            return sd.superseded_final.rel, "doctor repair's" if ours else "Kilroy's"
    return None, ""


def _gave_up(tail: tuple[str, ...]) -> str | None:
    """What a run that never wrote an event said last on its run.out: the last line that is
    not an indented continuation (Kilroy indents its ``hint:`` lines).

    >>> _gave_up(("no providers", "validation failed: x", "  hint: y"))
    'validation failed: x'
    >>> _gave_up(()) is None
    True
    """
    heads = [line for line in tail if not line[:1].isspace()] or list(tail)
    return heads[-1] if heads else None


def _branch_findings(ctx: Context, run_id: str, facts: RunFacts, seen: _Progress) -> list[Finding]:
    """Each branch that is not running, not finished as its parent recorded, and has no
    valid final.json (native runs always; Kilroy runs when the top level never ended)."""
    docs = ctx.documents(run_id)
    native = docs.layout == "native"
    findings: list[Finding] = []
    for branch in facts.get("branches", []):
        scope = branch["scope"]
        if branch.get("final_json") or branch.get("state") in _NOT_MISSING:
            continue
        last = seen.progress.get((run_id, scope))
        idle = _idle(ctx.config.now, last)
        nodes = seen.open_nodes.get((run_id, scope), [])
        where = f" with {more(nodes, 3)} still open" if nodes else ""
        why = (
            "every native branch must terminalize"
            if native
            else "Kilroy branches never write one, and the run never terminalized either, so "
            "the branch's outcome is recorded only in its event stream"
        )
        then = "read its outcome from its progress.ndjson before cleaning the run up"
        if not native and facts.get("owner_alive") is True:
            # The run's owner lives: the branch is paused with it, not abandoned.
            pid = facts.get("owner_pid")
            why = f"Kilroy branches never write one; the run's owner pid {pid} is alive" + (
                ", but stopped (state T)" if facts.get("owner_stopped") else ""
            )
            then = (
                f"`kill -CONT {pid}` lets it go on"
                if facts.get("owner_stopped")
                else "it may still go on: inspect the owner before cleaning anything up"
            )
        findings.append(
            Finding(
                code="missing_final",
                severity=Severity.ERROR,
                summary=(
                    f"Branch {scope} has no final.json and is {branch.get('state')}, with no "
                    f"progress since {_since(last)}{where} ({why}); {then}"
                ),
                run_id=run_id,
                scope=scope,
                node_id=nodes[-1] if nodes else None,
                evidence=_evidence(
                    last,
                    idle,
                    facts,
                    nodes,
                    branch.get("state"),
                    final=sd.final if (sd := docs.scopes.get(scope)) else None,
                ),
            )
        )
    return findings
