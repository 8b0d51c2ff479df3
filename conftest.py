"""Registers the latency suite's pytest plugin for every directory (perf/ and tests/)."""

import os

# OpenBLAS threads spin after each call and would slow a model call timed right after numpy work
# (statistics, numerics checks); the variable is read when numpy loads, so set it before any
# import.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")

pytest_plugins = ["perf.plugin"]
