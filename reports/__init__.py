"""Run Doctor's reports: postmortems rendered from diagnoses."""

__all__: list[str] = []
