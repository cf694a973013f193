"""A run's timeline drawn as one self-contained SVG (no script, no font, no network).

Layout, top to bottom: the time axis (UTC; dates on the ticks when the run spans more than a
day), then one group per scope (the top level first, then each branch), each with one lane per
node in order of first start. Every attempt is its own bar, so each lap of a loop shows; bars
are coloured by outcome and carry a ``<title>`` (the hover text: node, visit, attempt,
outcome, times, failure reason). Stretches are shaded behind the bars: ``heartbeat_only``
across its scope's lanes, ``idle_gap`` across the whole chart, and, on a run with more
attempts than :data:`doctor.MAX_TIMELINE_BARS`, the ``omitted`` stretch whose attempts are not
drawn (its count beside the axis caption, in ``text.omitted``).

The DOM is part of the contract (tests count it in a browser): ``svg.timeline`` holds one
``g.lane`` per lane and one ``rect.bar`` per attempt drawn; shaded stretches are
``rect.shade.heartbeat-only``, ``rect.shade.idle-gap`` and ``rect.shade.omitted``; the svg's
``data-omitted`` (when some were) counts the attempts left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from doctor import Bar, Timeline
from reports._context import is_top
from rundoctor.words import plural

__all__ = ["OUTCOME_COLOURS", "timeline_svg", "zoom_window"]

#: Bar fill per outcome (``open``: the attempt never ended; ``unknown``: no status).
OUTCOME_COLOURS = {
    "success": "#2e7d32",
    "partial_success": "#9e9d24",
    "retry": "#ef6c00",
    "fail": "#c62828",
    "skipped": "#9e9e9e",
    "open": "#1565c0",
    "unknown": "#6d4c41",
}
_LABEL_W = 300
_LANE_H = 18
_BAR_H = 12
_HEADER_H = 20
_AXIS_H = 34
_LEGEND_H = 28
_STEPS_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def _outcome(bar: Bar) -> str:
    if bar.is_open:
        return "open"
    status = (bar.status or "").lower()
    return status if status in OUTCOME_COLOURS else "unknown"


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _clock(ns: int, dated: bool) -> str:
    return _utc(ns).strftime("%m-%d %H:%M" if dated else "%H:%M")


def _seconds(ns: int) -> str:
    s = round(ns / 1e9)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def _title(bar: Bar) -> str:
    where = bar.scope or "top level"
    attempt = f", attempt {bar.attempt}" if bar.attempt is not None else ""
    what = "still open (never ended)" if bar.is_open else (bar.status or "no status")
    text = (
        f"{bar.node_id} ({where}) visit {bar.visit}{attempt}: {what}\n"
        f"{_utc(bar.start_ns):%Y-%m-%d %H:%M:%S} to {_utc(bar.end_ns):%H:%M:%S} UTC "
        f"({_seconds(bar.end_ns - bar.start_ns)})"
    )
    if bar.failure_reason:
        text += f"\nfailure reason: {bar.failure_reason[:400]}"
    return text


def _ticks(start_ns: int, end_ns: int, width: float) -> list[int]:
    span_s = (end_ns - start_ns) / 1e9
    step = next((s for s in _STEPS_S if span_s / s <= max(2, width // 110)), _STEPS_S[-1])
    first = -(-start_ns // (step * 10**9)) * step * 10**9
    return list(range(first, end_ns + 1, step * 10**9))


def zoom_window(timeline: Timeline, share: float = 0.35) -> tuple[int, int] | None:
    """The stretch the branches ran in, when it is under ``share`` of the run: what a
    second, zoomed panel shows (a fan-out at the end of a long run is otherwise a sliver).

    >>> from doctor import Bar, Timeline
    >>> top = Bar("", "a", 1, 1, 0, 90, False, "success", None)
    >>> branch = Bar("parallel/f/01-x", "b", 1, 1, 90, 100, False, "success", None)
    >>> zoom_window(Timeline("r", 0, 100, ("", "parallel/f/01-x"), (), (top, branch), ()))
    (89, 100)
    """
    inside = [b for b in timeline.bars if b.scope != ""]
    if not inside:
        return None
    start, end = min(b.start_ns for b in inside), max(b.end_ns for b in inside)
    span = timeline.end_ns - timeline.start_ns
    if span <= 0 or end - start >= share * span:
        return None
    margin = max(1, (end - start) // 10)
    return max(timeline.start_ns, start - margin), min(timeline.end_ns, end + margin)


@dataclass(frozen=True, slots=True)
class _Scale:
    """Epoch nanoseconds ``t0``..``t1`` onto the plot's ``plot_w`` pixels right of the labels."""

    t0: int
    t1: int
    plot_w: float

    def x(self, ns: int) -> float:
        return _LABEL_W + (min(max(ns, self.t0), self.t1) - self.t0) / (self.t1 - self.t0) * (
            self.plot_w
        )

    def shows(self, start_ns: int, end_ns: int) -> bool:
        return end_ns >= self.t0 and start_ns <= self.t1

    def width(self, start_ns: int, end_ns: int) -> float:
        return max(1.0, self.x(end_ns) - self.x(start_ns))


def timeline_svg(
    timeline: Timeline,
    *,
    width: int = 1400,
    window: tuple[int, int] | None = None,
    kind: str = "timeline",
) -> str:
    """The timeline as an SVG document (a string starting with ``<svg``) of class ``kind``;
    with ``window`` (epoch ns), only that stretch, and the lanes with an attempt in it.

    >>> from doctor import Bar, Timeline
    >>> bar = Bar("", "impl", 1, 1, 0, 60 * 10**9, False, "fail", "exit 1")
    >>> svg = timeline_svg(Timeline("r1", 0, 120 * 10**9, ("",), (("", "impl"),), (bar,), ()))
    >>> svg.count('class="bar outcome-fail"'), svg.count('class="lane"')
    (1, 1)
    """
    t0, t1 = window or (timeline.start_ns, timeline.end_ns)
    scale = _Scale(t0, max(t1, t0 + 1), width - _LABEL_W - 20)
    shown = [b for b in timeline.bars if scale.shows(b.start_ns, b.end_ns)]
    lanes_shown = (
        timeline.lanes
        if window is None
        else tuple(
            lane for lane in timeline.lanes if any((b.scope, b.node_id) == lane for b in shown)
        )
    )
    hatch = f"hatch-{kind}"
    rows, shades, lane_y, chart_bottom = _lanes(timeline, lanes_shown, scale, hatch)
    shades += _idle_gaps(timeline, scale, chart_bottom)
    bars = [_bar(bar, scale, lane_y[(bar.scope, bar.node_id)]) for bar in shown]
    axis = _axis(scale, chart_bottom) + _omitted_note(timeline)
    omitted = f' data-omitted="{timeline.bars_omitted}"' if timeline.bars_omitted else ""
    legend = _legend(chart_bottom + 18, hatch)
    height = chart_bottom + _LEGEND_H
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{kind}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="11" data-lanes="{len(lane_y)}" data-bars="{len(bars)}"{omitted}>'
        f"<title>Timeline of run {escape(timeline.run_id)}</title>"
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#e0e0e0"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#9e9e9e" stroke-width="2"/></pattern></defs>'
        + "".join(rows + shades + axis + bars + legend)
        + "</svg>\n"
    )


def _scope_name(scope: str) -> str:
    """A scope's header: a ``restart-N`` carries the top level's loop on, it is no branch.

    >>> _scope_name(""), _scope_name("restart-1"), _scope_name("restart-1/parallel/f/01-x")
    ('top level', "top level's restart-1", 'branch restart-1/parallel/f/01-x')
    """
    if scope == "":
        return "top level"
    return f"top level's {scope}" if is_top(scope) else f"branch {scope}"


def _lanes(
    timeline: Timeline, lanes_shown: Sequence[tuple[str, str]], scale: _Scale, hatch: str
) -> tuple[list[str], list[str], dict[tuple[str, str], float], float]:
    """Each scope's header and lanes, its heartbeat-only stretches shaded: the rows, the
    shades, each lane's y and the chart's bottom."""
    rows: list[str] = []
    shades: list[str] = []
    y: float = _AXIS_H
    lane_y: dict[tuple[str, str], float] = {}
    for scope in timeline.scopes:
        lanes = [lane for lane in lanes_shown if lane[0] == scope]
        if not lanes:
            continue
        name = _scope_name(scope)
        rows.append(
            f'<text class="scope" x="4" y="{y + 14}" font-weight="bold">{escape(name)}</text>'
        )
        y += _HEADER_H
        top = y
        for lane in lanes:
            lane_y[lane] = y
            rows.append(
                f'<g class="lane" data-scope="{escape(scope)}" data-node="{escape(lane[1])}">'
                f'<rect class="lane-bg" x="{_LABEL_W}" y="{y}" width="{scale.plot_w}" '
                f'height="{_LANE_H}" fill="#f5f5f5"/>'
                f'<text x="14" y="{y + 13}">{escape(lane[1])}</text></g>'
            )
            y += _LANE_H
        for s in timeline.stretches:
            if (
                s.kind == "heartbeat_only"
                and s.scope == scope
                and scale.shows(s.start_ns, s.end_ns)
            ):
                shades.append(
                    f'<rect class="shade heartbeat-only" x="{scale.x(s.start_ns):.2f}" '
                    f'y="{top}" width="{scale.width(s.start_ns, s.end_ns):.2f}" '
                    f'height="{y - top}" fill="url(#{hatch})"><title>heartbeats only: '
                    f"{escape(s.detail)}</title></rect>"
                )
    return rows, shades, lane_y, y


#: How stretches of the whole run are shaded: (DOM class, fill, opacity, hover prefix).
_RUN_SHADES = {
    "idle_gap": ("idle-gap", "#fdd835", 0.25, "idle gap"),
    "omitted": ("omitted", "#90a4ae", 0.3, "not drawn"),
}


def _idle_gaps(timeline: Timeline, scale: _Scale, chart_bottom: float) -> list[str]:
    """The fleet's idle gaps, and the stretch of omitted attempts, shaded across every lane."""
    out = []
    for s in timeline.stretches:
        shade = _RUN_SHADES.get(s.kind)
        if shade is None or not scale.shows(s.start_ns, s.end_ns):
            continue
        cls, fill, opacity, what = shade
        out.append(
            f'<rect class="shade {cls}" x="{scale.x(s.start_ns):.2f}" y="{_AXIS_H}" '
            f'width="{scale.width(s.start_ns, s.end_ns):.2f}" '
            f'height="{chart_bottom - _AXIS_H}" fill="{fill}" fill-opacity="{opacity}">'
            f"<title>{what}: {escape(s.detail)}</title></rect>"
        )
    return out


def _omitted_note(timeline: Timeline) -> list[str]:
    """What the bounded timeline left out, beside the axis caption (nothing when nothing)."""
    parts = []
    if n := timeline.bars_omitted:
        parts.append(f"{plural(n, 'attempt', shown=f'{n:,}')} not drawn (shaded grey)")
    if n := timeline.stretches_omitted:
        what = plural(n, "stretch", "stretches", shown=f"{n:,}")
        parts.append(f"{what} of heartbeats only, the shortest, not shaded")
    if not parts:
        return []
    return [f'<text class="omitted" x="{_LABEL_W + 140}" y="14">{"; ".join(parts)}</text>']


def _bar(bar: Bar, scale: _Scale, lane_y: float) -> str:
    """One attempt's bar, coloured by outcome, its details in a tooltip."""
    outcome = _outcome(bar)
    left = scale.x(bar.start_ns)
    # A bar never thinner than 1.5 px: every lap of a loop stays visible.
    w = max(1.5, scale.x(bar.end_ns) - left)
    return (
        f'<rect class="bar outcome-{outcome}" x="{left:.2f}" '
        f'y="{lane_y + (_LANE_H - _BAR_H) / 2}" '
        f'width="{w:.2f}" height="{_BAR_H}" fill="{OUTCOME_COLOURS[outcome]}" '
        f'stroke="#ffffff" stroke-width="0.3"><title>{escape(_title(bar))}</title></rect>'
    )


def _axis(scale: _Scale, chart_bottom: float) -> list[str]:
    """The caption (UTC range) and the ticks, each with a grid line down the chart."""
    t0, t1 = scale.t0, scale.t1
    dated = (t1 - t0) > 86400 * 10**9
    axis = [
        f'<text class="axis-caption" x="4" y="14">UTC, from {_utc(t0):%Y-%m-%d %H:%M:%S} '
        f"to {_utc(t1):%Y-%m-%d %H:%M:%S}</text>"
    ]
    for tick in _ticks(t0, t1, scale.plot_w):
        tx = scale.x(tick)
        axis.append(
            f'<g class="tick"><line x1="{tx:.2f}" y1="{_AXIS_H - 6}" x2="{tx:.2f}" '
            f'y2="{chart_bottom}" stroke="#bdbdbd" stroke-width="0.5"/>'
            f'<text x="{tx:.2f}" y="{_AXIS_H - 9}" text-anchor="middle">'
            f"{_clock(tick, dated)}</text></g>"
        )
    return axis


def _legend(ly: float, hatch: str) -> list[str]:
    """The outcome colours, the heartbeat-only hatch and the idle-gap shade."""
    legend = []
    lx = 4.0
    for outcome, colour in OUTCOME_COLOURS.items():
        legend.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="{ly}">{outcome.replace("_", " ")}</text>'
        )
        lx += 24 + 8 * len(outcome)
    legend.append(
        f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="url(#{hatch})" '
        f'stroke="#757575"/><text x="{lx + 16}" y="{ly}">heartbeats only</text>'
        f'<rect x="{lx + 130}" y="{ly - 10}" width="12" height="12" fill="#fdd835" '
        f'fill-opacity="0.4"/><text x="{lx + 146}" y="{ly}">idle gap</text>'
    )
    return legend
