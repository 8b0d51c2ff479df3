"""PerfOptions for unit tests: the required fields with small defaults, any of them replaced."""

from __future__ import annotations

import dataclasses
from typing import Any

from perf.config import PerfOptions
from perf.measure.sampling import SamplingPolicy

DEFAULTS = PerfOptions(
    variants=("tiny/fp32",),
    providers=("cpu",),
    durations=(3.0,),
    batch=1,
    model_files=(),
    dims={},
    fixed_inputs={},
    weights={},
    intra_op_threads=1,
    spinning=True,
    policy=SamplingPolicy(),
    concurrency=0,
    concurrency_seconds=1.0,
    cache_dir=None,
)


def perf_options(**changes: Any) -> PerfOptions:
    return dataclasses.replace(DEFAULTS, **changes)
