"""Benchmarks for ``make bench``: each module measures one target and reports a ratio."""
