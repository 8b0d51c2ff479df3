"""What the NVIDIA GPU was doing while we measured: clocks, heat, power, throttling, neighbours.

The GPU analogue of perf.measure.contention. A GPU that boosts, heats up and throttles moves
its SM clock by 10-30% within a run, and another process's kernels share its SMs, so a GPU
timing is only trusted when the clock held still, no thermal/power/hardware slowdown was
reported and no other process ran on it. Read through NVML (``pip install nvidia-ml-py``,
module ``pynvml``, imported lazily); every entry point takes an ``nvml`` object so tests pass
a fake. Without NVML or a GPU nothing raises: the fingerprint is None with a reason, the
monitor's result an unavailable GpuState.

Locking the clocks on a GPU runner (as root; the settings last until reboot or reset)::

    nvidia-smi -pm 1                 # persistence mode: the driver stays loaded between runs
    nvidia-smi -q -d SUPPORTED_CLOCKS  # pick a sustainable SM clock, below the boost maximum
    nvidia-smi -lgc 1410,1410        # lock the SM clock (MIN,MAX in MHz); -i N for one GPU
    nvidia-smi -lmc 2619,2619        # optionally the memory clock too, where supported
    nvidia-smi -rgc                  # undo: reset the locked SM clock (-rmc for memory)

NVML has no getter for locked clocks; a lock shows as the "user_defined_clocks" clock-event
reason (bit 0x2, shared with application clocks set by ``nvidia-smi -ac``), or as
application clocks differing from their defaults.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

DEFAULT_INTERVAL_S = 0.1
DEFAULT_CLOCK_TOLERANCE = 0.05  # SM clock range over its median that still counts as steady

# NVML's enum values (nvml.h); stable across driver versions, so fakes need not define them.
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0

# nvmlClocksEventReason* bits (formerly nvmlClocksThrottleReason*).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "user_defined_clocks",  # also application clocks (nvidia-smi -ac)
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# Reasons that mean the GPU ran slower than it was set to: a timing under them is not to be trusted.
SLOWDOWN_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "board_limit",
        "reliability",
    }
)


def decode_clock_reasons(mask: int) -> frozenset[str]:
    """Names of the clock-event (throttle) reason bits set in ``mask``; unknown bits as hex."""
    names = {name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit}
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.add(f"unknown_0x{unknown:x}")
    return frozenset(names)


def open_nvml(nvml: Any | None = None) -> tuple[Any | None, str | None]:
    """``(nvml, None)`` initialised with at least one GPU, or ``(None, reason)``."""
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, "NVML bindings not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML could not start: {exc or type(exc).__name__}"
    count = query(nvml.nvmlDeviceGetCount) or 0
    if count < 1:
        close_nvml(nvml)
        return None, "NVML found no GPU"
    return nvml, None


def close_nvml(nvml: Any) -> None:
    query(nvml.nvmlShutdown)


def query(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, or None where NVML says the GPU does not support it (or fails)."""
    try:
        value = function(*args)
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else value


def clock_reasons_mask(nvml: Any, handle: Any) -> int | None:
    """Current clock-event reasons; the old "throttle" name on bindings before NVML 12.5."""
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    return query(getter, handle) if getter else None


def _cuda_version(encoded: int | None) -> str | None:
    return f"{encoded // 1000}.{encoded % 1000 // 10}" if encoded else None


def _first(value: Any) -> Any:
    """MIG and persistence getters return (current, pending) or a plain value by version."""
    return value[0] if isinstance(value, tuple | list) else value


def _clocks(nvml: Any, handle: Any) -> dict[str, int | None]:
    clocks = {}
    for label, clock in (("sm", NVML_CLOCK_SM), ("mem", NVML_CLOCK_MEM)):
        clocks[f"{label}_max_mhz"] = query(nvml.nvmlDeviceGetMaxClockInfo, handle, clock)
        clocks[f"{label}_current_mhz"] = query(nvml.nvmlDeviceGetClockInfo, handle, clock)
        clocks[f"{label}_app_mhz"] = query(nvml.nvmlDeviceGetApplicationsClock, handle, clock)
        default = getattr(nvml, "nvmlDeviceGetDefaultApplicationsClock", None)
        clocks[f"{label}_app_default_mhz"] = query(default, handle, clock) if default else None
    return clocks


def clocks_locked(clocks: dict[str, int | None], reasons: frozenset[str]) -> bool:
    """Whether clocks look pinned: user-defined clocks in force, or app clocks off default."""
    if "user_defined_clocks" in reasons:
        return True
    return any(
        clocks[f"{label}_app_mhz"] is not None
        and clocks[f"{label}_app_default_mhz"] is not None
        and clocks[f"{label}_app_mhz"] != clocks[f"{label}_app_default_mhz"]
        for label in ("sm", "mem")
    )


def _device(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    clocks = _clocks(nvml, handle)
    mask = clock_reasons_mask(nvml, handle)
    reasons = decode_clock_reasons(mask or 0)
    return {
        "index": index,
        "name": query(nvml.nvmlDeviceGetName, handle),
        "persistence_mode": _first(query(nvml.nvmlDeviceGetPersistenceMode, handle)),
        "mig_mode": _first(query(nvml.nvmlDeviceGetMigMode, handle)),
        "clocks": clocks,
        "clock_reasons": sorted(reasons),
        "clocks_locked": clocks_locked(clocks, reasons),
    }


def onnxruntime_gpu_build() -> dict[str, str | None]:
    """The CUDA/cuDNN versions this onnxruntime wheel was built for (GPU wheels say so)."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return {"cuda": None, "cudnn": None}
    return {
        "cuda": getattr(info, "cuda_version", None),
        "cudnn": getattr(info, "cudnn_version", None),
    }


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        return str(importlib.import_module("tensorrt").__version__)
    except Exception:  # a broken TensorRT install must not break a fingerprint
        return None


def probe_gpus(nvml: Any | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """``(fingerprint, None)`` for the visible GPUs, or ``(None, reason)`` without any."""
    nvml, reason = open_nvml(nvml)
    if nvml is None:
        return None, reason
    try:
        count = query(nvml.nvmlDeviceGetCount) or 0
        fingerprint = {
            "driver_version": query(nvml.nvmlSystemGetDriverVersion),
            "cuda_driver_version": _cuda_version(query(nvml.nvmlSystemGetCudaDriverVersion)),
            "devices": [_device(nvml, index) for index in range(count)],
            "onnxruntime_build": onnxruntime_gpu_build(),
            "tensorrt_version": tensorrt_version(),
        }
    finally:
        close_nvml(nvml)
    return fingerprint, None


def gpu_fingerprint(nvml: Any | None = None) -> dict[str, Any] | None:
    """The visible GPUs and their clock setup; None without NVML or a GPU (probe_gpus says why)."""
    return probe_gpus(nvml)[0]


@dataclass(frozen=True)
class GpuSample:
    sm_mhz: int | None
    mem_mhz: int | None
    temperature_c: int | None
    power_w: float | None
    reasons: frozenset[str]
    other_pids: frozenset[int]


def own_pids() -> frozenset[int]:
    """This process and its descendants: their GPU use is the measurement itself."""
    me = psutil.Process()
    return frozenset({me.pid, *(child.pid for child in me.children(recursive=True))})


def read_sample(nvml: Any, handle: Any, ours: frozenset[int]) -> GpuSample:
    power_mw = query(nvml.nvmlDeviceGetPowerUsage, handle)
    processes = query(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    return GpuSample(
        sm_mhz=query(nvml.nvmlDeviceGetClockInfo, handle, NVML_CLOCK_SM),
        mem_mhz=query(nvml.nvmlDeviceGetClockInfo, handle, NVML_CLOCK_MEM),
        temperature_c=query(nvml.nvmlDeviceGetTemperature, handle, NVML_TEMPERATURE_GPU),
        power_w=power_mw / 1000 if power_mw is not None else None,
        reasons=decode_clock_reasons(clock_reasons_mask(nvml, handle) or 0),
        other_pids=frozenset(p.pid for p in processes if p.pid not in ours),
    )


def _present(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


@dataclass(frozen=True)
class GpuState:
    """The GPU over one measurement; ``available`` False (with ``reason``) without NVML/GPU."""

    available: bool
    reason: str | None = None
    device_index: int = 0
    samples: int = 0
    sm_mhz_min: int | None = None
    sm_mhz_median: float | None = None
    sm_mhz_max: int | None = None
    mem_mhz_median: float | None = None
    temperature_c_max: int | None = None
    power_w_max: float | None = None
    reasons_seen: tuple[str, ...] = ()
    other_pids: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def unavailable(cls, reason: str) -> GpuState:
        return cls(available=False, reason=reason)

    def sm_clock_spread(self) -> float | None:
        """SM clock range over its median (0.0: it never moved)."""
        if self.sm_mhz_min is None or self.sm_mhz_max is None or not self.sm_mhz_median:
            return None
        return (self.sm_mhz_max - self.sm_mhz_min) / self.sm_mhz_median

    def problems(self, clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE) -> list[str]:
        """Why timings taken in this state are not to be trusted; empty when they are."""
        found = []
        spread = self.sm_clock_spread()
        if spread is not None and spread > clock_tolerance:
            found.append(
                f"SM clock moved {self.sm_mhz_min}-{self.sm_mhz_max} MHz ({spread:.0%} of its "
                f"median {self.sm_mhz_median:.0f}; tolerance {clock_tolerance:.0%})"
            )
        slowdowns = sorted(set(self.reasons_seen) & SLOWDOWN_REASONS)
        if slowdowns:
            found.append(f"clocks slowed down: {', '.join(slowdowns)}")
        if self.other_pids:
            pids = ", ".join(str(pid) for pid in self.other_pids)
            found.append(f"other processes used the GPU (pids {pids})")
        return found

    def flagged(self, clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE) -> bool:
        return bool(self.problems(clock_tolerance))

    def warning(self, clock_tolerance: float = DEFAULT_CLOCK_TOLERANCE) -> str | None:
        problems = self.problems(clock_tolerance)
        if not problems:
            return None
        return f"GPU timings may be off: {'; '.join(problems)} ({self.describe()})"

    def describe(self) -> str:
        if not self.available:
            return f"GPU state unavailable: {self.reason}"
        return (
            f"GPU {self.device_index}, {self.samples} samples: SM clock {self.sm_mhz_min}/"
            f"{self.sm_mhz_median}/{self.sm_mhz_max} MHz (min/median/max), "
            f"max {self.temperature_c_max} C, max {self.power_w_max} W"
        )

    def to_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["reasons_seen"] = list(self.reasons_seen)
        report["other_pids"] = list(self.other_pids)
        report["sm_clock_spread"] = self.sm_clock_spread()
        report["warning"] = self.warning()
        return report


def summarise(samples: list[GpuSample], device_index: int = 0) -> GpuState:
    if not samples:
        return GpuState.unavailable("no GPU sample was taken")
    sm = _present(s.sm_mhz for s in samples)
    mem = _present(s.mem_mhz for s in samples)
    temperatures = _present(s.temperature_c for s in samples)
    power = _present(s.power_w for s in samples)
    return GpuState(
        available=True,
        device_index=device_index,
        samples=len(samples),
        sm_mhz_min=int(min(sm)) if sm else None,
        sm_mhz_median=statistics.median(sm) if sm else None,
        sm_mhz_max=int(max(sm)) if sm else None,
        mem_mhz_median=statistics.median(mem) if mem else None,
        temperature_c_max=int(max(temperatures)) if temperatures else None,
        power_w_max=max(power) if power else None,
        reasons_seen=tuple(sorted(set().union(*(s.reasons for s in samples)))),
        other_pids=tuple(sorted(set().union(*(s.other_pids for s in samples)))),
    )


class GpuMonitor:
    """``with GpuMonitor() as monitor: ...`` then ``monitor.result`` (a GpuState).

    Samples GPU ``device_index`` every ``interval_s`` in a daemon thread; ``sample()`` takes
    one sample now (tests drive it directly). Without NVML or a GPU it samples nothing and
    ``result`` is ``GpuState.unavailable(reason)``. ``ours`` gives the pids whose GPU use is
    the measurement; in a container without the host's pid namespace NVML reports host pids,
    so pass the host pids there (or a callable that ignores processes) to avoid false flags.
    """

    def __init__(
        self,
        nvml: Any | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        device_index: int = 0,
        ours: Callable[[], frozenset[int]] = own_pids,
    ) -> None:
        self._nvml_in = nvml
        self._interval_s = interval_s
        self._device_index = device_index
        self._ours = ours
        self._nvml: Any | None = None
        self._handle: Any | None = None
        self._reason: str | None = None
        self._samples: list[GpuSample] = []
        self._our_pids: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: GpuState | None = None

    def open(self) -> bool:
        """Starts NVML and finds the device; False (reason kept) where there is none."""
        self._nvml, self._reason = open_nvml(self._nvml_in)
        if self._nvml is not None:
            # once, not per sample: walking the process tree every 0.1 s would load the CPU
            # beside the timed calls
            self._our_pids = self._ours()
            self._handle = query(self._nvml.nvmlDeviceGetHandleByIndex, self._device_index)
            if self._handle is None:
                self._reason = f"NVML has no GPU {self._device_index}"
                self._close()
        return self._nvml is not None

    def sample(self) -> GpuSample | None:
        if self._nvml is None:
            return None
        taken = read_sample(self._nvml, self._handle, self._our_pids)
        self._samples.append(taken)
        return taken

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def start(self) -> None:
        self.result, self._samples = None, []
        self._stop.clear()
        if self.open():
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="gpu-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> GpuState:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._nvml is None:
            self.result = GpuState.unavailable(self._reason or "GpuMonitor was not started")
            return self.result
        self.sample()  # the end state, whatever the interval
        self.result = summarise(self._samples, self._device_index)
        self._close()
        return self.result

    def _close(self) -> None:
        if self._nvml is not None:
            close_nvml(self._nvml)
        self._nvml, self._handle = None, None

    def __enter__(self) -> GpuMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
