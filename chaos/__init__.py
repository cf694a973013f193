"""Run Doctor's chaos checks: deterministic fault injection against real runs."""

__all__: list[str] = []
