"""What machine and software a result came from.

Baselines are only compared with results whose selected fingerprint fields match, so the
fields kept here are the ones that move onnxruntime latency: CPU model, usable cores, the ISA
extensions its kernels dispatch on, and the onnxruntime build.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psutil

from export.machine import cpu_info, usable_cpu_count
from perf.measure.gpu_state import gpu_fingerprint

NVIDIA_SMI_TIMEOUT_S = 5.0

# Normalised (lowercase, no "_" or ".") names of the extensions onnxruntime's CPU kernels
# (MLAS) dispatch on. Linux spells some with underscores ("avx512_vnni") and py-cpuinfo's
# CPUID probe without ("avx512vnni").
RELEVANT_ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512vnni",
    "avx512bf16",
    "avx512fp16",
    "avxvnni",
    "amxtile",
    "amxint8",
    "amxbf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)

# Best tier first; the slug names the highest one present.
_ISA_TIERS = ("amxint8", "avx512vnni", "avx512f", "avxvnni", "avx2", "avx", "sve", "asimd")
_BRAND_NOISE = re.compile(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core", re.IGNORECASE)

DEFAULT_FIELDS = ("cpu_model", "usable_cores", "isa_flags", "onnxruntime_version")


def normalise_isa_flags(flags: Iterable[str]) -> list[str]:
    """The relevant extensions among ``flags``, deduplicated and spelled one way, sorted."""
    normalised = {re.sub(r"[_.]", "", flag.strip().lower()) for flag in flags}
    return sorted(normalised & set(RELEVANT_ISA_FLAGS))


def machine_fingerprint(
    info: Mapping[str, Any] | None = None, nvml: Any | None = None
) -> dict[str, Any]:
    """The machine; ``info`` replaces py-cpuinfo's dict, ``nvml`` the NVML module (tests pass
    fakes). ``gpu_details`` (perf.measure.gpu_state: driver, clocks, locks) is only there where
    NVML sees a GPU, so a CPU machine's fingerprint is what it always was."""
    info = cpu_info() if info is None else info
    fingerprint = {
        "cpu_model": info.get("brand_raw") or platform.processor() or "unknown",
        "cpu_arch": info.get("arch") or platform.machine(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": usable_cpu_count(),
        "isa_flags": normalise_isa_flags(info.get("flags", [])),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.system(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu_info(),
    }
    details = gpu_fingerprint(nvml)
    if details is not None:
        fingerprint["gpu_details"] = details
    return fingerprint


def gpu_info() -> dict[str, Any] | None:
    """NVIDIA GPU names, driver and CUDA version from nvidia-smi; None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = _run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if not query:
        return None
    return parse_nvidia_smi(query, _run([smi]) or "")


def parse_nvidia_smi(query_csv: str, summary: str) -> dict[str, Any] | None:
    """``query_csv``: "name, driver" lines; ``summary``: plain nvidia-smi (has the CUDA version)."""
    rows = [[cell.strip() for cell in line.split(",")] for line in query_csv.strip().splitlines()]
    rows = [row for row in rows if len(row) >= 2 and row[0]]
    if not rows:
        return None
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", summary)
    return {
        "names": [row[0] for row in rows],
        "driver": rows[0][1],
        "cuda": cuda.group(1) if cuda else None,
    }


def _run(command: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def software_fingerprint() -> dict[str, Any]:
    import numpy
    import onnxruntime

    return {
        "onnxruntime_version": onnxruntime.__version__,
        "onnxruntime_distributions": onnxruntime_distributions(),
        "onnxruntime_build": _build_info(onnxruntime),
        "providers": list(onnxruntime.get_available_providers()),
        "numpy_version": numpy.__version__,
    }


def onnxruntime_distributions() -> dict[str, str]:
    """Installed distributions providing the ``onnxruntime`` package, with versions.

    More than one (onnxruntime and onnxruntime-gpu) means the last installed silently won.
    """
    names = importlib.metadata.packages_distributions().get("onnxruntime", [])
    versions = {}
    for name in sorted(set(names)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _build_info(onnxruntime: Any) -> str | None:
    get_build_info = getattr(onnxruntime, "get_build_info", None)
    return get_build_info() if get_build_info else None


def field_value(fp: Mapping[str, Any], field: str) -> Any:
    """A field by name; dotted names reach into nested dicts ("gpu.names"). Missing -> None."""
    value: Any = fp
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _check_fields(fields: Iterable[str]) -> None:
    if isinstance(fields, str):  # would silently select one field per character
        raise TypeError(f"fields must be a list of names, got the string {fields!r}")


def fingerprint_id(fp: Mapping[str, Any], fields: Iterable[str] = DEFAULT_FIELDS) -> str:
    """A 12-hex-digit hash of the selected fields only; field order does not matter."""
    _check_fields(fields)
    selected = {field: field_value(fp, field) for field in sorted(set(fields))}
    payload = json.dumps(selected, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def fingerprint_slug(fp: Mapping[str, Any]) -> str:
    """A readable machine name for folder names, e.g. ``amd-epyc-2c-avx512vnni``."""
    brand = _BRAND_NOISE.sub(" ", str(fp.get("cpu_model") or ""))
    parts = re.findall(r"[a-z0-9]+", brand.lower())[:4] or ["unknown"]
    if fp.get("usable_cores"):
        parts.append(f"{fp['usable_cores']}c")
    flags = set(fp.get("isa_flags") or [])
    tier = next((flag for flag in _ISA_TIERS if flag in flags), None)
    if tier:
        parts.append(tier)
    return "-".join(parts)


def diff_fingerprints(
    a: Mapping[str, Any], b: Mapping[str, Any], fields: Iterable[str] = DEFAULT_FIELDS
) -> list[str]:
    """``"field: A != B"`` for each selected field whose values differ."""
    _check_fields(fields)
    diffs = []
    for field in fields:
        left, right = field_value(a, field), field_value(b, field)
        if left != right:
            diffs.append(f"{field}: {left!r} != {right!r}")
    return diffs


@functools.lru_cache(maxsize=1)
def machine_and_software() -> dict[str, Any]:
    """Everything that can change what a model computes or how fast: both fingerprints, probed
    once per process (py-cpuinfo and nvidia-smi take about half a second). Do not mutate."""
    return {"machine": machine_fingerprint(), "software": software_fingerprint()}
