r"""What ``doctor report --json`` prints: the report written, as a record a script can use.

>>> from pathlib import Path
>>> record = report_record("postmortem", html=False, run_id="r1", out=Path("r1.md"), text="# x\n")
>>> record["files"], record["text"], record["bytes"]
(['r1.md', 'r1.timeline.svg'], None, 4)
>>> report_record("fleet", html=False, run_id=None, out=None, text="# fleet\n")["text"]
'# fleet\n'
>>> odd = Path(b"r\xff.md".decode("utf-8", "surrogateescape"))
>>> report_record("postmortem", html=False, run_id="r1", out=odd, text="")["files"]
['r\\xff.md', 'r\\xff.timeline.svg']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from reports._html import svg_path_for
from rundoctor.paths import display_name

__all__ = ["REPORT_SCHEMA", "report_record"]

#: The schema name of :func:`report_record`'s object (``docs/reports.md``).
REPORT_SCHEMA = "rundoctor.report/1"


def report_record(
    kind: Literal["postmortem", "fleet"],
    *,
    html: bool,
    run_id: str | None,
    out: Path | None,
    text: str,
) -> dict[str, Any]:
    """The report just rendered: its ``kind``, ``format``, ``run_id`` (a postmortem's),
    the ``files`` written (with ``--out``: the report, and a Markdown postmortem's timeline
    SVG beside it), its size in UTF-8 ``bytes``, and its ``text`` when nothing was written
    (None otherwise: the text is in the file). A name that is not UTF-8 is written as the
    doctor writes file names (``\\xNN``: :func:`rundoctor.paths.display_name`)."""
    files = []
    if out is not None:
        files.append(display_name(str(out)))
        if kind == "postmortem" and not html:
            files.append(display_name(str(svg_path_for(out))))
    return {
        "schema": REPORT_SCHEMA,
        "kind": kind,
        "format": "html" if html else "markdown",
        "run_id": run_id,
        "files": files,
        "bytes": len(text.encode("utf-8", "surrogateescape")),
        "text": None if out is not None else text,
    }
