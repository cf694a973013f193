"""The fleet report says what the scan left out under the roots or could not cache."""

from __future__ import annotations

import shutil
from pathlib import Path

from doctor import DoctorConfig, scan
from reports import fleet_context, render_fleet
from rundoctor.markdown import md

RUN = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "runs" / "retry_exhausted"


def test_a_run_left_out_is_named_in_the_fleet_report(tmp_path: Path) -> None:
    for group in ("a", "b"):
        shutil.copytree(RUN, tmp_path / group / RUN.name)
    result = scan(DoctorConfig(roots=(tmp_path,)))
    (note,) = result.fleet["root_notes"]
    assert [str(n) for n in fleet_context(result).notes] == [note]
    text = render_fleet(result)
    assert "fleet.root_notes" in text
    assert "1 run under " in text and "retry\\_exhausted is also under" in text


def test_a_report_of_a_fleet_without_notes_has_no_such_paragraph(tmp_path: Path) -> None:
    shutil.copytree(RUN, tmp_path / RUN.name)
    result = scan(DoctorConfig(roots=(tmp_path,)))
    assert fleet_context(result).notes == ()
    assert "fleet.root_notes" not in render_fleet(result)


def test_a_long_note_is_whole_in_the_fleet_report(tmp_path: Path) -> None:
    # Artifact values are cut at 200 characters in a report (reports._render.SHOWN); a note
    # is the doctor's own sentence, ending in what to do: it is never cut.
    deep = tmp_path / ("g" * 60) / ("h" * 60)
    for group in ("a", "b"):
        shutil.copytree(RUN, deep / group / RUN.name)
    result = scan(DoctorConfig(roots=(tmp_path,)))
    (note,) = result.fleet["root_notes"]
    assert len(note) > 200
    text = render_fleet(result)
    assert f"- {md(note)}\n" in text  # whole, to the command at its end
