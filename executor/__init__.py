"""Run Doctor's durable executor: runs pipelines of stages and writes their artifacts."""

__all__: list[str] = []
