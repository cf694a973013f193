"""ExecutorConfig: budgets that must nest, and values that must make sense."""

from __future__ import annotations

from typing import Any

import pytest

from executor import BudgetError, ExecutorConfig, UsageError


def test_the_defaults_are_consistent() -> None:
    cfg = ExecutorConfig().validate()
    assert cfg.heartbeat_interval_s * cfg.heartbeat_misses < cfg.self_fence_s < cfg.lease_ttl_s


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"heartbeat_interval_s": 15.0}, "must be below self_fence_s"),
        ({"self_fence_s": 60.0}, "must be below lease_ttl_s"),
        ({"heartbeat_misses": 1}, "heartbeat_misses = 1 must be >= 2"),
        ({"heartbeat_interval_s": 0.0}, "heartbeat_interval_s = 0.0 must be > 0"),
        ({"stage_grace_s": -1.0}, "stage_grace_s = -1.0 must be >= 0"),
        (
            {"lease_ttl_s": 0.001, "self_fence_s": 0.00075, "heartbeat_interval_s": 0.0001},
            "lease_ttl_s = 0.001 s is shorter than the 1 s a lease needs",
        ),
    ],
)
def test_inconsistent_timing_budgets_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BudgetError, match=message):
        ExecutorConfig(**overrides).validate()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"breaker_limit": 0}, "breaker_limit = 0 must be >= 1"),
        ({"max_parallel": 0}, "max_parallel = 0 must be >= 1"),
        ({"shell": ()}, "shell must name a program"),
        ({"agent_command": ("agent", "{prompt}")}, "unknown placeholder {prompt}"),
    ],
)
def test_meaningless_values_are_usage_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ExecutorConfig(**overrides).validate()


def test_the_recorded_configuration_keeps_environment_values_out() -> None:
    cfg = ExecutorConfig(env=(("PATH", "/bin"), ("API_TOKEN", "secret")))
    assert cfg.to_json()["env"] == ["API_TOKEN", "PATH"]
