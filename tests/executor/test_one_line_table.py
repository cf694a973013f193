"""One-line tables: rows written as text are laid out exactly as Rich lays them out."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import executor.console as console_module
from executor.console import (
    PIPE_WIDTH,
    fit_columns,
    one_line_table,
    print_one_line_table,
    print_table,
)

COLUMNS = ("run", "state", "crit", "err", "worst finding")
RIGHT = ("crit", "err")
# ASCII, what printable() escapes (DEL too), markup and backslashes, one-cell characters that
# are not ASCII (é, ß, a no-break space, a soft hyphen), and what takes two cells or none (失,
# a combining accent, a zero-width space).
CHARS = st.sampled_from(
    [
        *"abcXYZ 019:/-_[]\\\t\x1b\n\u202e",
        "é",
        "ß",
        "\xa0",
        "\xad",
        "\x7f",
        "失",
        "\u0301",
        "\u200b",
    ]
)
CELL = st.text(CHARS, max_size=40)
ROW = st.fixed_dictionaries({c: CELL for c in COLUMNS})


def _both(rows: list[dict[str, str]], width: int, soft: bool, header: bool) -> tuple[str, str]:
    def new() -> Console:
        return Console(file=io.StringIO(), width=width, soft_wrap=soft, color_system=None)

    fitted = fit_columns(rows, COLUMNS, width, free=["worst finding"], optional=("state",))
    rich, fast = new(), new()
    table = one_line_table("T", rows, fitted, right=RIGHT, width=width)
    table.show_header = header
    print_table(rich, table)
    print_one_line_table(fast, "T", rows, fitted, right=RIGHT, header=header)
    return rich.file.getvalue(), fast.file.getvalue()  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(ROW, min_size=1, max_size=6),
    width=st.sampled_from([12, 30, 60, 80, 120]),
    soft=st.booleans(),
    header=st.booleans(),
)
def test_rows_written_as_text_are_what_rich_lays_out(
    rows: list[dict[str, str]], width: int, soft: bool, header: bool
) -> None:
    rich, fast = _both(rows, PIPE_WIDTH if soft else width, soft, header)
    assert fast == rich


@pytest.mark.parametrize(
    ("cell", "laid_by_rich"), [("exit status 1", 1), ("失败", 3), ("e\u0301", 3)]
)
def test_only_rows_of_one_cell_characters_skip_rich(
    monkeypatch: pytest.MonkeyPatch, cell: str, laid_by_rich: int
) -> None:
    # Rich took about 0.4 ms a row: a scan of 10,000 runs spent 4 s of CPU on its table.
    laid: list[int] = []
    real = console_module.one_line_table

    def counted(title, rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        laid.append(len(rows))
        return real(title, rows, *args, **kwargs)

    monkeypatch.setattr(console_module, "one_line_table", counted)
    rows = [{c: f"{cell} {n}" for c in COLUMNS} for n in range(3)]
    fitted = fit_columns(rows, COLUMNS, 80, free=["worst finding"])
    out = Console(file=io.StringIO(), width=80)
    print_one_line_table(out, "3 runs", rows, fitted, right=RIGHT)
    assert laid == [laid_by_rich]
    assert len(out.file.getvalue().splitlines()) == 6  # type: ignore[attr-defined]
