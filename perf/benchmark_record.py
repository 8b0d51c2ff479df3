"""Hand our own per-call samples to pytest-benchmark, so that its JSON, --benchmark-save,
--benchmark-autosave and --benchmark-compare see them.

pytest-benchmark has no public API for externally timed calls (ionelmc/pytest-benchmark#52); this
uses the documented workaround from that thread in one place, and tests/ checks the JSON it
produces. With ``pedantic(rounds=N, iterations=1)`` semantics, one round is one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def record_samples(benchmark: Any, samples_ms: Sequence[float], extra_info: dict[str, Any]) -> None:
    benchmark.extra_info.update(extra_info)
    if benchmark.disabled:  # --benchmark-disable, or xdist without --benchmark-enable
        return
    benchmark._mode = "benchmark.pedantic(...)"
    stats = benchmark._make_stats(1)
    for value in samples_ms:
        stats.update(value / 1e3)  # pytest-benchmark stores seconds
