"""Determinism: one seed, one workload, one schedule; and the options that shape a campaign."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaos import FAULTS, CampaignConfig, UsageError, build_workload, parse_duration, plan_schedule
from chaos._faults import fault_names, parse_faults, select_faults

ALL = tuple(f.name for f in FAULTS)


def test_the_schedule_is_the_same_for_the_same_seed() -> None:
    assert plan_schedule(random.Random(42), 60, ALL) == plan_schedule(random.Random(42), 60, ALL)


def test_another_seed_gives_another_schedule() -> None:
    assert plan_schedule(random.Random(1), 60, ALL) != plan_schedule(random.Random(2), 60, ALL)


def test_every_selected_fault_comes_up_even_in_a_short_campaign() -> None:
    for seed in range(20):
        plan = plan_schedule(random.Random(seed), 15, ALL)
        assert {p.fault for p in plan} == set(ALL)
        assert all(0 < p.at < 15 for p in plan)
        assert [p.at for p in plan] == sorted(p.at for p in plan)


def test_the_workload_files_are_identical_for_the_same_seed(tmp_path: Path) -> None:
    a = build_workload(random.Random(9), tmp_path / "a")
    b = build_workload(random.Random(9), tmp_path / "b")
    assert [p.path.read_bytes() for p in a.pipelines] == [p.path.read_bytes() for p in b.pipelines]
    arrivals_a = [a.draw(r).name for r in [random.Random(5)] for _ in range(30)]
    rng = random.Random(5)
    assert arrivals_a == [b.draw(rng).name for _ in range(30)]


def test_deterministic_pipelines_declare_their_breaker_limit(tmp_path: Path) -> None:
    w = build_workload(random.Random(3), tmp_path)
    loops = [p for p in w.pipelines if p.kind == "deterministic"]
    assert loops and all(p.breaker_limit is not None for p in loops)
    assert all(f"breaker_limit={p.breaker_limit}" in p.path.read_text() for p in loops)


def test_an_unknown_fault_name_is_refused_with_the_closest_names() -> None:
    with pytest.raises(UsageError, match=r"unknown fault 'sigkil_worker' \(did you mean "):
        select_faults(["sigkil_worker"])


def test_each_fault_is_selectable_by_its_name_alone() -> None:
    for name in fault_names():
        assert [f.name for f in select_faults([name])] == [name]
        assert parse_faults(name) == (name,)


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("20m", 1200), ("1m30s", 90)])
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_the_replay_command_names_the_seed_duration_faults_and_out(tmp_path: Path) -> None:
    cfg = CampaignConfig(seed=5, duration_s=30, faults=("torn_write",), out=tmp_path / "c")
    expected = "doctor chaos run --seed 5 --duration 30s --workers 4 --faults torn_write --out"
    assert cfg.replay_command() == f"{expected} {tmp_path}/c"


def test_the_replay_command_never_prints_a_database_password(tmp_path: Path) -> None:
    cfg = CampaignConfig(seed=5, db="postgresql://u:hunter2@db/q", out=tmp_path)
    assert "hunter2" not in cfg.replay_command() and "postgresql://u@db/q" in cfg.replay_command()


def test_one_worker_is_refused_because_someone_must_stay_awake_to_reap() -> None:
    with pytest.raises(UsageError, match="at least 2"):
        CampaignConfig(seed=1, workers=1).validate()


def test_every_fault_declares_a_summary_and_known_finding_codes() -> None:
    import doctor

    codes = {d.__name__ for d in doctor.DETECTORS}
    for f in FAULTS:
        assert f.summary and f.may_cause <= codes, f.name
        assert f.reclaims in ("", "sigkill", "sigstop")
