"""Which benchmarks to run: variant x provider x input duration x batch, from options and globs."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from export.inputs import axis_key, make_inputs, read_input_specs
from export.recipes import all_variant_names

# `tiny` is for the suite's own tests: only a pattern that names it selects it.
TEST_ONLY_ARCHITECTURES = ("tiny",)


class SelectionError(ValueError):
    """A --perf-* selection that matches nothing or cannot be parsed."""


@dataclasses.dataclass(frozen=True)
class PerfCase:
    """One benchmark. ``variant`` is ``ARCH/VARIANT`` or, for ``--perf-model``, a file path."""

    variant: str
    provider: str  # short name: cpu, cuda, tensorrt, ...
    duration_s: float
    batch: int = 1
    model_file: Path | None = None
    # --perf-lengths: (seconds, weight) of each input length of a traffic mix; duration_s is
    # then the first length
    mix: tuple[tuple[float, float], ...] = ()

    @property
    def id(self) -> str:
        length = "mix" if self.mix else format_duration(self.duration_s)
        return f"{self.variant}-{self.provider}-{length}" + (
            f"-b{self.batch}" if self.batch != 1 else ""
        )

    @property
    def architecture(self) -> str | None:
        return None if self.model_file else self.variant.split("/", 1)[0]


def format_duration(seconds: float) -> str:
    return f"{seconds:g}s"


def split_list(values: Iterable[str]) -> list[str]:
    """Options and ini lines accept both `a,b` and `a b` and repetition."""
    return [item for value in values for item in value.replace(",", " ").split() if item]


def select_variants(patterns: Sequence[str]) -> list[str]:
    known = all_variant_names()
    selected: list[str] = []
    for pattern in patterns:
        matches = [
            name
            for name in known
            if fnmatch.fnmatchcase(name, pattern)
            and (name.split("/")[0] not in TEST_ONLY_ARCHITECTURES or pattern.startswith("tiny"))
        ]
        if not matches:
            raise SelectionError(
                f"--perf-variants {pattern!r} matches no variant; known: {', '.join(known)}"
            )
        selected += [name for name in matches if name not in selected]
    return selected


def select_providers(patterns: Sequence[str], known: Sequence[str]) -> list[str]:
    selected: list[str] = []
    for pattern in patterns:
        matches = [name for name in known if fnmatch.fnmatchcase(name, pattern.lower())]
        if not matches:
            raise SelectionError(
                f"--perf-providers {pattern!r} matches no provider; known: {', '.join(known)}"
            )
        selected += [name for name in matches if name not in selected]
    return selected


def parse_durations(values: Sequence[str], option: str = "--perf-durations") -> list[float]:
    durations = []
    for value in values:
        text = value.strip().lower().removesuffix("s")
        try:
            seconds = float(text)
        except ValueError:
            raise SelectionError(
                f"{option} {value!r} is not a duration; write e.g. 1s,3s,10s"
            ) from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise SelectionError(f"{option} {value!r} must be positive and finite")
        durations.append(seconds)
    return durations


def parse_lengths(values: Sequence[str]) -> tuple[tuple[float, float], ...]:
    """``--perf-lengths 0.5s:1,3s:2,10s:1``: input lengths with weights (default 1 each)."""
    mix = []
    for item in split_list(values):
        length, _, weight_text = item.partition(":")
        (seconds,) = parse_durations([length], option="--perf-lengths")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise SelectionError(
                f"--perf-lengths {item!r}: the weight after ':' must be a positive number, "
                "e.g. 3s:2"
            )
        mix.append((seconds, weight))
    return tuple(mix)


def build_cases(
    variants: Sequence[str],
    providers: Sequence[str],
    durations: Sequence[float],
    batch: int,
    model_files: Sequence[Path] = (),
) -> list[PerfCase]:
    cases = [
        PerfCase(variant, provider, duration, batch)
        for variant in variants
        for provider in providers
        for duration in durations
    ]
    cases += [
        PerfCase(str(path), provider, duration, batch, model_file=path)
        for path in model_files
        for provider in providers
        for duration in durations
    ]
    return cases


def case_inputs(
    model_path: Path,
    case: PerfCase,
    dims: Mapping[str, int],
    fixed: Mapping[str, object] | None = None,
) -> dict[str, np.ndarray]:
    specs = read_input_specs(model_path)
    # With several --perf-model files, a fixed input applies to those that have it.
    names = {spec.name for spec in specs}
    fixed = {k: v for k, v in (fixed or {}).items() if k in names}
    dim_values = dict(dims)
    for spec in specs:  # a dynamic leading axis, named or not, is the batch
        if spec.shape and isinstance(spec.shape[0], str):
            dim_values.setdefault(spec.shape[0], case.batch)
        elif spec.shape and spec.shape[0] is None:
            dim_values.setdefault(axis_key(spec.name, 0), case.batch)
    return make_inputs(specs, dim_values, fixed, audio_seconds=case.duration_s)
