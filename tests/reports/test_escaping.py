"""Artifact text can never break a report's tables or inject markup.

Hostile failure reasons and node ids go through a real diagnosis into both reports; the
Markdown is then parsed with markdown-it (CommonMark + GFM tables, raw HTML allowed, as on
GitHub before sanitizing) and checked for injected HTML, links, and broken table rows.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from doctor import Diagnosis, DoctorConfig, ScanResult, diagnose, scan
from reports import (
    ReportError,
    Text,
    code,
    environment,
    md,
    mermaid,
    render_fleet,
    render_postmortem,
)

HOSTILE = [
    "exit 1 | rm -rf / | col3",
    "backticks ` and ``` fences ```",
    "<script>alert('x')</script>",
    "line one\nline two\r\n| forged | row |",
    "[link](x) and ![img](y)",
    "*bold* _em_ ~~strike~~ # heading & &amp; $x$",
    "- a list item",
    "1. numbered",
    "> quote :colon; semicolon #hash %%comment",
]
NODE = "verify`x|y"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()


def _line(event: str, ts: str, **fields: object) -> str:
    return json.dumps({"event": event, "ts": ts, "run_id": "hostile01", **fields}) + "\n"


def _hostile_run(root: Path) -> Path:
    run = root / "hostile01"
    run.mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    (run / "run_config.json").write_text('{"runtime_policy": {"stall_timeout_ms": 600000}}')
    lines = []
    for i, reason in enumerate(HOSTILE * 2):
        ts = f"2026-03-01T09:{i:02d}:00Z"
        end = f"2026-03-01T09:{i:02d}:30Z"
        lines.append(_line("stage_attempt_start", ts, node_id=NODE, attempt=1, max=1))
        lines.append(
            _line(
                "stage_attempt_end",
                end,
                node_id=NODE,
                attempt=1,
                max=1,
                status="fail",
                failure_reason=f"{reason} #{i}",
            )
        )
        lines.append(_line("edge_selected", end, from_node=NODE, to_node=NODE))
    (run / "progress.ndjson").write_text("".join(lines))
    return run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Diagnosis:
    root = tmp_path_factory.mktemp("runs")
    _hostile_run(root)
    return diagnose("hostile01", DoctorConfig(roots=(root,), now=NOW))


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def _check_markdown(text: str) -> None:
    html = _parser().render(text)
    assert "<script" not in html
    assert 'href="x"' not in html
    assert 'src="y"' not in html
    assert "<h1>heading" not in html
    tokens = _parser().parse(text)
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    for t in tokens:
        for child in t.children or []:
            assert child.type != "html_inline", child.content
            assert child.type != "link_open" or child.attrGet("href") != "x"


def _check_tables(text: str) -> None:
    """Every table row has as many unescaped pipes as its header row."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|--"):
            header = lines[i - 1]
            want = len(re.findall(r"(?<!\\)\|", header))
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(re.findall(r"(?<!\\)\|", lines[j])) == want, lines[j]
                j += 1
            # A table ends with a blank line, never with a continuation of a cell.
            assert j == len(lines) or lines[j] == "", lines[j]


def _check_mermaid(text: str) -> None:
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0] if "```mermaid" in text else ""
    for line in block.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith(("title ", "dateFormat ", "axisFormat ", "todayMarker ")):
            continue
        if stripped.startswith("section "):
            assert not re.search(r"[:#;%`]", stripped), stripped
            continue
        label, _, data = stripped.partition(" :")
        assert data, stripped
        assert not re.search(r"[:#;%`]", label), stripped


def test_the_hostile_run_has_findings_that_quote_the_reasons(hostile: Diagnosis) -> None:
    assert any("<script>" in f.summary or "|" in f.summary for f in hostile.findings)


def test_hostile_reasons_do_not_inject_markup_into_the_postmortem(hostile: Diagnosis) -> None:
    text = render_postmortem(hostile)
    _check_markdown(text)
    _check_tables(text)
    _check_mermaid(text)


def test_hostile_reasons_do_not_inject_markup_into_the_fleet_report(
    hostile: Diagnosis, tmp_path: Path
) -> None:
    _hostile_run(tmp_path)
    result = scan(DoctorConfig(roots=(tmp_path,), now=NOW))
    assert result.diagnoses[0].facts["failure_reasons"]
    text = render_fleet(result)
    _check_markdown(text)
    _check_tables(text)


def test_hostile_text_still_reads_as_itself_once_rendered(hostile: Diagnosis) -> None:
    html = _parser().render(render_postmortem(hostile))
    # The ten most frequent reasons are listed (ties in the facts' order: by text).
    assert "&lt;script&gt;alert(" in html
    assert "<td>- a list item #" in html
    assert "<td>1. numbered #" in html
    assert "<td>*bold* _em_ ~~strike~~ # heading &amp; &amp;amp; $x$ #" in html
    assert "&gt; quote :colon; semicolon #hash %%comment #" in html


@pytest.mark.parametrize("text", HOSTILE)
def test_md_output_renders_as_the_flattened_text_inside_a_table_cell(text: str) -> None:
    doc = f"| a |\n|---|\n| {md(text)} |\n"
    tokens = _parser().parse(doc)
    cells = [t for t in tokens if t.type == "inline"]
    rendered = "".join(c.content for c in cells[1].children or [] if c.type == "text")
    assert rendered == " ".join(text.split()) or rendered == text.replace("\r\n", " ").replace(
        "\n", " "
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_code_spans_hold_the_text_verbatim_even_in_tables(text: str) -> None:
    flat = text.replace("\r\n", " ").replace("\n", " ")
    inline = _parser().parse(code(text))[1].children or []
    assert [c.content for c in inline if c.type == "code_inline"] == [flat]
    doc = f"| a |\n|---|\n| {code(text, table=True)} |\n"
    cells = [t for t in _parser().parse(doc) if t.type == "inline"]
    assert [c.content for c in cells[1].children or [] if c.type == "code_inline"] == [flat]


def test_mermaid_labels_keep_only_plain_characters() -> None:
    assert mermaid("a: b; c # d %% e `f`") == "a b c d e f"
    assert mermaid("section x") == "node section x"
    assert mermaid("") == "unnamed"
    assert len(mermaid("x" * 500)) == 60


def test_printing_artifact_text_without_a_filter_is_refused() -> None:
    env = environment()
    with pytest.raises(ReportError, match="without an escaping filter"):
        env.from_string("{{ x }}").render(x=Text("<b>"))
    assert env.from_string("{{ x|md }}").render(x=Text("<b>")) == "\\<b\\>"


def test_printing_none_is_refused() -> None:
    with pytest.raises(ReportError, match="None printed"):
        environment().from_string("{{ x }}").render(x=None)


def test_a_missing_context_name_is_an_error_not_an_empty_string() -> None:
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        environment().from_string("{{ nothing }}").render()


def test_the_fleet_report_of_an_empty_scan_renders() -> None:
    assert render_fleet(ScanResult(("/runs",), (), {"runs": 0})).startswith("# Fleet report")


def test_the_commands_a_postmortem_prints_quote_the_run_id_for_a_shell(tmp_path: Path) -> None:
    # Before: `doctor diagnose --run-id x;touch pwned --json`: pasted, the check would run
    # `touch pwned`, and a `>` in the name would write a file. A run id is a directory's name.
    import shlex

    name = "x;touch pwned>out"
    _hostile_run(tmp_path).rename(tmp_path / name)
    text = render_postmortem(diagnose(name, DoctorConfig(roots=(tmp_path,), now=NOW)))
    commands = re.findall(r"`(doctor diagnose --run-id [^`]*)`", text)
    assert len(commands) > 1  # the evidence command and each plan item's check
    for command in commands:
        assert shlex.split(command)[3] == name, command
