"""The postmortem as one self-contained HTML page, and as Markdown with its SVG beside it.

The page is the Markdown postmortem (:func:`reports.render_postmortem`) rendered to HTML by
markdown-it (raw HTML in the Markdown is escaped, never passed through), with the timeline
drawn by :func:`reports.timeline_svg` inline in place of the Mermaid block. Nothing is
fetched: no external script, style, font or image, and a Content-Security-Policy that forbids
any network request. One inline script measures what the browser drew (attempt bars with a
non-empty box, lanes) into ``<output id="rendered" data-bars data-lanes>``; the page reads
the same without it.

Written with ``--out``, the Markdown postmortem gets the same SVG as a file beside it
(``<name>.timeline.svg``), linked under its "Timeline" heading. Files are written atomically.

The timeline is bounded (:func:`doctor.run_timeline`: at most ``doctor.MAX_TIMELINE_BARS``
attempts drawn, the others counted in the caption). A run over the resource budget has no
postmortem: :func:`write_postmortem` raises :class:`doctor.OverBudget` (one line, exit 2 in
the CLI) naming the limit and how to raise it.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt

from doctor import (
    Diagnosis,
    DoctorConfig,
    Timeline,
    check_budget,
    check_output,
    run_timeline,
    write_atomic,
)
from reports._render import render_postmortem
from reports._svg import timeline_svg, zoom_window
from rundoctor.words import plural

__all__ = ["render_postmortem_html", "svg_path_for", "write_postmortem"]

_TIMELINE_H2 = "## Timeline (UTC)\n"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1440px; color: #212121;
       line-height: 1.45; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #e0e0e0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
code { background: #f5f5f5; padding: 0 0.2em; border-radius: 3px; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; }
figure.timeline { margin: 1em 0; overflow-x: auto; }
output#rendered { display: block; color: #616161; font-size: 0.85em; }
"""
_MEASURE = """
(function () {
  var svg = document.querySelector("svg.timeline");
  var out = document.getElementById("rendered");
  if (!svg || !out) { return; }
  var drawn = Array.prototype.filter.call(svg.querySelectorAll("rect.bar"), function (r) {
    var box = r.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  });
  var lanes = svg.querySelectorAll("g.lane").length;
  out.setAttribute("data-bars", String(drawn.length));
  out.setAttribute("data-lanes", String(lanes));
  out.textContent = drawn.length + (drawn.length === 1 ? " attempt bar" : " attempt bars") +
    " drawn in " + lanes + (lanes === 1 ? " lane." : " lanes.");
})();
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def no_mermaid(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        # The SVG replaces the Mermaid block: the page needs no script to draw it.
        if tokens[idx].info.strip() == "mermaid":
            return ""
        return str(renderer.fence(tokens, idx, options, env))

    md.add_render_rule("fence", no_mermaid)
    return md


def svg_path_for(out: Path) -> Path:
    """Where the Markdown report at ``out`` keeps its timeline.

    >>> svg_path_for(Path("reports/run.md"))
    PosixPath('reports/run.timeline.svg')
    """
    return out.with_name(f"{out.stem}.timeline.svg")


def render_postmortem_html(diagnosis: Diagnosis, timeline: Timeline) -> str:
    """The postmortem page: one HTML document, the timeline inline as SVG.

    >>> from doctor import Timeline
    >>> page = render_postmortem_html(Diagnosis("r1", "/r1", "kilroy", "succeeded", {}),
    ...                               Timeline("r1", 0, 1, (), (), (), ()))
    >>> page.startswith("<!doctype html>"), "<svg" in page, "src=" in page
    (True, True, False)
    """
    text = render_postmortem(diagnosis)
    figure = (
        '<figure class="timeline">'
        + timeline_svg(timeline)
        + "<figcaption>One lane per node per scope, one bar per attempt (hover for the "
        f"outcome and failure reason).{_omitted(timeline)}</figcaption>"
        '<output id="rendered"></output></figure>\n'
    )
    window = zoom_window(timeline)
    if window is not None:
        figure += (
            '<figure class="timeline-zoom">'
            + timeline_svg(timeline, window=window, kind="timeline-zoom")
            + "<figcaption>The branches' stretch, zoomed: the lanes with an attempt in it."
            "</figcaption></figure>\n"
        )
    head, sep, tail = text.partition(_TIMELINE_H2)
    md = _markdown()
    body = md.render(head + sep) + figure + md.render(tail) if sep else md.render(text) + figure
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Postmortem: run {escape(diagnosis.run_id)}</title>"
        f"<style>{_STYLE}</style></head>\n<body><main>\n{body}</main>\n"
        f"<script>{_MEASURE}</script>\n</body></html>\n"
    )


def _omitted(timeline: Timeline) -> str:
    """The caption's word on what the bounded timeline left out (empty when nothing)."""
    n = timeline.bars_omitted
    if not n:
        return ""
    count = plural(n, "attempt", shown=f"{n:,}")
    half = f"{len(timeline.bars) // 2:,}"
    return (
        f" {count} omitted: the first and last {half} in start order are drawn, the "
        "stretch of the others is shaded grey."
    )


def _with_svg_link(text: str, svg_name: str, run_id: str) -> str:
    r"""``text`` with the image link to the timeline SVG under its "Timeline" heading. The
    file name is percent-encoded, as a link's destination is: a space or a parenthesis in it
    ended the link (``my report.timeline.svg``), and a byte that is not UTF-8 (a Latin-1
    ``--out``) could not be written at all (``UnicodeEncodeError``, exit 70).

    >>> _with_svg_link("# R\n", "my r\udcff (1).timeline.svg", "r1")
    '# R\n\n![Timeline of run r1](my%20r%FF%20%281%29.timeline.svg)\n\n'
    """
    target = quote(os.fsencode(svg_name), safe="")
    link = f"![Timeline of run {run_id}]({target})\n\n"
    head, sep, tail = text.partition(_TIMELINE_H2)
    return head + sep + "\n" + link + tail.lstrip("\n") if sep else text + "\n" + link


def write_postmortem(
    diagnosis: Diagnosis,
    *,
    html: bool,
    out: Path | None,
    config: DoctorConfig | None = None,
) -> str:
    """The postmortem (HTML or Markdown) as text; with ``out``, also written there, and for
    Markdown the timeline SVG beside it (:func:`svg_path_for`), linked from the report.

    A run over the resource budget is :class:`doctor.OverBudget`: its diagnosis is only the
    finding saying so, and its timeline could not be read either.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> from doctor import DoctorConfig, diagnose
    >>> out = root / "r1.md"
    >>> text = write_postmortem(diagnose("r1", DoctorConfig(roots=(root,))), html=False, out=out)
    >>> sorted(p.name for p in root.iterdir() if p.is_file())
    ['r1.md', 'r1.timeline.svg']
    """
    if out is not None:  # before anything is written: the SVG's name derives from it
        check_output(out)
    check_budget(diagnosis, config or DoctorConfig())
    if not html and out is None:
        return render_postmortem(diagnosis)
    timeline = run_timeline(diagnosis, config)
    if html:
        text = render_postmortem_html(diagnosis, timeline)
    else:
        assert out is not None
        svg = write_atomic(svg_path_for(out), timeline_svg(timeline))
        # The link names the file only: the report and its picture move together.
        run_id = diagnosis.run_id.replace("]", "")
        text = _with_svg_link(render_postmortem(diagnosis), svg.name, run_id)
    if out is not None:
        write_atomic(out, text)
    return text
