"""Registers the latency suite's pytest plugin for every directory (perf/ and tests/)."""

pytest_plugins = ["perf.plugin"]
