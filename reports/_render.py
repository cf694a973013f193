"""Render the report templates to Markdown.

One jinja2 environment: ``StrictUndefined`` (a name the context lacks is an error, not an
empty string), no HTML autoescaping (the output is Markdown), and a ``finalize`` hook that
refuses to print artifact text (:class:`reports._escape.Text`) or ``None`` unless a filter
made it safe. Filters:

=========  ===============================================================================
``md``     artifact text as inline Markdown (prose, list items, table cells), cut at ``md(n)``
           characters, at :data:`SHOWN` when the template names no limit
``code``   artifact text as an inline code span, cut as ``md``; ``code(table=True)`` inside a
           table cell; ``code(none)`` whole (a path or command to copy, bounded by the system)
``mermaid`` artifact text as a gantt label or section name
``num``    ``39166`` → ``39,166``; ``num(2)`` keeps two decimals; ``None`` → ``n/a``
``pct``    a share: ``0.8971`` → ``89.7%``
``dur``    seconds: ``28076.161`` → ``7h 47m 56s``
``hours``  seconds: ``13032`` → ``3.62 h``
``usd``    ``7.88421675`` → ``$7.88421675``
``counted`` a count and its noun: ``1|counted("run")`` → ``1 run``, ``2`` → ``2 runs``
=========  ===============================================================================
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import jinja2

from doctor import Diagnosis, ScanResult
from reports._chaos import ChaosContext
from reports._context import FleetContext, PostmortemContext, duration
from reports._errors import ReportError
from reports._escape import Text, code, md, mermaid
from reports._fleet import fleet_context
from reports._postmortem import postmortem_context
from reports._throughput import Throughput
from rundoctor.words import plural

__all__ = [
    "SHOWN",
    "TEMPLATES",
    "cut_code",
    "cut_md",
    "environment",
    "render",
    "render_fleet",
    "render_postmortem",
]

#: The template of each context type.
TEMPLATES: dict[type, str] = {
    PostmortemContext: "postmortem.md.j2",
    FleetContext: "fleet.md.j2",
    ChaosContext: "chaos.md.j2",
}


#: How much of one value from the artifacts (a node id, a scope, an event name, a status) a
#: report shows when its template names no limit: a node id of 200 KB printed whole, in the
#: timeline, edge, attempt and reason tables, made a 1.4 MB page of 200 KB lines. A value is
#: whole in ``doctor diagnose --json`` and ``scan --json``.
SHOWN = 200


def cut_md(value: object, limit: int | None = SHOWN) -> str:
    """:func:`reports._escape.md`, cut at :data:`SHOWN` characters unless told otherwise.

    >>> cut_md("n" * 500) == "n" * 199 + "…"
    True
    """
    return md(value, limit)


def cut_code(value: object, limit: int | None = SHOWN, *, table: bool = False) -> str:
    """:func:`reports._escape.code`, cut at :data:`SHOWN` characters unless told otherwise
    (``None``: whole).

    >>> len(cut_code("n" * 500)), len(cut_code("n" * 500, None))
    (202, 502)
    """
    return code(value, limit, table=table)


def _finalize(value: Any) -> Any:
    if isinstance(value, Text):
        raise ReportError(
            f"template bug: artifact text {str(value)[:60]!r} printed without an escaping "
            "filter (md, code or mermaid)"
        )
    if value is None:
        raise ReportError("template bug: None printed; test for none before printing")
    return value


def num(value: object, digits: int = 0) -> str:
    """A number with thousands separators.

    >>> num(39166), num(2890.231), num(3.625, 2), num(None)
    ('39,166', '2,890', '3.62', 'n/a')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    if isinstance(value, int) and digits == 0:
        return f"{value:,}"
    return f"{float(value):,.{digits}f}"


def counted(value: object, word: str, many: str | None = None, digits: int = 0) -> str:
    """A count (as :func:`num` writes it) and its noun, singular for one (never "run(s)").

    >>> counted(1, "run"), counted(39166, "event"), counted(2, "class", "classes")
    ('1 run', '39,166 events', '2 classes')
    """
    n = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
    return plural(n, word, many, shown=num(value, digits))


def pct(value: object, digits: int = 1) -> str:
    """A share as a percentage.

    >>> pct(0.8971), pct(None)
    ('89.7%', 'n/a')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{float(value) * 100:.{digits}f}%"


def hours(value: object) -> str:
    """Seconds as hours with two decimals.

    >>> hours(13032.0)
    '3.62 h'
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{float(value) / 3600:,.2f} h"


def usd(value: object) -> str:
    """A cost in US dollars, every reported digit kept.

    >>> usd(7.88421675), usd(None)
    ('$7.88421675', 'none reported')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "none reported"
    return f"${float(value):,.8f}".rstrip("0").rstrip(".")


def dur(value: object) -> str:
    """Seconds as ``7h 47m 56s``.

    >>> dur(2890.231)
    '48m 10s'
    """
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return duration(float(value))


def environment() -> jinja2.Environment:
    """The report environment: package templates, strict undefined, escaping filters.

    >>> env = environment()
    >>> env.from_string("{{ name }}").render(name="r1")
    'r1'
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters.update(
        md=cut_md,
        code=cut_code,
        mermaid=mermaid,
        num=num,
        counted=counted,
        pct=pct,
        dur=dur,
        hours=hours,
        usd=usd,
    )
    return env


_ENV = environment()
_BLANK_RUNS = re.compile(r"\n{3,}")


def render(context: PostmortemContext | FleetContext | ChaosContext) -> str:
    """Render a context with its template; blank-line runs collapse, one final newline.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> from doctor import DoctorConfig, diagnose
    >>> from reports import postmortem_context
    >>> text = render(postmortem_context(diagnose("r1", DoctorConfig(roots=(root,)))))
    >>> text.splitlines()[0]
    '# Postmortem: run r1'
    """
    template = _ENV.get_template(TEMPLATES[type(context)])
    variables = {f.name: getattr(context, f.name) for f in fields(context)}
    text = template.render(**variables)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", text).strip("\n") + "\n"


def render_postmortem(diagnosis: Diagnosis) -> str:
    """The postmortem of one run, as Markdown, from its diagnosis alone.

    >>> from doctor import Diagnosis
    >>> print(render_postmortem(Diagnosis("r1", "/runs/r1", "kilroy", "succeeded", {}))[:20])
    # Postmortem: run r1
    """
    return render(postmortem_context(diagnosis))


def render_fleet(scan: ScanResult, *, throughput: Throughput | None = None) -> str:
    """The fleet report of a scan, as Markdown (throughput when a queue's is given).

    >>> from doctor import ScanResult
    >>> print(render_fleet(ScanResult(("/runs",), (), {"runs": 0}))[:22])
    # Fleet report: 0 runs
    >>> print(render_fleet(ScanResult(("/runs",), (), {"runs": 1})).splitlines()[0])
    # Fleet report: 1 run
    """
    return render(fleet_context(scan, throughput=throughput))
