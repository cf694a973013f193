"""The chaos report: JSON fields, the Markdown snapshot, escaping, and the documented context."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from chaos import (
    Bounds,
    CampaignConfig,
    CampaignResult,
    History,
    Meta,
    Planned,
    chaos_context,
    check,
    report_json,
    write_report,
)
from reports import (
    ChaosContext,
    FaultKindRow,
    FaultRow,
    InvariantView,
    LatencyRow,
    RecoveryRow,
    SkipRow,
    TicketCount,
    render_chaos,
)
from tests.chaos.conftest import Story, finding
from tests.chaos.test_checkers import clean

SNAPSHOTS = Path(__file__).parent / "snapshots"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "chaos.md"
OUT = Path("/campaigns/c1")


def result(story: Story) -> CampaignResult:
    config = CampaignConfig(seed=7, duration_s=30, out=OUT, faults=("sigkill_worker",))
    meta = Meta(
        0.0,
        7,
        30.0,
        4,
        "sqlite:////campaigns/c1/campaign/queue.db",
        ("sigkill_worker",),
        (Planned(20.0, "sigkill_worker", 3),),
        Bounds(),
        config.replay_command(),
    )
    history = History((meta, *story.history().records)).sorted()
    return CampaignResult(config, history, check(history), 41.25, OUT)


def failing() -> CampaignResult:
    s = clean()
    s.run("r9", "t-1", 1, findings=(finding("torn_artifact"),))
    s.event(13.0, "t-1", "completed", "w2/0", 1)
    return result(s)


def test_report_json_has_the_documented_fields() -> None:
    doc = report_json(failing())
    assert doc["schema"] == "rundoctor.chaos/1" and doc["seed"] == 7 and doc["duration_s"] == 30
    assert doc["faults"] == [
        {
            "kind": "sigkill_worker",
            "target": "worker w1 (pid 42)",
            "at": 20.0,
            "time": 20.0,
            "detail": {},
            "runs": ["/runs/r1"],
            "held": [{"ticket": "t-2", "epoch": 1}],
        }
    ]
    assert doc["tickets"] == {"done": 2}
    verdicts = {v["name"]: v for v in doc["invariants"]}
    assert set(verdicts["at_most_one_completion"]) == {
        "name",
        "ok",
        "summary",
        "violations",
        "witness",
    }
    assert not verdicts["at_most_one_completion"]["ok"]
    assert [w["kind"] for w in verdicts["at_most_one_completion"]["witness"]] == [
        "ticket_event",
        "ticket_event",
    ]
    assert doc["ok"] is False and doc["replay"].startswith("doctor chaos run --seed 7")


def test_the_failed_report_matches_its_snapshot() -> None:
    text = render_chaos(chaos_context(failing()))
    path = SNAPSHOTS / "report_failed.md"
    if not path.exists() and os.environ.get("RUNDOCTOR_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"the chaos report differs from {path}; if intended, delete it and re-run with "
        "RUNDOCTOR_UPDATE_SNAPSHOTS=1"
    )


def test_a_passing_report_says_so_and_shows_no_witness() -> None:
    text = render_chaos(chaos_context(result(clean())))
    assert text.startswith("# Chaos campaign: seed 7 — passed\n\nEvery invariant held.")
    assert "### Witness" not in text


def test_text_from_the_history_is_escaped_in_the_markdown() -> None:
    s = clean()
    s.records = [
        dataclasses.replace(r, target="w|1 `x` <b>") if type(r).__name__ == "FaultRecord" else r
        for r in s.records
    ]
    text = render_chaos(chaos_context(result(s)))
    assert "w\\|1 \\`x\\` \\<b\\>" in text and "<b>" not in text


def test_write_report_writes_history_json_and_markdown(tmp_path: Path) -> None:
    r = dataclasses.replace(failing(), out=tmp_path)
    paths = write_report(r)
    assert [p.name for p in paths] == ["history.ndjson", "report.json", "report.md"]
    assert all(p.stat().st_size > 0 for p in paths)


def _documented() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    current = None
    for line in DOCS.read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            out[current] = set()
        elif line.startswith("#"):
            current = None  # a section of another level ends the context's table
        elif current and line.startswith("| `"):
            out[current].add(line.split("`")[1])
    return out


def test_docs_chaos_md_documents_every_context_field() -> None:
    documented = _documented()
    for cls in (
        ChaosContext,
        FaultKindRow,
        FaultRow,
        InvariantView,
        LatencyRow,
        RecoveryRow,
        SkipRow,
        TicketCount,
    ):
        fields = {f.name for f in dataclasses.fields(cls)}
        assert documented.get(cls.__name__) == fields, cls.__name__
        assert (cls.__doc__ or "").strip(), cls.__name__
