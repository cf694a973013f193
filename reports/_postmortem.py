"""Build a :class:`reports.PostmortemContext` from one :class:`doctor.Diagnosis`.

Only the diagnosis is read: its facts (including the report extras ``attempt_spans``,
``failure_reasons`` and the branches' ``started_at``) and its findings' evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from doctor import (
    STOPPED_OWNER_HINT,
    Diagnosis,
    Finding,
    Severity,
    continue_command,
    resumed_past_lines,
    terminal_detail_lines,
)
from reports._context import (
    TOP,
    AttemptRow,
    EdgeRow,
    EventCount,
    FanoutView,
    GanttSection,
    GanttTask,
    Headline,
    Layer0,
    MechanismView,
    NodeCount,
    PlanView,
    PostmortemContext,
    ReasonRow,
    RunFactsView,
    ScopeView,
    Timeline,
    TimelineRow,
    ValidationRow,
    as_float,
    as_int,
    as_text,
    duration,
    finding_view,
    gantt_time,
    is_top,
    iso_plus,
    opt_text,
    parse_time,
    scope_name,
    severity_counts,
)
from reports._escape import Text, md
from reports._plan import MECHANISMS, PLAN, PRIORITIES, plan_item
from rundoctor.terminal import shell_quote
from rundoctor.words import plural

__all__ = ["postmortem_context"]

#: Branches beyond this many get no gantt section (the table still lists them).
MAX_GANTT_BRANCHES = 12
#: Distinct failure reasons listed per scope.
MAX_REASONS = 10


def _first(findings: Sequence[Finding], code: str, scope: str = "") -> Finding | None:
    return next((f for f in findings if f.code == code and f.scope == scope), None)


def _fanout_nodes(facts: Mapping[str, Any], findings: Sequence[Finding]) -> list[str]:
    """Fan-out node names, from the branches' scopes (``…/parallel/<node>/…``) and findings."""
    names: list[str] = []
    for f in findings:
        node = f.evidence.get("fanout_node") if f.code == "unjoined_fanout" else None
        if isinstance(node, str) and node not in names:
            names.append(node)
    for branch in facts.get("branches") or []:
        parts = str(branch.get("scope", "")).split("/")
        for i, part in enumerate(parts[:-1]):
            if part == "parallel" and parts[i + 1] not in names:
                names.append(parts[i + 1])
    return names


def _fanout_view(facts: Mapping[str, Any], findings: Sequence[Finding]) -> FanoutView | None:
    names = _fanout_nodes(facts, findings)
    phases = [p for p in facts.get("phases") or [] if p.get("node") in names]
    if not phases:
        return None
    phase = min(phases, key=lambda p: str(p.get("first_start")))
    wall, share, run_wall = as_float(phase.get("wall_s")), as_float(phase.get("share")), None
    run_wall = as_float(facts.get("wall_s"))
    return FanoutView(
        node=as_text(phase.get("node")),
        started_at=as_text(phase.get("first_start")),
        wall_s=wall or 0.0,
        share=share,
        pre_wall_s=round(run_wall - wall, 3) if run_wall is not None and wall is not None else None,
        pre_share=round(1 - share, 4) if share is not None else None,
    )


def _facts_view(d: Diagnosis) -> RunFactsView:
    facts = d.facts
    telemetry = _first(d.findings, "telemetry_divergence")
    pid = facts.get("owner_pid")
    alive = facts.get("owner_alive")
    # The sentences the console says about these facts (doctor._notes), not new ones.
    stopped = alive is True and bool(facts.get("owner_stopped"))
    return RunFactsView(
        started_at=opt_text(facts.get("started_at")),
        last_event_at=opt_text(facts.get("last_event_at")),
        last_progress_at=opt_text(facts.get("last_progress_at")),
        wall_s=as_float(facts.get("wall_s")),
        events=as_int(facts.get("events")),
        attempts_started=as_int(facts.get("attempts_started")),
        attempts_ended=as_int(facts.get("attempts_ended")),
        final_json=bool(facts.get("final_json")),
        owner_pid=pid if isinstance(pid, int) else None,
        owner_alive=alive if isinstance(alive, bool) else None,
        current_node=opt_text(facts.get("current_node")),
        stall_timeout_s=as_float(facts.get("stall_timeout_s")),
        cost_usd=as_float(facts.get("cost_usd")),
        branches=len(facts.get("branches") or []),
        fanout=_fanout_view(facts, d.findings),
        live_node=opt_text(telemetry.evidence.get("live_node")) if telemetry else None,
        checkpoint_node=opt_text(telemetry.evidence.get("checkpoint_node")) if telemetry else None,
        terminal_reason=opt_text(facts.get("terminal_reason")),
        stopped_by=opt_text(facts.get("stopped_by")),
        terminal_detail=tuple(Text(line) for line in terminal_detail_lines(facts)),
        owner_stopped=stopped,
        stopped_hint=STOPPED_OWNER_HINT if stopped else None,
        continue_command=continue_command(pid) if stopped and isinstance(pid, int) else None,
        resumed_past=tuple(Text(line) for line in resumed_past_lines(facts)),
    )


def _headlines(findings: Sequence[Finding]) -> tuple[Headline, ...]:
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        if f.severity >= Severity.ERROR:
            by_code.setdefault(f.code, []).append(f)
    out = []
    for code, group in by_code.items():
        # Findings come most severe first; prefer the top level's among the worst.
        worst = max(f.severity for f in group)
        pick = next(
            (f for f in group if f.severity == worst and is_top(f.scope)),
            next(f for f in group if f.severity == worst),
        )
        out.append(
            Headline(
                code=Text(code),
                severity=worst.label,
                count=len(group),
                scopes=len({f.scope for f in group}),
                summary=Text(pick.summary),
            )
        )
    return tuple(sorted(out, key=lambda h: -Severity.parse(h.severity)))


def _stamp(status_open: bool, crit: bool) -> str:
    if status_open:
        return "crit, active" if crit else "active"
    return "crit, done" if crit else "done"


def _timeline(d: Diagnosis, facts: RunFactsView) -> Timeline:
    """The run's Gantt chart (phases, the top scope's attempts, each branch's, late heartbeats)
    and its table of moments."""
    gantt = _Gantt(d)
    branches = list(d.facts.get("branches") or [])
    sections = [*gantt.phases(), *gantt.top_attempts()]
    for branch in branches[:MAX_GANTT_BRANCHES]:
        sections += gantt.branch(branch)
    if sections:
        sections += gantt.top_heartbeats()
    return Timeline(
        title=Text(f"Run {d.run_id} (UTC)"),
        sections=tuple(sections),
        branches_left_out=max(len(branches) - MAX_GANTT_BRANCHES, 0),
        rows=_timeline_rows(d, facts),
    )


class _Gantt:
    """Builds the sections of a run's Gantt chart; task ids count up across sections."""

    def __init__(self, d: Diagnosis) -> None:
        f = d.facts
        self.d = d
        self.last_event = f.get("last_event_at")
        self.terminal = d.state in ("succeeded", "failed", "canceled")
        self.counter = iter(range(1, 1_000_000))
        self.failing = {
            (str(r.get("scope", "")), str(r.get("node_id")))
            for r in f.get("failure_reasons") or []
            if as_int(r.get("count")) > 0
        }
        self.spans: dict[str, list[Mapping[str, Any]]] = {}
        for span in f.get("attempt_spans") or []:
            self.spans.setdefault(str(span.get("scope", "")), []).append(span)

    def task(
        self, label: str, start: object, end: object, *, is_open: bool, crit: bool
    ) -> GanttTask:
        s, e = gantt_time(start), gantt_time(end)
        return GanttTask(
            id=f"t{next(self.counter)}",
            label=Text(label),
            status=_stamp(is_open, crit),
            start=s or "",
            end=e or s or "",
        )

    def phases(self) -> list[GanttSection]:
        """The phases (one task per node, first start to last end)."""
        tasks = tuple(
            self.task(
                str(p.get("node")),
                p.get("first_start"),
                p.get("last_end"),
                is_open=not self.terminal and p.get("last_end") == self.last_event,
                crit=False,
            )
            for p in self.d.facts.get("phases") or []
            if gantt_time(p.get("first_start"))
        )
        return [GanttSection(Text("Phases"), tasks)] if tasks else []

    def attempts(self, scope: str, scope_end: object) -> list[GanttTask]:
        """One task per node of ``scope`` (its attempts, first start to last end)."""
        out = []
        for span in self.spans.get(scope, []):
            if not gantt_time(span.get("first_start")):
                continue
            is_open = as_int(span.get("open")) > 0
            end = scope_end if is_open or not span.get("last_end") else span.get("last_end")
            n = as_int(span.get("attempts"))
            out.append(
                self.task(
                    f"{span.get('node_id')} ×{n}",
                    span.get("first_start"),
                    end,
                    is_open=is_open and not self.terminal,
                    crit=(scope, str(span.get("node_id"))) in self.failing,
                )
            )
        return out

    def top_attempts(self) -> list[GanttSection]:
        tasks = [
            t
            for scope in sorted(self.spans)
            if is_top(scope)
            for t in self.attempts(scope, self.last_event)
        ]
        return [GanttSection(Text(f"Attempts, {TOP}"), tuple(tasks))] if tasks else []

    def branch(self, branch: Mapping[str, Any]) -> list[GanttSection]:
        """A branch's attempts, and its heartbeats after its last progress when stale."""
        scope = str(branch.get("scope", ""))
        tasks = self.attempts(scope, branch.get("last_progress_at") or self.last_event)
        late = self.late_heartbeats(_first(self.d.findings, "stale_heartbeat", scope))
        tasks += late
        return [GanttSection(Text(scope.rsplit("/", 1)[-1]), tuple(tasks))] if tasks else []

    def top_heartbeats(self) -> list[GanttSection]:
        late = self.late_heartbeats(_first(self.d.findings, "stale_heartbeat"), need_count=True)
        return [GanttSection(Text(f"Heartbeats, {TOP}"), tuple(late))] if late else []

    def late_heartbeats(
        self, stale: Finding | None, *, need_count: bool = False
    ) -> list[GanttTask]:
        """The span of a ``stale_heartbeat`` finding's heartbeats after the last progress."""
        if stale is None:
            return []
        since = stale.evidence.get("last_progress_at")
        until = iso_plus(since, stale.evidence.get("span_after_last_progress_s"))
        n = as_int(stale.evidence.get("heartbeats_after_last_progress"))
        if not (gantt_time(since) and until) or (need_count and not n):
            return []
        label = f"{plural(n, 'heartbeat')} after progress"
        return [self.task(label, since, until, is_open=False, crit=True)]


def _timeline_rows(d: Diagnosis, facts: RunFactsView) -> tuple[TimelineRow, ...]:
    f = d.facts
    rows: list[TimelineRow] = []

    def add(at: object, scope: str, subject: str, what: str) -> None:
        if isinstance(at, str) and parse_time(at) is not None:
            rows.append(TimelineRow(Text(at), scope_name(scope), Text(subject), what))

    add(f.get("started_at"), "", "", "run starts")
    for p in f.get("phases") or []:
        share = as_float(p.get("share"))
        pct = f", {share * 100:.1f}% of the run" if share is not None else ""
        add(
            p.get("first_start"),
            "",
            str(p.get("node")),
            f"phase starts ({duration(as_float(p.get('wall_s')))}{pct})",
        )
    for finding in d.findings:
        ev = finding.evidence
        if finding.code == "retry_loop":
            share = as_float(ev.get("share_of_run"))
            pct = f", {share * 100:.1f}% of the run" if share is not None else ""
            add(
                ev.get("first_entry_at"),
                finding.scope,
                f"{ev.get('from_node')} -> {ev.get('to_node')}",
                f"loop begins; the back edge is taken {as_int(ev.get('traversals'))} times "
                f"over {duration(as_float(ev.get('loop_wall_s')))}{pct}",
            )
        elif finding.code == "unjoined_fanout":
            add(
                ev.get("started_at"),
                finding.scope,
                str(ev.get("fanout_node")),
                f"fan-out starts with {as_int(ev.get('branches'))} branches; it never ends",
            )
        elif finding.code == "stale_heartbeat":
            add(
                iso_plus(ev.get("last_progress_at"), ev.get("span_after_last_progress_s")),
                finding.scope,
                "",
                f"last of {as_int(ev.get('heartbeats_after_last_progress'))} heartbeats after the "
                f"last progress event ({duration(as_float(ev.get('span_after_last_progress_s')))})",
            )
    for b in f.get("branches") or []:
        scope = str(b.get("scope", ""))
        add(b.get("started_at"), scope, "", "branch starts")
        status = b.get("last_status")
        # ``what`` is Markdown the template prints as is: the status is the branch's text.
        ended = f", last attempt {md(status, 60)}" if isinstance(status, str) else ""
        add(b.get("last_progress_at"), scope, "", f"last progress{ended}")
    add(f.get("last_event_at"), "", "", "last top-level event")
    rows.sort(key=lambda r: (parse_time(r.at) or datetime.min.replace(tzinfo=UTC), r.scope))
    if not facts.final_json:
        rows.append(TimelineRow(Text("—"), Text(TOP), Text(""), f"no final.json; state {d.state}"))
    return tuple(rows)


def _layer0(d: Diagnosis) -> Layer0:
    fan = _first(d.findings, "unjoined_fanout")
    stale = _first(d.findings, "stale_heartbeat")
    final = _first(d.findings, "missing_final")
    opened = final.evidence.get("open_attempts") if final else None
    nodes = stale.evidence.get("nodes_after_last_progress") if stale else None
    return Layer0(
        state=Text(d.state),
        final_json=bool(d.facts.get("final_json")),
        open_attempts=tuple(Text(str(n)) for n in opened or []),
        fanout_node=opt_text(fan.evidence.get("fanout_node")) if fan else None,
        fanout_branches=as_int(fan.evidence.get("branches")) if fan else 0,
        fanout_finished=as_int(fan.evidence.get("branches_finished")) if fan else 0,
        heartbeats_after=as_int(stale.evidence.get("heartbeats_after_last_progress"))
        if stale
        else None,
        heartbeat_span_s=as_float(stale.evidence.get("span_after_last_progress_s"))
        if stale
        else None,
        last_progress_event=opt_text(stale.evidence.get("last_progress_event")) if stale else None,
        last_progress_at=opt_text(d.facts.get("last_progress_at")),
        nodes_after=tuple(
            NodeCount(Text(str(k)), as_int(v))
            for k, v in (nodes.items() if isinstance(nodes, dict) else [])
        ),
    )


def _attempt_rows(
    facts: Mapping[str, Any], scope_ok: Callable[[str], bool]
) -> tuple[AttemptRow, ...]:
    return tuple(
        AttemptRow(
            node=as_text(s.get("node_id")),
            attempts=as_int(s.get("attempts")),
            min_s=as_float(s.get("min_s")) or 0.0,
            median_s=as_float(s.get("median_s")) or 0.0,
            max_s=as_float(s.get("max_s")) or 0.0,
            total_s=as_float(s.get("total_s")) or 0.0,
        )
        for s in facts.get("attempt_stats") or []
        if scope_ok(str(s.get("scope", "")))
    )


def _mechanisms(findings: Sequence[Finding]) -> tuple[MechanismView, ...]:
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        if f.severity >= Severity.WARNING:
            groups.setdefault(plan_item(f.code).mechanism, []).append(f)
    out = []
    for title in MECHANISMS:
        group = groups.get(title)
        if not group:
            continue
        codes = list(dict.fromkeys(f.code for f in group))
        scopes = list(dict.fromkeys(f.scope for f in group))
        out.append(
            MechanismView(
                title=title,
                codes=tuple(Text(c) for c in codes),
                findings=len(group),
                scopes=tuple(scope_name(s) for s in scopes),
            )
        )
    return tuple(out)


def _plan(d: Diagnosis) -> tuple[PlanView, ...]:
    by_code: dict[str, list[Finding]] = {}
    for f in d.findings:
        if f.severity >= Severity.WARNING:
            by_code.setdefault(f.code, []).append(f)
    out = []
    for code, group in by_code.items():
        item = plan_item(code)
        out.append(
            PlanView(
                priority=item.priority,
                title=item.title,
                code=Text(code),
                action=item.action,
                acceptance=item.acceptance,
                findings=len(group),
                scopes=len({f.scope for f in group}),
                check=Text(f"doctor diagnose --run-id {shell_quote(d.run_id)} --check {code}"),
            )
        )
    # Priority first, then the plan's own order (incident 04's), then unknown codes by name.
    order = {p: i for i, p in enumerate(PRIORITIES)}
    rank = {c: i for i, c in enumerate(PLAN)}
    return tuple(
        sorted(out, key=lambda p: (order.get(p.priority, 99), rank.get(p.code, 999), p.code))
    )


def _reasons(
    facts: Mapping[str, Any], scope_ok: Callable[[str], bool]
) -> tuple[tuple[ReasonRow, ...], int]:
    rows = [
        ReasonRow(as_text(r.get("node_id")), as_text(r.get("reason")), as_int(r.get("count")))
        for r in facts.get("failure_reasons") or []
        if scope_ok(str(r.get("scope", "")))
    ]
    rows.sort(key=lambda r: -r.count)  # stable: the facts' order breaks ties
    return tuple(rows[:MAX_REASONS]), max(len(rows) - MAX_REASONS, 0)


def _branch_view(
    d: Diagnosis, b: Mapping[str, Any], by_scope: Mapping[str, list[Finding]]
) -> ScopeView:
    scope = str(b.get("scope", ""))
    reasons, left_out = _reasons(d.facts, lambda s: s == scope)
    return ScopeView(
        scope=Text(scope),
        is_top=False,
        state=as_text(b.get("state")),
        last_status=opt_text(b.get("last_status")),
        started_at=opt_text(b.get("started_at")),
        last_progress_at=opt_text(b.get("last_progress_at")),
        attempts_started=as_int(b.get("attempts_started")),
        failures=as_int(b.get("failures")),
        final_json=bool(b.get("final_json")),
        edges=(),
        attempts=_attempt_rows(d.facts, lambda s: s == scope),
        reasons=reasons,
        reasons_left_out=left_out,
        findings=tuple(finding_view(f) for f in by_scope.get(scope, [])),
    )


def _top_view(d: Diagnosis, branch_scopes: set[str]) -> ScopeView:
    f = d.facts
    back = {
        (str(x.evidence.get("from_node")), str(x.evidence.get("to_node")))
        for x in d.findings
        if x.code == "retry_loop"
    }
    reasons, left_out = _reasons(f, is_top)
    return ScopeView(
        scope=Text(TOP),
        is_top=True,
        state=Text(d.state),
        last_status=None,
        started_at=opt_text(f.get("started_at")),
        last_progress_at=opt_text(f.get("last_progress_at")),
        attempts_started=as_int(f.get("attempts_started")),
        failures=sum(
            as_int(r.get("count"))
            for r in f.get("failure_reasons") or []
            if is_top(str(r.get("scope", "")))
        ),
        final_json=bool(f.get("final_json")),
        edges=tuple(
            EdgeRow(
                as_text(e.get("from")),
                as_text(e.get("to")),
                as_int(e.get("count")),
                (str(e.get("from")), str(e.get("to"))) in back,
            )
            for e in f.get("edges") or []
        ),
        attempts=_attempt_rows(f, is_top),
        reasons=reasons,
        reasons_left_out=left_out,
        findings=tuple(finding_view(x) for x in d.findings if x.scope not in branch_scopes),
    )


def postmortem_context(diagnosis: Diagnosis) -> PostmortemContext:
    """The postmortem's context, from one diagnosis (nothing else is read).

    >>> from doctor import Diagnosis
    >>> ctx = postmortem_context(Diagnosis("r1", "/runs/r1", "kilroy", "succeeded", {}))
    >>> ctx.run_id, ctx.headlines, ctx.facts.events
    ('r1', (), 0)
    """
    d = diagnosis
    facts = _facts_view(d)
    by_scope: dict[str, list[Finding]] = {}
    for f in d.findings:
        by_scope.setdefault(f.scope, []).append(f)
    branch_rows = [b for b in d.facts.get("branches") or [] if isinstance(b, Mapping)]
    branch_scopes = {str(b.get("scope", "")) for b in branch_rows}
    codes: dict[str, int] = {}
    for f in d.findings:
        codes[f.code] = codes.get(f.code, 0) + 1
    plan = _plan(d)
    return PostmortemContext(
        run_id=Text(d.run_id),
        path=Text(d.path),
        layout=Text(d.layout),
        schema="rundoctor.diagnosis/1",
        # quoted: a run id is a directory name, and `;` or `>` in it would run or write
        diagnose_command=Text(f"doctor diagnose --run-id {shell_quote(d.run_id)} --json"),
        state=Text(d.state),
        counts=severity_counts(d.findings),
        headlines=_headlines(d.findings),
        facts=facts,
        timeline=_timeline(d, facts),
        layer0=_layer0(d),
        layer1=(
            _top_view(d, branch_scopes),
            *(_branch_view(d, b, by_scope) for b in branch_rows),
        ),
        mechanisms=_mechanisms(d.findings),
        plan=plan,
        validation=tuple(
            ValidationRow(p.code, plan_item(p.code).test, plan_item(p.code).asserts) for p in plan
        ),
        events_by_type=tuple(
            EventCount(Text(str(k)), as_int(v))
            for k, v in (d.facts.get("events_by_type") or {}).items()
        ),
        findings_by_code=tuple(
            NodeCount(Text(c), n) for c, n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
    )
