"""``swallowed_error``: failure reasons that carry no information.

The reason patterns live here and are shared with ``lost_failure_reason``:

* *swallowed*: an empty reason, a bare null value (``None``, ``null``, ``nil``, ``<nil>``,
  ``undefined``, ``NaN``, ``""``, ``{}``, ``[]``), or a short label with nothing after its colon
  but such a value (``Subprocess failed: None``, ``error:``, ``stderr=null``). This is what a
  stringified ``None`` exception field looks like (incident 02), and it says nothing at all.
* *bare exit code*: ``exit status 1``, ``exit code 2``, ``return code 1``. Kilroy tool nodes
  legitimately report exactly this (Go's ``exec.ExitError`` text) and keep the detail in the
  stage's own output files (``stderr.log``/``stdout.log`` of the node directory, or of its
  ``attempt_<K>/`` and ``visit_<N>/`` archives), or the scope's ``failure_dossier.json`` about
  the node quotes its stderr (``tool.stderr_excerpt``): when one of them has text, the failure
  is explained there and nothing is reported. A bare exit code whose stage wrote nothing is
  reported at ``info``; so is nothing for a conditional node that merely passes on the
  failure of the attempt before it (the same reason, another node).
* *placeholder* (``lost_failure_reason`` only): engine or validator filler that replaced the
  real reason: ``failure_reason must be non-empty when status="fail"``, ``max retries
  exceeded``, or a lone ``error`` / ``failed`` / ``unknown error``.
"""

from __future__ import annotations

from pathlib import Path

from doctor._detectors._context import Context, in_scope, more, needs
from doctor._model import Finding, Severity, plural
from doctor._stage_output import BARE_EXIT_RE, SWALLOWED_RE, stage_output

__all__ = [
    "BARE_EXIT_RE",
    "PLACEHOLDER_RE",
    "SWALLOWED_RE",
    "generic_sql",
    "swallowed_error",
    "swallowed_sql",
]

#: Filler written where the real reason was lost.
PLACEHOLDER_RE = (
    r"(?i)failure_reason must be non-empty.*|max retries exceeded|unknown(?: error)?|"
    r"error|errored|failed|failure|fail|status=fail"
)

#: How many distinct example strings a finding quotes.
EXAMPLES = 5


def _lit(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


def _match(column: str, pattern: str) -> str:
    return f"regexp_full_match(trim(coalesce({column}, '')), {_lit(pattern)})"


def swallowed_sql(column: str) -> str:
    """SQL predicate: ``column`` is a swallowed reason (NULL and empty included)."""
    return _match(column, SWALLOWED_RE)


def generic_sql(column: str) -> str:
    """SQL predicate: ``column`` is swallowed or a placeholder (``lost_failure_reason``).

    >>> "regexp_full_match" in generic_sql("failure_reason")
    True
    """
    return f"({swallowed_sql(column)} OR {_match(column, PLACEHOLDER_RE)})"


_SQL = f"""
WITH ordered AS (
    SELECT *, lag(node_id) OVER (PARTITION BY run_id, scope ORDER BY start_seq) AS prev_node,
           lag(failure_reason) OVER (PARTITION BY run_id, scope ORDER BY start_seq)
               AS prev_reason
    FROM attempts
),
failed AS (
    SELECT run_id, scope, node_id, failure_reason AS reason, end_seq,
           CASE WHEN {swallowed_sql("failure_reason")} THEN 'swallowed'
                WHEN {_match("failure_reason", BARE_EXIT_RE)}
                     -- a conditional node passing on the previous attempt's exit code
                     AND NOT coalesce(prev_node IS DISTINCT FROM node_id
                                      AND prev_reason = failure_reason, false)
                THEN 'bare_exit_code' END AS kind
    FROM ordered
    WHERE end_seq IS NOT NULL AND lower(status) IN ('fail', 'retry')
)
SELECT run_id, scope, node_id, kind, count(*) AS n,
       list(DISTINCT coalesce(reason, '<null>') ORDER BY coalesce(reason, '<null>')) AS examples,
       bool_or(reason IS NULL) AS has_null
FROM failed WHERE kind IS NOT NULL
GROUP BY ALL ORDER BY run_id, scope, node_id, kind
"""


@needs(failed_attempts=True)
def swallowed_error(ctx: Context) -> list[Finding]:
    """Failure reasons that carry no information (None, empty, a bare exit code)."""
    findings: list[Finding] = []
    for run_id, scope, node_id, kind, n, examples, has_null in ctx.tables.sql(_SQL):
        if kind == "bare_exit_code" and node_id is not None:
            run_path = Path(ctx.documents(run_id).path)
            if stage_output(run_path, scope, str(node_id)) is not None:
                continue  # the stage's own output says what failed
        # NULL (no failure_reason key at all) is quoted as null, not as a made-up string.
        shown: list[str | None] = [
            None if has_null and e == "<null>" else str(e) for e in examples[:EXAMPLES]
        ]
        where = in_scope(scope)
        quoted = more([repr(e) if e is not None else "null" for e in examples], EXAMPLES)
        if kind == "swallowed":
            severity = Severity.ERROR
            summary = (
                f"{node_id}{where} failed {plural(n, 'time')} with a reason that says nothing "
                f"({quoted}); the real error was swallowed, so fix the code that builds the "
                "reason and read the stage's logs for the cause"
            )
        else:
            severity = Severity.INFO
            summary = (
                f"{node_id}{where} failed {plural(n, 'time')} with only an exit code ({quoted}) "
                "and its stage wrote no output that says more; capture the command's stderr"
            )
        findings.append(
            Finding(
                code="swallowed_error",
                severity=severity,
                summary=summary,
                run_id=run_id,
                scope=scope,
                node_id=node_id,
                evidence={"occurrences": int(n), "examples": shown, "kind": kind},
            )
        )
    return findings
