"""The SVG timeline: what it draws for small, hand-made timelines."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from itertools import pairwise

from doctor import Bar, Stretch, Timeline
from reports import timeline_svg, zoom_window

NS = 10**9
T0 = int(datetime(2026, 3, 1, 22, tzinfo=UTC).timestamp()) * NS
H = 3600 * NS


def _bar(
    node: str,
    start: int,
    end: int,
    status: str | None = "success",
    *,
    scope: str = "",
    visit: int = 1,
    is_open: bool = False,
    failure_reason: str | None = None,
) -> Bar:
    return Bar(scope, node, visit, 1, start, end, is_open, status, failure_reason)


def _timeline(bars: list[Bar], end: int, stretches: tuple[Stretch, ...] = ()) -> Timeline:
    lanes = tuple(dict.fromkeys((b.scope, b.node_id) for b in bars))
    scopes = tuple(dict.fromkeys(b.scope for b in bars))
    return Timeline("r1", T0, end, scopes, lanes, tuple(bars), stretches)


def test_the_svg_is_well_formed_xml() -> None:
    svg = timeline_svg(_timeline([_bar("a", T0, T0 + H)], T0 + 2 * H))
    assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"


def test_a_run_longer_than_a_day_has_dates_on_its_axis() -> None:
    long = timeline_svg(_timeline([_bar("a", T0, T0 + 30 * H)], T0 + 30 * H))
    short = timeline_svg(_timeline([_bar("a", T0, T0 + 3 * H)], T0 + 3 * H))
    assert "03-02 00:00" in long  # the midnight tick names its day
    assert not re.search(r">\d\d-\d\d \d\d:\d\d<", short)


def test_every_lap_of_a_loop_is_its_own_visible_bar() -> None:
    laps = [
        _bar("verify", T0 + i * 600 * NS, T0 + i * 600 * NS + 5 * NS, "fail", visit=i + 1)
        for i in range(36)
    ]
    svg = timeline_svg(_timeline(laps, T0 + 7 * H))
    bars = re.findall(r'class="bar outcome-fail" x="([\d.]+)"[^>]*\swidth="([\d.]+)"', svg)
    xs, widths = [float(x) for x, _ in bars], [float(w) for _, w in bars]
    assert len(bars) == 36 and min(widths) >= 1.5  # five seconds of seven hours: still drawn
    assert all(b - a > min(widths) for a, b in pairwise(xs))  # apart
    assert svg.count('<g class="lane"') == 1


def test_failure_reasons_are_escaped_into_the_hover_title() -> None:
    bar = _bar("a", T0, T0 + H, "fail", failure_reason='exit 1: <script>alert("x")</script> & more')
    svg = timeline_svg(_timeline([bar], T0 + H))
    assert "<script>" not in svg
    assert (
        "failure reason: exit 1: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"
        in svg
    )


def test_open_attempts_and_idle_gaps_are_drawn_as_such() -> None:
    gap = Stretch("idle_gap", None, T0 + H, T0 + 4 * H, "no progress for 3h")
    svg = timeline_svg(
        _timeline(
            [_bar("a", T0, T0 + H), _bar("b", T0 + 4 * H, T0 + 5 * H, None, is_open=True)],
            T0 + 5 * H,
            (gap,),
        )
    )
    assert svg.count('class="bar outcome-open"') == 1
    assert svg.count('class="shade idle-gap"') == 1 and "idle gap: no progress for 3h" in svg


def test_branches_are_lanes_of_their_own_and_a_late_fan_out_is_zoomed() -> None:
    top = _bar("impl", T0, T0 + 9 * H)
    branch = _bar("impl_x", T0 + 9 * H, T0 + 10 * H, scope="parallel/fanout/01-x")
    timeline = _timeline([top, branch], T0 + 10 * H)
    svg = timeline_svg(timeline)
    assert 'data-scope="parallel/fanout/01-x" data-node="impl_x"' in svg
    assert ">branch parallel/fanout/01-x</text>" in svg
    window = zoom_window(timeline)
    assert window is not None
    zoomed = timeline_svg(timeline, window=window, kind="timeline-zoom")
    assert 'class="timeline-zoom"' in zoomed and zoomed.count('class="bar ') == 2


def test_a_restart_is_headed_as_the_top_levels_and_a_branch_under_it_as_a_branch() -> None:
    bars = [
        _bar("fetch", T0, T0 + H, "fail"),
        _bar("par", T0 + H, T0 + 2 * H, scope="restart-1"),
        _bar("a", T0 + H, T0 + 2 * H, scope="restart-1/parallel/par/pass1/01-a"),
    ]
    svg = timeline_svg(_timeline(bars, T0 + 2 * H))
    headers = re.findall(r'<text class="scope"[^>]*>([^<]*)</text>', svg)
    assert headers == [
        "top level",
        "top level&#x27;s restart-1",
        "branch restart-1/parallel/par/pass1/01-a",
    ]
