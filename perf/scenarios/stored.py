"""``--benchmark-compare`` when the model changed: the stored model and this tree's, side by side.

A baseline's runs were taken minutes or days ago; these VMs drift 5-13% between runs, so stored
runs alone can resolve only large changes. When a benchmark's model changed since its stored
runs (another cache key) and the stored model is still in the cache, both are measured
interleaved in this process, as ``--perf-against`` does, and that verdict decides.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from export.recipes import parse_variant_name
from perf.measure.cases import PerfCase, case_inputs
from perf.measure.models import ResolvedModel
from perf.measure.numerics import CheckedModels, NumericsRefused
from perf.measure.sessions import SessionSettings
from perf.scenarios.ab import ABOutcome
from perf.scenarios.against import ab_policy, measure_pair
from perf.scenarios.explain import explained
from perf.scenarios.open_loop import Workload
from perf.scenarios.server import server_bench
from perf.scenarios.server_ab import measure_server_pair
from perf.scenarios.traffic import open_workload
from perf.stats.outcome import Outcome

log = logging.getLogger("perf")


def side_by_side_with_stored(
    case: PerfCase,
    stored_key: str,
    models: CheckedModels,
    settings: SessionSettings,
    options: Any,
    rate_rps: float | None = None,
    workers: int | None = None,
) -> ABOutcome | None:
    """A = the model stored under ``stored_key``, B = this tree's; None when A is not cached.
    A's numbers are checked on this machine first, as REF's are. ``options``: PerfOptions.
    With ``rate_rps``, both serve Poisson arrivals at that rate (a server row's comparison)."""
    if case.model_file is not None:
        return None
    recipe = parse_variant_name(case.variant, options.weights)
    artifact = models.cache.lookup(recipe, stored_key)
    if artifact is None:
        return None
    label = f"the stored model {stored_key[:16]}"
    stored = ResolvedModel(
        artifact.model_path,
        artifact.size_bytes,
        stored_key,
        variant=recipe.variant,
        reference_dir=models.cache.reference_dir_of(artifact.directory),
    )
    try:
        models.check(case, stored, settings, label=f" ({label})", remember=False)
    except NumericsRefused as refused:
        return ABOutcome(case.id, label, Outcome.REFUSED, f"{label} is not benchmarked: {refused}")
    head, _ = models.resolve(case, settings)
    policy = ab_policy(options)
    log.info("%s: measuring %s side by side with this tree's", case.id, label)
    progress = functools.partial(log.info, f"{case.id}: %s")
    inputs = case_inputs(head.path, case, options.dims, options.fixed_inputs)
    if rate_rps is None:
        outcome = measure_pair(
            case.id, label, stored.path, head.path, settings, inputs, policy, progress
        )
        return explained(outcome, stored.path, head.path, settings, inputs, policy)

    def serving(path: Path) -> Callable[[], Workload]:
        inputs_for = functools.partial(
            case_inputs, path, dims=options.dims, fixed=options.fixed_inputs
        )
        return lambda: open_workload(path, case, settings, inputs_for)

    outcome = measure_server_pair(
        server_bench(case, rate_rps), label, serving(stored.path), serving(head.path),
        rate_rps, workers or 1, settings.to_dict(), policy, progress,
    )  # fmt: skip
    return explained(outcome, stored.path, head.path, settings, inputs, policy)
