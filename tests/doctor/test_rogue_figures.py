"""``doctor diagnose --json`` on the rebuilt rogue-slow run reports every figure of incident 04.

The figures are the incident report's own (shared/incidents/04-rogue-slow-run-postmortem.md);
the fixture is rebuilt from its seed, and the doctor runs as a real process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures.rogue import RUN_ID

TOP = ""
B01 = "parallel/fanout/01-impl_dungeon"
B02 = "parallel/fanout/02-impl_combat_items"
B03 = "parallel/fanout/03-impl_monsters"
B04 = "parallel/fanout/04-impl_player_io"


@pytest.fixture(scope="module")
def diagnosis(rogue_run: Path) -> dict[str, Any]:
    root = rogue_run.parent  # built once per session (tests/conftest.py)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "doctor",
            "diagnose",
            "--run-id",
            RUN_ID,
            "--root",
            str(root),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # errors found
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def finding(d: dict[str, Any], code: str, scope: str, **match: Any) -> dict[str, Any]:
    for f in d["findings"]:
        if (
            f["code"] == code
            and f["scope"] == scope
            and all(f["evidence"].get(k) == v or f.get(k) == v for k, v in match.items())
        ):
            return f
    codes = [(f["code"], f["scope"]) for f in d["findings"]]
    raise AssertionError(f"no {code} in {scope!r} matching {match}; have {codes}")


def test_the_run_is_orphaned_and_never_wrote_final_json(diagnosis: dict[str, Any]) -> None:
    assert diagnosis["state"] == "orphaned"
    assert diagnosis["facts"]["final_json"] is False
    assert diagnosis["facts"]["owner_alive"] is False
    assert finding(diagnosis, "missing_final", TOP)["severity"] == "critical"


def test_top_level_counts_match_the_appendix(diagnosis: dict[str, Any]) -> None:
    facts = diagnosis["facts"]
    by_type = facts["events_by_type"]
    assert by_type["stage_heartbeat"] == 39_166
    assert facts["attempts_started"] == by_type["stage_attempt_start"] == 124
    assert facts["attempts_ended"] == by_type["stage_attempt_end"] == 123
    assert by_type["edge_selected"] == 123
    assert by_type["warning"] == 84
    assert by_type["deterministic_failure_cycle_check"] == 77
    assert by_type["stage_retry_blocked"] == 40
    assert facts["started_at"] == "2026-02-10T09:22:03.948370657Z"
    assert facts["last_event_at"] == "2026-02-10T17:10:00.10969594Z"
    assert facts["current_node"] == "fanout"


def test_scaffold_loop_ran_36_times_with_35_back_edges(diagnosis: dict[str, Any]) -> None:
    edges = {(e["from"], e["to"]): e["count"] for e in diagnosis["facts"]["edges"]}
    assert edges[("impl_scaffold", "verify_scaffold")] == 36
    assert edges[("verify_scaffold", "check_scaffold")] == 36
    assert edges[("check_scaffold", "impl_scaffold")] == 35
    loop = finding(diagnosis, "retry_loop", TOP, from_node="check_scaffold")
    assert loop["evidence"]["to_node"] == "impl_scaffold"
    assert loop["evidence"]["traversals"] == 35


def test_attempt_durations_match_the_scaffold_stats(diagnosis: dict[str, Any]) -> None:
    stats = {(s["scope"], s["node_id"]): s for s in diagnosis["facts"]["attempt_stats"]}
    impl, verify = stats[(TOP, "impl_scaffold")], stats[(TOP, "verify_scaffold")]
    assert (impl["min_s"], impl["median_s"], impl["max_s"]) == pytest.approx(
        (171, 294, 1188), abs=1
    )
    assert impl["total_s"] / 3600 == pytest.approx(3.62, abs=0.01)
    assert (verify["min_s"], verify["median_s"], verify["max_s"]) == pytest.approx(
        (132, 230, 299), abs=1
    )
    assert verify["total_s"] / 3600 == pytest.approx(2.25, abs=0.01)


def test_verify_failures_fragment_so_the_breaker_never_trips(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "fragmented_failure_signatures", TOP, node_id="verify_scaffold")[
        "evidence"
    ]
    assert ev["failures"] == 35
    assert ev["unique_reasons"] == 31
    assert ev["max_signature_count_seen"] == 2
    assert ev["breaker_limit"] == 3
    assert ev["canonical_signatures"] < 31
    assert ev["top_signature_count"] >= 3


def test_pre_fanout_share_is_89_7_percent(diagnosis: dict[str, Any]) -> None:
    facts = diagnosis["facts"]
    fanout = next(p for p in facts["phases"] if p["node"] == "fanout")
    assert fanout["first_start"] == "2026-02-10T16:21:49.878354873Z"
    assert fanout["wall_s"] == pytest.approx(48 * 60 + 10, abs=1)
    assert 1 - fanout["share"] == pytest.approx(0.897, abs=0.0006)


def test_7944_stale_heartbeats_over_2890_s_follow_the_fanout(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "stale_heartbeat", TOP)["evidence"]
    assert ev["heartbeats_after_last_progress"] == 7_944
    assert round(ev["span_after_last_progress_s"]) == 2_890
    assert ev["last_progress_at"] == "2026-02-10T16:21:49.878354873Z"
    assert ev["nodes_after_last_progress"]["impl_scaffold"] == 3_514
    assert ev["nodes_after_last_progress"]["verify_scaffold"] == 3_470


def test_branch_01_heartbeats_140_times_over_1661_s_after_success(
    diagnosis: dict[str, Any],
) -> None:
    ev = finding(diagnosis, "stale_heartbeat", B01)["evidence"]
    assert ev["heartbeats_after_last_progress"] == 140
    assert round(ev["span_after_last_progress_s"]) == 1_661
    assert ev["last_progress_at"] == "2026-02-10T16:42:11.818881199Z"


def test_branch_02_lost_its_work_to_the_status_file_contract(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "status_contract_mismatch", B02)["evidence"]
    assert ev["failure_reason"].startswith("missing status.json (auto_status=false)")
    assert ev["found_outcome"] == "success"
    assert ev["found_path"].endswith(".ai/status.json")
    lost = finding(diagnosis, "lost_failure_reason", B02)["evidence"]
    assert lost["reason"] == 'failure_reason must be non-empty when status="fail"'
    assert lost["upstream_reason"].startswith("missing status.json")
    assert diagnosis["facts"]["cost_usd"] == pytest.approx(7.88421675)


def test_branches_03_and_04_loop_on_turn_limits_with_empty_node_retries(
    diagnosis: dict[str, Any],
) -> None:
    loop = finding(diagnosis, "deterministic_retry_loop", B03, node_id="impl_monsters")
    assert loop["evidence"]["count"] == 4
    assert loop["evidence"]["breaker_tripped"] is False
    for scope, retries in ((B03, 6), (B04, 2)):
        drift = finding(diagnosis, "checkpoint_drift", scope)["evidence"]
        assert drift["node_retries_recorded"] == 0
        assert drift["retries_observed"] == retries
        assert finding(diagnosis, "lost_failure_reason", scope)


def test_top_checkpoint_holds_123_entries_for_12_nodes(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "checkpoint_drift", TOP)["evidence"]
    assert ev["completed_nodes_entries"] == 123
    assert ev["completed_nodes_unique"] == 12


def test_telemetry_points_at_stale_nodes_while_the_fanout_runs(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "telemetry_divergence", TOP)["evidence"]
    assert ev == {
        **ev,
        "live_node": "verify_scaffold",
        "checkpoint_node": "check_scaffold",
        "actual_node": "fanout",
    }


def test_the_fanout_never_joined(diagnosis: dict[str, Any]) -> None:
    ev = finding(diagnosis, "unjoined_fanout", TOP)["evidence"]
    assert ev["fanout_node"] == "fanout"
    assert ev["branches"] == 4
    assert ev["started_at"] == "2026-02-10T16:21:49.878354873Z"
