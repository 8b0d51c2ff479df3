"""perf.measure.gpu_state against a scripted fake NVML (tests.fake_nvml): no GPU needed."""

from __future__ import annotations

import sys

import pytest

from perf.measure import gpu_state
from perf.measure.gpu_state import (
    GpuMonitor,
    decode_clock_reasons,
    gpu_fingerprint,
    probe_gpus,
    summarise,
)
from tests.fake_nvml import FakeNvml

THERMAL = 0x40  # nvmlClocksEventReasonHwThermalSlowdown
POWER_CAP = 0x4
USER_CLOCKS = 0x2
IDLE = 0x1


def _ours() -> frozenset[int]:
    return frozenset({100})


def _run(nvml: FakeNvml, samples: int) -> gpu_state.GpuState:
    """A monitor sampled ``samples`` times by hand (start and stop take one each)."""
    monitor = GpuMonitor(nvml, interval_s=3600, ours=_ours)
    monitor.start()
    for _ in range(samples - 2):
        monitor.sample()
    return monitor.stop()


def test_fingerprint_fields() -> None:
    fp = gpu_fingerprint(FakeNvml(reasons=(USER_CLOCKS,)))
    assert fp is not None
    assert fp["driver_version"] == "550.54.15"
    assert fp["cuda_driver_version"] == "12.4"
    (device,) = fp["devices"]
    assert device["name"] == "NVIDIA H100 80GB HBM3"
    assert device["persistence_mode"] == 1
    assert device["mig_mode"] == 0
    assert device["clocks"]["sm_max_mhz"] == 1980
    assert device["clocks"]["sm_current_mhz"] == 1980
    assert device["clocks"]["mem_max_mhz"] == 2619
    assert device["clocks"]["mem_app_default_mhz"] is None  # "Not Supported" is not an error
    assert device["clock_reasons"] == ["user_defined_clocks"]
    assert device["clocks_locked"] is True
    assert set(fp["onnxruntime_build"]) == {"cuda", "cudnn"}


def test_fingerprint_clocks_not_locked_at_defaults() -> None:
    device = gpu_fingerprint(FakeNvml())["devices"][0]
    assert device["clocks_locked"] is False


def test_application_clocks_off_default_count_as_locked() -> None:
    device = gpu_fingerprint(FakeNvml(sm_app_mhz=1410))["devices"][0]
    assert device["clocks_locked"] is True


def test_fingerprint_shuts_nvml_down() -> None:
    nvml = FakeNvml()
    gpu_fingerprint(nvml)
    assert nvml.calls["shutdown"] == 1


def test_absent_nvml_gives_none_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    fp, reason = probe_gpus()
    assert fp is None
    assert "nvidia-ml-py" in reason


def test_nvml_failing_to_start_gives_reason() -> None:
    fp, reason = probe_gpus(FakeNvml(init_error="Driver Not Loaded"))
    assert fp is None
    assert reason == "NVML could not start: Driver Not Loaded"


def test_no_gpu_gives_reason() -> None:
    assert probe_gpus(FakeNvml(device_count=0)) == (None, "NVML found no GPU")


def test_throttle_decoding() -> None:
    assert decode_clock_reasons(0) == frozenset()
    assert decode_clock_reasons(THERMAL | POWER_CAP | IDLE) == {
        "hw_thermal_slowdown",
        "sw_power_cap",
        "gpu_idle",
    }
    assert decode_clock_reasons(0x8 | 0x20) == {"hw_slowdown", "sw_thermal_slowdown"}
    assert decode_clock_reasons(0x10000) == {"unknown_0x10000"}


def test_steady_run_not_flagged() -> None:
    state = _run(FakeNvml(sm_mhz=(1410, 1410, 1400, 1410), reasons=(USER_CLOCKS,)), samples=4)
    assert state.available
    assert state.samples == 4
    assert (state.sm_mhz_min, state.sm_mhz_median, state.sm_mhz_max) == (1400, 1410, 1410)
    assert not state.flagged()
    assert state.warning() is None
    assert state.reasons_seen == ("user_defined_clocks",)


def test_clock_drop_flagged() -> None:
    state = _run(FakeNvml(sm_mhz=(1980, 1980, 1700, 1980)), samples=4)
    assert state.flagged()
    assert "SM clock moved 1700-1980 MHz" in state.warning()
    assert not state.flagged(clock_tolerance=0.2)


def test_thermal_reason_flagged_even_with_a_steady_clock() -> None:
    state = _run(FakeNvml(reasons=(0, THERMAL, 0)), samples=3)
    assert state.sm_clock_spread() == 0.0
    assert state.flagged()
    assert "clocks slowed down: hw_thermal_slowdown" in state.warning()


def test_idle_reason_not_flagged() -> None:
    assert not _run(FakeNvml(reasons=(IDLE,)), samples=2).flagged()


def test_other_processes_flagged_ours_not() -> None:
    ours_only = _run(FakeNvml(processes=((100,),)), samples=2)
    assert ours_only.other_pids == ()
    assert not ours_only.flagged()
    shared = _run(FakeNvml(processes=((100,), (100, 4242), (100,))), samples=3)
    assert shared.other_pids == (4242,)
    assert "other processes used the GPU (pids 4242)" in shared.warning()


def test_summary_figures_and_dict() -> None:
    nvml = FakeNvml(temperature_c=(50, 71, 60), power_mw=(150_000, 310_500, 200_000))
    report = _run(nvml, samples=3).to_dict()
    assert report["temperature_c_max"] == 71
    assert report["power_w_max"] == 310.5
    assert report["warning"] is None
    assert report["sm_clock_spread"] == 0.0


def test_background_thread_samples_and_stops() -> None:
    nvml = FakeNvml()
    with GpuMonitor(nvml, interval_s=0.001, ours=_ours) as monitor:
        while nvml.calls.get("sm", 0) < 4:
            pass
    assert monitor.result.samples >= 4
    assert nvml.calls["shutdown"] == 1


def test_monitor_without_gpu_is_a_no_op() -> None:
    with GpuMonitor(FakeNvml(init_error="NVML Shared Library Not Found")) as monitor:
        assert monitor.sample() is None
    state = monitor.result
    assert not state.available
    assert state.reason == "NVML could not start: NVML Shared Library Not Found"
    assert not state.flagged()
    assert state.to_dict()["available"] is False


def test_summarise_nothing_is_unavailable() -> None:
    assert not summarise([]).available
