"""One stage attempt: one supervised subprocess, its events, and the outcome it produced.

:func:`run_attempt` is the whole attempt: a fresh ``<node>/attempt-<n>/`` directory,
``stage_attempt_start``, the command (``cmd.json``; agents also get ``prompt.md`` and a
``status_contract`` event), the process, the status file ingestion
(``status_ingestion_decision``), the attempt's ``status.json`` and ``stage_attempt_end``.

The process runs in its own session and process group (``start_new_session=True``) with
stdin empty and stdout/stderr read by the supervising loop into ``stdout.log`` and
``stderr.log``, each capped (:class:`CappedLog`): output that never ends keeps its first
:data:`LOG_HEAD_BYTES` and its last :data:`LOG_TAIL_BYTES`, with one line in between saying
how many bytes were dropped. Right after it starts, ``process.json`` records its pid, group,
start time and mark (the reaper stops the group of a dead executor's stage with it, and the
processes that carry the mark). One loop
(:func:`run_process`) supervises it: it notices the exit, the timeout and cancellation, and it
writes the ``stage_heartbeat`` events while the process runs. Heartbeats therefore come from
the very loop that returns when the process is gone, and ``stage_attempt_end`` is written only
after it returned: no heartbeat can follow the end of its attempt, by construction. On timeout
or cancellation the whole group gets SIGTERM and, after the grace period, SIGKILL. When the
leader exits, the rest of its group is killed *before* the leader is reaped (``waitid`` with
``WNOWAIT``), so the group id cannot have been reused by another process. When the loop
itself fails (a heartbeat or a log write the runs root refused), the group is killed before
the error goes on. Processes that left the group carry the attempt's mark
(:mod:`executor._stage_mark`) and are killed at the end too: no stage outlives its attempt.

A failed attempt's reason always names the exit status or the signal, the command, and the
tail of stderr (:meth:`ProcessResult.describe`); it is never empty and never ``None``.
Cancellation and timeouts decide first, then a status file the stage wrote (see
:func:`executor._artifacts.ingest_status`), then the exit status.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import select
import shlex
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from executor import _events as ev
from executor._artifacts import (
    FAILED,
    AttemptDir,
    Outcome,
    RunWriter,
    atomic_write_json,
    clear_status_files,
    ingest_status,
)
from executor._config import ExecutorConfig
from executor._graph import Node
from executor._stage_mark import STAGE_MARK, kill_marked, new_mark
from rundoctor.liveness import boot_id, start_ticks

__all__ = [
    "EX_TEMPFAIL",
    "MISSING_STATUS",
    "OUT_OF_FDS",
    "Beat",
    "ProcessResult",
    "classify",
    "fd_limit",
    "out_of_fds",
    "run_attempt",
    "run_process",
    "stage_env",
]


#: Exit status 75 (``EX_TEMPFAIL``) says "try again later": a transient failure.
EX_TEMPFAIL = 75
#: Why an agent that exited 0 without writing a status file failed (Kilroy's words).
MISSING_STATUS = "missing status.json (auto_status=false)"
#: A process out of file descriptors (its ``ulimit -n``, or the host's table): a stage that
#: cannot start for it is not the stage's failure, and the run ends with the error
#: (:func:`run_process` raises it), which a worker takes for its own, not the ticket's.
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE})


def out_of_fds(exc: BaseException) -> OSError | None:
    """The EMFILE or ENFILE error that ``exc`` is, or was raised from; else None.

    >>> out_of_fds(RuntimeError("x")) is None
    True
    >>> try:
    ...     try:
    ...         raise OSError(errno.EMFILE, "Too many open files")
    ...     except OSError as e:
    ...         raise ValueError("cannot read") from e
    ... except ValueError as e:
    ...     str(out_of_fds(e))
    '[Errno 24] Too many open files'
    """
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in OUT_OF_FDS):
        cause = cause.__cause__
    return cause if isinstance(cause, OSError) else None


def fd_limit() -> str:
    """This process's limit of open files, as the advice to raise it names it.

    >>> fd_limit().endswith("open files, `ulimit -n`")
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = "no limit of" if soft == resource.RLIM_INFINITY else f"a limit of {soft}"
    return f"{limit} open files, `ulimit -n`"


_TRANSIENT = re.compile(
    r"timed out|timeout|deadline exceeded|connection refused|connection reset|could not resolve"
    r"|name resolution|network is unreachable|no route to host|broken pipe|temporary failure"
    r"|temporarily unavailable|try again|rate limit|too many requests|service unavailable"
    r"|bad gateway|econnrefused|econnreset|dial tcp|transport is closing|stream disconnected"
    r"|cross-device link|os error 18|\b(?:http|status|code)[ :=]*50[234]\b"
)
_BUDGET = re.compile(
    r"turn limit|max[_ ]turns|token limit|context (?:length|window) exceeded"
    r"|budget exhausted"
)
_STRUCTURAL = re.compile(r"scope[_ ]violation")
_HINTS = {
    "transient": "transient_infra",
    "transient_infra": "transient_infra",
    "transient-infra": "transient_infra",
    "retryable": "transient_infra",
    "canceled": "canceled",
    "cancelled": "canceled",
    "budget": "budget_exhausted",
    "budget_exhausted": "budget_exhausted",
    "compilation_loop": "compilation_loop",
    "structural": "structural",
    "write_scope_violation": "structural",
}


def classify(text: str, hint: str = "") -> str:
    """The failure class: a stage's own hint wins, else hints in the text, else deterministic.

    >>> classify("exit status 1; stderr tail: connection refused"), classify("exit status 1")
    ('transient_infra', 'deterministic')
    >>> classify("anything", "Transient")
    'transient_infra'
    """
    if hint.strip():
        return _HINTS.get(hint.strip().lower(), "deterministic")
    low = text.lower()
    if _TRANSIENT.search(low):
        return "transient_infra"
    if _BUDGET.search(low):
        return "budget_exhausted"
    return "structural" if _STRUCTURAL.search(low) else "deterministic"


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat's measurements."""

    elapsed_s: float
    stdout_bytes: int
    stderr_bytes: int
    since_last_output_s: float


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How the process ended. ``exit_code`` is ``None`` when a signal ended it."""

    command: str
    exit_code: int | None
    signal: str | None
    duration_s: float
    stderr_tail: str
    timed_out: bool = False
    canceled: bool = False
    spawn_error: str = ""
    timeout_s: float = 0.0
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.canceled or self.spawn_error)

    def cause(self) -> str:
        """Why it ended, with the exit status or the signal name.

        >>> ProcessResult("x", None, "SIGKILL", 1.0, "", timed_out=True, timeout_s=1).cause()
        'timed out after 1s (process group stopped); killed by signal SIGKILL'
        """
        if self.spawn_error:
            return f"could not start (no process, no exit status): {self.spawn_error}"
        end = (
            f"exit status {self.exit_code}"
            if self.signal is None
            else (f"killed by signal {self.signal}")
        )
        if self.timed_out:
            return f"timed out after {self.timeout_s:g}s (process group stopped); {end}"
        if self.canceled:
            return f"canceled (process group stopped); {end}"
        return end

    def describe(self, cause: str = "") -> str:
        """A failure reason: the cause, the command and the stderr tail; never empty."""
        head = f"{cause} ({self.cause()})" if cause else self.cause()
        return f"{head}; stderr tail: {self.stderr_tail or '(empty)'}; command: {self.command}"

    def signature_text(self) -> str:
        """What the breaker's signature is computed from: the cause and stderr, no command."""
        return f"{self.cause()}: {self.stderr_tail}"


def stage_env(base: Mapping[str, str] | None, values: Mapping[str, str]) -> dict[str, str]:
    """The stage's environment: ``base`` (the executor's own when ``None``) without stale
    ``KILROY_*`` and ``STAGE_STATUS_PATH`` keys, plus ``values``."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith("KILROY_") or k == "STAGE_STATUS_PATH"]:
        del env[key]
    env.update(values)
    return env


def _tail(path: Path, chars: int) -> str:
    # Never a plain open: the stage may have left a FIFO as its stderr.log (its
    # KILROY_STAGE_LOGS_DIR), and the run waited on it for good, SIGTERM or not.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "(stderr.log unreadable: not a regular file)"
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4 * chars))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(stderr.log unreadable: {exc.strerror})"
    lines = [" ".join(line.split()) for line in text.splitlines()]
    joined = " | ".join(line for line in lines if line)
    return joined if len(joined) <= chars else "…" + joined[-chars:]


#: What a stage's log keeps of output that never ends: its first and its last bytes.
LOG_HEAD_BYTES = 1 << 20
LOG_TAIL_BYTES = 4 << 20


class CappedLog:
    """A log file that keeps the first ``head`` and the last ``tail`` bytes written to it.

    While no more than ``head + tail`` bytes came, the file holds them all. Past that, it
    holds the head, one line naming the number of bytes dropped, then the tail (rewritten
    by :meth:`flush`, which the supervising loop calls at each heartbeat and at the end).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "out.log"
    >>> with CappedLog(p, head=4, tail=3) as log:
    ...     log.write(b"0123456789")
    >>> p.read_bytes()
    b'0123\\n[rundoctor: 3 bytes of output dropped here; the first 4 and the last 3 are kept]\\n789'
    >>> log.received, log.dropped
    (10, 3)
    """

    def __init__(self, path: Path, *, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES):
        self.path, self.head, self.tail = path, head, tail
        self.received = 0
        self.dropped = 0
        self._head = 0  # bytes of the head written
        self._end = bytearray()  # what came after the head, at most ``tail`` bytes once cut
        self._file = path.open("wb")

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        self.received += len(data)
        room = self.head - self._head
        if room > 0:
            self._file.seek(self._head)
            self._file.write(data[:room])
            self._head += len(data[:room])
            data = data[room:]
        if not data:
            return
        self._end += data
        if self.dropped or len(self._end) > self.tail:
            cut = max(0, len(self._end) - self.tail)
            del self._end[:cut]
            self.dropped += cut

    def flush(self) -> None:
        """Put the tail (and the dropped-bytes line) after the head in the file."""
        self._file.seek(self._head)
        if self.dropped:
            self._file.write(
                f"\n[rundoctor: {self.dropped} bytes of output dropped here; the first "
                f"{self.head} and the last {self.tail} are kept]\n".encode()
            )
        self._file.write(self._end)
        self._file.truncate()
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.flush()
            finally:  # a runs root that refuses the flush (ENOSPC) must not leak the file
                self._file.close()


def _drain(pipes: dict[int, CappedLog], wait_s: float) -> None:
    """Move what the pipes hold into their logs (waiting up to ``wait_s`` for any); a pipe
    at its end is closed and forgotten."""
    if not pipes:
        time.sleep(wait_s)
        return
    ready, _, _ = select.select(list(pipes), [], [], wait_s)
    for fd in ready:
        for _ in range(16):  # at most 16 MiB per pipe per turn: the loop must keep beating
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                os.close(fd)
                del pipes[fd]
                break
            pipes[fd].write(chunk)


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the leader a zombie: its pid (and so the group id) stays reserved.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_process(
    argv: tuple[str, ...],
    *,
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    attempt_dir: Path,
    timeout_s: float,
    grace_s: float,
    heartbeat_s: float,
    canceled: Callable[[], bool],
    on_heartbeat: Callable[[Beat], None],
    tail_chars: int = 600,
    head_bytes: int = LOG_HEAD_BYTES,
    tail_bytes: int = LOG_TAIL_BYTES,
) -> ProcessResult:
    """Run ``argv`` to its end under supervision; see the module docstring. Each log keeps
    its first ``head_bytes`` and its last ``tail_bytes`` (:class:`CappedLog`).

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> r = run_process(("sh", "-c", "echo oops >&2; exit 3"), command="fail", cwd=d, env={},
    ...                 attempt_dir=d, timeout_s=5, grace_s=1, heartbeat_s=1,
    ...                 canceled=lambda: False, on_heartbeat=lambda b: None)
    >>> r.describe()
    'exit status 3; stderr tail: oops; command: fail'
    """
    t0 = time.monotonic()
    mark = new_mark()
    out = CappedLog(attempt_dir / "stdout.log", head=head_bytes, tail=tail_bytes)
    err = CappedLog(attempt_dir / "stderr.log", head=head_bytes, tail=tail_bytes)
    with out, err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**env, STAGE_MARK: mark},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno in OUT_OF_FDS:
                raise  # this process's limit, not the stage's fault: the run ends with it
            err.write(f"{exc}\n".encode())
            err.close()
            tail = _tail(attempt_dir / "stderr.log", tail_chars)
            spent = round(time.monotonic() - t0, 6)
            return ProcessResult(
                command, None, None, spent, tail, spawn_error=str(exc), timeout_s=timeout_s
            )
        pipes = _pipes(proc, out, err)
        try:
            _record(proc, attempt_dir, command, mark)
            rc, stop = _supervise(
                proc,
                pipes,
                (out, err),
                t0,
                timeout_s=timeout_s,
                grace_s=grace_s,
                heartbeat_s=heartbeat_s,
                canceled=canceled,
                on_heartbeat=on_heartbeat,
            )
        except BaseException:
            _stop_unreaped(proc)
            raise
        finally:
            for fd in list(pipes):
                os.close(fd)
            kill_marked((mark,))  # what left the group: nothing outlives its attempt
    sig = signal.Signals(-rc).name if rc < 0 else None
    return ProcessResult(
        command,
        rc if rc >= 0 else None,
        sig,
        round(time.monotonic() - t0, 6),
        _tail(attempt_dir / "stderr.log", tail_chars),
        timed_out=stop == "timeout",
        canceled=stop == "cancel",
        timeout_s=timeout_s,
        pid=proc.pid,
    )


def _pipes(proc: subprocess.Popen[bytes], out: CappedLog, err: CappedLog) -> dict[int, CappedLog]:
    """The process's stdout and stderr as non-blocking descriptors, each with its log."""
    assert proc.stdout is not None and proc.stderr is not None
    pipes: dict[int, CappedLog] = {}
    for stream, log in ((proc.stdout, out), (proc.stderr, err)):
        fd = os.dup(stream.fileno())
        stream.close()
        os.set_blocking(fd, False)
        pipes[fd] = log
    return pipes


def _record(proc: subprocess.Popen[bytes], attempt_dir: Path, command: str, mark: str) -> None:
    """Write ``process.json``: who to stop if this executor dies (the reaper kills the group
    while its leader runs, and every process that carries the mark). No fsync: the file only
    matters while this host is up (a crashed host has no processes); ``boot_id`` says which
    boot of which host that is, so that no reaper after a reboot, or on another host sharing
    the runs root, takes the pid and start time for one of its own processes."""
    process = {"pid": proc.pid, "pgid": proc.pid, "pid_start_time": start_ticks(proc.pid)}
    doc = {**process, "boot_id": boot_id(), "mark": mark, "command": command}
    atomic_write_json(attempt_dir / "process.json", doc, fsync=False)


def _stop_unreaped(proc: subprocess.Popen[bytes]) -> None:
    """Kill the stage's process group after its supervising loop failed: a heartbeat or a log
    write the runs root refused (ENOSPC, EROFS) raises out of the loop, and the run ends with
    that error, its ticket given back; a stage left running would go on beside the ticket's
    next execution. Only while the leader is not reaped: until then its pid, the group's id,
    cannot have been reused."""
    if proc.returncode is None:
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _supervise(
    proc: subprocess.Popen[bytes],
    pipes: dict[int, CappedLog],
    logs: tuple[CappedLog, CappedLog],
    t0: float,
    *,
    timeout_s: float,
    grace_s: float,
    heartbeat_s: float,
    canceled: Callable[[], bool],
    on_heartbeat: Callable[[Beat], None],
) -> tuple[int, str | None]:
    """The one loop of :func:`run_process`: output, timeout, cancellation, heartbeats.
    ``logs`` are the stdout and stderr logs ``pipes`` drain into."""
    out, err = logs
    pgid = proc.pid  # the session leader's pid is its group id
    deadline, next_beat = t0 + timeout_s, t0 + heartbeat_s
    stop: str | None = None
    term_at = 0.0
    killed = False
    last_sizes, last_output = (0, 0), t0
    delay = 0.0005
    while not _exited(proc.pid):
        now = time.monotonic()
        if stop is None and (now >= deadline or canceled()):
            stop = "timeout" if now >= deadline else "cancel"
            _killpg(pgid, signal.SIGTERM)
            term_at = now
        elif stop is not None and not killed and now >= term_at + grace_s:
            _killpg(pgid, signal.SIGKILL)
            killed = True
        if now >= next_beat:
            out.flush()
            err.flush()
            sizes = (out.received, err.received)
            if sizes != last_sizes:
                last_sizes, last_output = sizes, now
            on_heartbeat(Beat(round(now - t0, 3), *sizes, round(now - last_output, 3)))
            while next_beat <= now:
                next_beat += heartbeat_s
        _drain(pipes, delay)
        delay = min(delay * 2, 0.02)
    _killpg(pgid, signal.SIGKILL)  # leftovers of the group, before the leader is reaped
    rc = proc.wait()
    # What the group wrote before it died is in the pipes; a process that left the group and
    # holds a pipe open is not waited for.
    for _ in range(64):
        before = len(pipes), out.received, err.received
        _drain(pipes, 0.0)
        if not pipes or before == (len(pipes), out.received, err.received):
            break
    return rc, stop


def _contract(prompt: str, status_path: str, fallback: str) -> str:
    return (
        f"{prompt}\n\n---\nExecution status contract: when you finish, write a JSON object "
        'such as {"status": "success"} or {"status": "fail", "failure_reason": "…"} to the '
        f"absolute path in $STAGE_STATUS_PATH ({status_path}); if you cannot, write it to "
        f"{fallback}.\n"
    )


def _decide(result: ProcessResult, report: Outcome | None, missing: str | None = None) -> Outcome:
    """The attempt's outcome: cancellation and timeouts first, then the status file, then the
    exit status. Failure reasons always carry the exit status or signal, command and stderr.
    ``missing`` (the ingestion's diagnostic) says that a status file was required and none was
    found: exit status 0 is then no success (Kilroy's ``auto_status=false``)."""
    details = {
        "pid": result.pid,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "duration_s": result.duration_s,
        "timed_out": result.timed_out,
    }
    sig = result.signature_text()
    if result.canceled:
        return Outcome(
            "fail", result.describe(), "canceled", failure_signature=sig, details=details
        )
    if result.timed_out or result.spawn_error:
        cls = "transient_infra" if result.timed_out else "deterministic"
        return Outcome("fail", result.describe(), cls, failure_signature=sig, details=details)
    if report is not None:
        if report.status not in FAILED:
            return replace(report, failure_reason="", failure_class="", details=details)
        said = (
            report.failure_reason or f"the stage reported status {report.status!r} without a reason"
        )
        hint = report.failure_class or ("transient" if report.status == "retry" else "")
        return replace(
            report,
            failure_reason=result.describe(said),
            failure_class=classify(said, hint),
            failure_signature=report.failure_signature or said,
            details=details,
        )
    if result.ok and missing is not None:
        why = "; ".join(filter(None, (MISSING_STATUS, missing)))
        return Outcome(
            "fail", result.describe(why), "deterministic", failure_signature=why, details=details
        )
    if result.ok:
        return Outcome("success", notes="exit status 0", details=details)
    cls = "transient_infra" if result.exit_code == EX_TEMPFAIL else classify(result.stderr_tail)
    return Outcome("fail", result.describe(), cls, failure_signature=sig, details=details)


def _must_report(node: Node) -> bool:
    """Must the stage write a status file for exit status 0 to count as success? Agents must,
    unless their node says ``auto_status=true``; tools are judged by their exit status."""
    return node.kind == "agent" and not node.auto_status


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt being run: where it writes and what it is told."""

    w: RunWriter
    node: Node
    adir: AttemptDir
    attempt: int
    max_attempts: int
    worktree: Path

    @property
    def status_path(self) -> str:
        return str(self.adir.path / "status.json")

    @property
    def fallback(self) -> str:
        return str(self.worktree / ".ai" / "status.json")


def run_attempt(
    w: RunWriter,
    node: Node,
    *,
    attempt: int,
    max_attempts: int,
    worktree: Path,
    config: ExecutorConfig,
    canceled: Callable[[], bool],
    predecessor: tuple[str, str],
) -> tuple[Outcome, float]:
    """Run one attempt of a tool or agent node; its outcome and its process's seconds.

    The phases: open the attempt (its directory, ``stage_attempt_start``), build the command
    and its environment (``cmd.json``), run the process with heartbeats, then ingest the
    status file and record the outcome (``status.json``, ``stage_attempt_end``).
    """
    adir = w.new_attempt(node.id)
    start = ev.StageAttemptStart(
        node_id=node.id, attempt=attempt, max=max_attempts, handler=node.kind, attempt_dir=adir.rel
    )
    w.emit(start, attempt=adir)
    clear_status_files(worktree, w.run_id)
    a = _Attempt(w, node, adir, attempt, max_attempts, worktree)
    values = _stage_values(a, predecessor)
    argv, command = _command(a, config)
    timeout = node.timeout_s or config.stage_timeout_s
    cmd = {"node_id": node.id, "attempt": attempt, "argv": list(argv), "command": command}
    w.write_json(
        f"{adir.rel}/cmd.json", {**cmd, "cwd": str(worktree), "timeout_s": timeout, "env": values}
    )

    def beat(b: Beat) -> None:
        heartbeat = ev.StageHeartbeat(
            node_id=node.id,
            attempt=attempt,
            elapsed_s=b.elapsed_s,
            stdout_bytes=b.stdout_bytes,
            stderr_bytes=b.stderr_bytes,
            since_last_output_s=b.since_last_output_s,
        )
        w.emit(heartbeat, attempt=adir)

    result = run_process(
        argv,
        command=command[:300],
        cwd=worktree,
        env=stage_env(None if config.env is None else dict(config.env), values),
        attempt_dir=adir.path,
        timeout_s=timeout,
        grace_s=config.stage_grace_s,
        heartbeat_s=config.heartbeat_interval_s,
        canceled=canceled,
        on_heartbeat=beat,
        tail_chars=config.stderr_tail_chars,
    )
    # run_process has returned: the process group is gone and no heartbeat can follow.
    return _conclude(a, result), result.duration_s


def _stage_values(a: _Attempt, predecessor: tuple[str, str]) -> dict[str, str]:
    """The variables a stage is told (Kilroy's names): where to write its status, who ran
    before it, which attempt and lease epoch this is."""
    w, worktree = a.w, a.worktree
    return {
        "STAGE_STATUS_PATH": a.status_path,
        "KILROY_STAGE_STATUS_PATH": a.status_path,
        "KILROY_STAGE_STATUS_FALLBACK_PATH": a.fallback,
        "KILROY_RUN_ID": w.run_id,
        "KILROY_NODE_ID": a.node.id,
        "KILROY_LOGS_ROOT": str(w.path),
        "KILROY_STAGE_LOGS_DIR": str(a.adir.path),
        "KILROY_WORKTREE_DIR": str(worktree),
        "KILROY_DATA_DIR": str(worktree / ".kilroy"),
        "KILROY_PREDECESSOR_NODE": predecessor[0],
        "KILROY_PREDECESSOR_OUTCOME": predecessor[1],
        "KILROY_STAGE_ATTEMPT": str(a.attempt),
        "KILROY_LEASE_EPOCH": str(w.epoch),
    }


def _command(a: _Attempt, config: ExecutorConfig) -> tuple[tuple[str, ...], str]:
    """``(argv, command line)``: the shell running a tool node's command, or the agent CLI
    with the node's prompt (``prompt.md``, the status contract appended) for an agent node."""
    node, w = a.node, a.w
    if node.kind != "agent":
        return (*config.shell, node.tool_command), node.tool_command
    prompt = a.adir.path / "prompt.md"
    prompt.write_text(_contract(node.prompt, a.status_path, a.fallback), encoding="utf-8")
    fields = {
        "prompt_file": str(prompt),
        "node_id": node.id,
        "run_id": w.run_id,
        "worktree": str(a.worktree),
        "status_path": a.status_path,
        "attempt_dir": str(a.adir.path),
    }
    argv = tuple(part.format_map(fields) for part in config.agent_command)
    contract = ev.StatusContract(
        node_id=node.id,
        attempt=a.attempt,
        status_path=a.status_path,
        status_fallback_path=a.fallback,
    )
    w.emit(contract, attempt=a.adir)
    return argv, shlex.join(argv)


def _conclude(a: _Attempt, result: ProcessResult) -> Outcome:
    """Ingest the stage's status file, decide the outcome, write it (``status.json``) and end
    the attempt (``stage_attempt_end``)."""
    node, w, adir = a.node, a.w, a.adir
    ing = ingest_status(adir.path, a.worktree, w.run_id)
    # An agent must report (unless ``auto_status=true``): exit status 0 alone proves no work.
    missing = ing.diagnostic if ing.outcome is None and _must_report(node) else None
    decided_by = "status_file" if ing.outcome else "exit_code" if missing is None else "contract"
    decision = ev.StatusIngestionDecision(
        node_id=node.id,
        attempt=a.attempt,
        source=ing.source,
        copied=ing.source not in ("", "canonical"),
        path=ing.path,
        decided_by=decided_by,
        diagnostic=ing.diagnostic,
    )
    w.emit(decision, attempt=adir)
    outcome = _decide(result, ing.outcome, missing)
    w.attempt_status(adir, outcome.to_json())
    end = ev.StageAttemptEnd(
        node_id=node.id,
        attempt=a.attempt,
        max=a.max_attempts,
        status=outcome.status,
        failure_reason=outcome.failure_reason,
        failure_class=outcome.failure_class,
        attempt_dir=adir.rel,
        duration_s=result.duration_s,
        exit_code=result.exit_code,
        signal=result.signal,
        cost_usd=outcome.cost_usd,
    )
    w.emit(end, attempt=adir)
    return outcome
