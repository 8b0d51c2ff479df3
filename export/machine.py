"""What this machine's CPU is, asked once per process: the one CPU probe of the project.

py-cpuinfo reads CPUID (flags such as avx512_vnni, the model name); it takes a fraction of a
second or more, so its answer is cached. Affinity decides the cores this process may use.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """py-cpuinfo's answer, or ``{}`` where it cannot probe (a missing OS tool)."""
    import cpuinfo

    try:
        return dict(cpuinfo.get_cpu_info())
    except Exception:  # py-cpuinfo probes many OS tools; a missing one must not fail a run
        return {}


def usable_cpus() -> set[int] | None:
    """The CPUs this process may run on, or None where affinity is not available."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return None


def usable_cpu_count() -> int:
    cpus = usable_cpus()
    return len(cpus) if cpus else (os.cpu_count() or 1)
