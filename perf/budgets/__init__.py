"""Latency budgets from pyproject.toml and the pass/fail/undecided verdict of samples on one."""
