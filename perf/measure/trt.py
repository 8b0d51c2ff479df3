"""TensorRT session options: explicit optimisation profiles and caches keyed by GPU and versions.

Without explicit profiles TensorRT builds its engine for the first shape it sees and rebuilds it
when a later call's shape falls outside; a rebuild inside a timed call is seconds, not latency.
The profile here covers every input shape the run uses, so no timed call rebuilds. An engine (and
a timing cache) is only valid for the GPU model and the TensorRT and onnxruntime builds that made
it, so the cache folder is keyed by all three.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from perf.measure.fingerprint import gpu_info

Shape = tuple[int, ...]
Shapes = Mapping[str, Shape]  # input name -> shape of one call

_UNSAFE = re.compile(r"[^A-Za-z0-9.]+")


def _dims(shape: Shape) -> str:
    return "x".join(str(dim) for dim in shape)


def _profile(names: Sequence[str], shapes: Mapping[str, Shape]) -> str:
    return ",".join(f"{name}:{_dims(shapes[name])}" for name in names)


def _check_ranks(calls: Sequence[Shapes]) -> list[str]:
    if not calls:
        raise ValueError("a TensorRT profile needs the shapes of at least one call")
    names = sorted(calls[0])
    for call in calls:
        if sorted(call) != names or any(len(call[n]) != len(calls[0][n]) for n in names):
            raise ValueError(f"calls disagree on input names or ranks: {calls[0]} vs {call}")
    return names


def _per_axis(pick: Callable[[Iterable[int]], int], shapes: Sequence[Shape]) -> Shape:
    return tuple(pick(dims) for dims in zip(*shapes, strict=True))


def profile_options(calls: Sequence[Shapes]) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes covering every call's shapes, e.g. ``audio:1x48000``.

    min and max are per axis over the calls; opt is the most common call's shapes (the first of
    equally common ones), which TensorRT tunes its kernels for.
    """
    names = _check_ranks(calls)
    lowest = {n: _per_axis(min, [c[n] for c in calls]) for n in names}
    highest = {n: _per_axis(max, [c[n] for c in calls]) for n in names}
    keys = [tuple(tuple(c[n]) for n in names) for c in calls]
    opt = calls[keys.index(max(keys, key=keys.count))]  # max: the first of equally common
    return {
        "trt_profile_min_shapes": _profile(names, lowest),
        "trt_profile_opt_shapes": _profile(names, opt),
        "trt_profile_max_shapes": _profile(names, highest),
    }


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text.strip()).strip("-").lower()


def cache_key(gpu_name: str | None, trt_version: str | None, ort_version: str | None) -> str:
    """Folder name for engine and timing caches; an unknown part says ``unknown-...``."""
    gpu = _slug(gpu_name or "") or "unknown-gpu"
    trt = f"trt{_slug(trt_version)}" if trt_version else "unknown-trt"
    ort = f"ort{_slug(ort_version)}" if ort_version else "unknown-ort"
    return f"{gpu}_{trt}_{ort}"


@functools.cache
def gpu_name() -> str | None:
    """The first GPU's model name (the fingerprint's nvidia-smi probe), or None without one."""
    info = gpu_info()
    return info["names"][0] if info else None


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def engine_cache_dir(root: Path) -> Path:
    """``root/tensorrt/<gpu>_<trt>_<ort>``: this machine's engine and timing cache folder."""
    key = cache_key(
        gpu_name(),
        _version("tensorrt", "tensorrt-cu12", "tensorrt-libs", "tensorrt-cu12-libs"),
        _version("onnxruntime-gpu", "onnxruntime"),
    )
    return root / "tensorrt" / key


def engine_cache_state(options: Mapping[str, str]) -> str | None:
    """Before a session is made from TensorRT ``options``: "from cache" when an engine is in
    their cache folder (the session loads it), "built" when not; None for other providers."""
    path = options.get("trt_engine_cache_path")
    if path is None:
        return None
    folder = Path(path)
    return "from cache" if folder.is_dir() and any(folder.glob("*.engine")) else "built"
