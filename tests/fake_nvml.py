"""A scripted stand-in for the ``pynvml`` module: one GPU whose readings follow given sequences.

Each sequence is consumed one reading per sample (the last value repeats), so a test decides
exactly what a GpuMonitor sees without a GPU or any sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

SM, MEM = 1, 2


class NVMLError(Exception):
    pass


@dataclass
class FakeNvml:
    name: str = "NVIDIA H100 80GB HBM3"
    driver: str = "550.54.15"
    cuda_driver: int = 12040
    sm_mhz: Sequence[int] = (1980,)
    mem_mhz: Sequence[int] = (2619,)
    temperature_c: Sequence[int] = (45,)
    power_mw: Sequence[int] = (120_000,)
    reasons: Sequence[int] = (0,)
    processes: Sequence[Sequence[int]] = ((),)
    sm_max_mhz: int = 1980
    mem_max_mhz: int = 2619
    sm_app_mhz: int = 1755
    sm_app_default_mhz: int = 1755
    persistence: int = 1
    mig: tuple[int, int] = (0, 0)
    device_count: int = 1
    init_error: str | None = None
    calls: dict[str, int] = field(default_factory=dict)

    NVMLError = NVMLError

    def _next(self, key: str, values: Sequence[Any]) -> Any:
        index = self.calls.get(key, 0)
        self.calls[key] = index + 1
        return values[min(index, len(values) - 1)]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls["shutdown"] = self.calls.get("shutdown", 0) + 1

    def nvmlDeviceGetCount(self) -> int:
        return self.device_count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index >= self.device_count:
            raise NVMLError("Invalid Argument")
        return index

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda_driver

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.name.encode()  # older bindings return bytes

    def nvmlDeviceGetPersistenceMode(self, handle: int) -> int:
        return self.persistence

    def nvmlDeviceGetMigMode(self, handle: int) -> tuple[int, int]:
        return self.mig

    def nvmlDeviceGetMaxClockInfo(self, handle: int, clock: int) -> int:
        return self.sm_max_mhz if clock == SM else self.mem_max_mhz

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        if clock == SM:
            return self._next("sm", self.sm_mhz)
        return self._next("mem", self.mem_mhz)

    def nvmlDeviceGetApplicationsClock(self, handle: int, clock: int) -> int:
        return self.sm_app_mhz if clock == SM else self.mem_max_mhz

    def nvmlDeviceGetDefaultApplicationsClock(self, handle: int, clock: int) -> int:
        if clock == MEM:
            raise NVMLError("Not Supported")
        return self.sm_app_default_mhz

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return self._next("temperature", self.temperature_c)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._next("power", self.power_mw)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return self._next("reasons", self.reasons)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        pids = self._next("processes", self.processes)
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**30) for pid in pids]
