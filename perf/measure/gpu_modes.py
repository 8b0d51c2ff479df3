"""GPU run modes: I/O binding, CUDA graphs and TensorRT FP16, and when each cannot apply.

The default is what a plain ``session.run`` caller gets. ``--perf-io-binding`` binds inputs as
OrtValues on the provider's device and outputs to that device, and times ``run_with_iobinding``
alone (no host copies). ``--perf-cuda-graph`` adds CUDA's ``enable_cuda_graph``, which replays one
captured graph: it needs I/O binding at fixed addresses, one shape, and every node on CUDA.
``--perf-trt-fp16`` builds TensorRT engines in FP16, its own configuration (its settings differ,
so its rows never compare with FP32 ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perf.measure.cases import PerfCase, case_inputs
from perf.measure.providers import CPU, CUDA, TENSORRT
from perf.measure.sessions import ProviderSkip, SessionSettings
from perf.measure.trt import Shapes, profile_options

# Where a provider's inputs and outputs live, as OrtValue device names.
DEVICES: dict[str, str] = {CPU: "cpu", CUDA: "cuda", TENSORRT: "cuda"}


@dataclass(frozen=True)
class GpuModes:
    io_binding: bool = False  # --perf-io-binding
    cuda_graph: bool = False  # --perf-cuda-graph (implies I/O binding)
    trt_fp16: bool = False  # --perf-trt-fp16

    @property
    def binds(self) -> bool:
        return self.io_binding or self.cuda_graph


def check_provider(provider: str, modes: GpuModes) -> None:
    """ProviderSkip when a mode asked for cannot apply to ``provider`` (a full name)."""
    if modes.cuda_graph and provider != CUDA:
        raise ProviderSkip(f"--perf-cuda-graph runs on {CUDA} only, not on {provider}")
    if modes.trt_fp16 and provider != TENSORRT:
        raise ProviderSkip(f"--perf-trt-fp16 is a {TENSORRT} configuration, not {provider}'s")
    if modes.binds and provider not in DEVICES:
        known = ", ".join(DEVICES)
        raise ProviderSkip(f"--perf-io-binding: no device known for {provider} (known: {known})")


def configuration_options(provider: str, modes: GpuModes) -> dict[str, str]:
    """Options of every session of a run, merged over perf.measure.providers.provider_options:
    FP16 engines are a configuration of their own (scenarios, A/B and numerics checks too)."""
    if provider == TENSORRT and modes.trt_fp16:
        return {"trt_fp16_enable": "True"}
    return {}


def check_cuda_graph(calls: Sequence[Shapes], placement: Mapping[str, int]) -> None:
    """ProviderSkip unless one captured graph can serve every call: one set of input shapes and
    every node on CUDA (``placement``: nodes per provider, as sessions.node_placement counts)."""
    distinct = {tuple(sorted((name, tuple(shape)) for name, shape in c.items())) for c in calls}
    if len(distinct) > 1:
        raise ProviderSkip(
            f"--perf-cuda-graph replays one captured graph and this run feeds {len(distinct)} "
            "input shapes; time one length per run (one --perf-durations, no --perf-lengths mix)"
        )
    outside = {provider: n for provider, n in placement.items() if provider != CUDA and n}
    if outside:
        listed = ", ".join(f"{n} on {provider}" for provider, n in sorted(outside.items()))
        raise ProviderSkip(
            f"--perf-cuda-graph needs every node on {CUDA}; placement shows {listed}"
        )


def input_shapes(
    model_path: Path,
    case: PerfCase,
    lengths: Sequence[float],
    dims: Mapping[str, int],
    fixed: Mapping[str, object] | None = None,
) -> list[Shapes]:
    """The input shapes of one call per length (seconds of audio) of ``case``'s model."""
    calls = []
    for seconds in lengths:
        one = dataclasses.replace(case, duration_s=seconds, mix=())
        inputs = case_inputs(model_path, one, dims, fixed)
        calls.append({name: tuple(array.shape) for name, array in inputs.items()})
    return calls


def for_case(
    settings: SessionSettings,
    modes: GpuModes,
    run_calls: Sequence[Shapes],
    session_calls: Sequence[Shapes],
    placement: Callable[[], Mapping[str, int]],
) -> SessionSettings:
    """``settings`` for one benchmark: TensorRT profiled for every shape of the run
    (``run_calls``), and the modes asked for, or ProviderSkip saying why one cannot apply.
    ``session_calls`` are the shapes this session is fed; ``placement`` is only asked for CUDA
    graphs (a profiled run)."""
    check_provider(settings.provider, modes)
    options = dict(settings.provider_options)
    if settings.provider == TENSORRT:
        options |= profile_options(run_calls)
    if modes.cuda_graph:
        check_cuda_graph(session_calls, placement())
        options["enable_cuda_graph"] = "1"
    return dataclasses.replace(settings, provider_options=options, io_binding=modes.binds)


def unbound(settings: SessionSettings) -> SessionSettings:
    """``settings`` for a plain ``session.run`` (placement and profiles after the timed calls): a
    captured CUDA graph replays fixed device buffers that only a binding provides."""
    options = {k: v for k, v in settings.provider_options.items() if k != "enable_cuda_graph"}
    return dataclasses.replace(settings, provider_options=options, io_binding=False)


def _bind_outputs(
    session: ort.InferenceSession, binding: ort.IOBinding, device: str, fixed: bool
) -> None:
    names = [output.name for output in session.get_outputs()]
    for name in names:
        binding.bind_output(name, device, 0)
    if not fixed:
        return
    # A captured graph writes to fixed addresses: one untimed bound run allocates the outputs
    # on the device, and they stay bound (a plain session.run would not use the binding).
    session.run_with_iobinding(binding)
    for name, value in zip(names, binding.get_outputs(), strict=True):
        binding.bind_ortvalue_output(name, value)


def bound_call(
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    device: str,
    fixed_outputs: bool = False,
) -> tuple[Callable[[], None], ort.IOBinding]:
    """A call running ``session`` on inputs held on ``device`` ("cpu", "cuda") with outputs bound
    there; the binding gives the outputs (``copy_outputs_to_cpu()``) after a call."""
    binding = session.io_binding()
    held = {  # kept alive with the call: the binding points at their memory
        name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, 0)
        for name, array in inputs.items()
    }
    for name, value in held.items():
        binding.bind_ortvalue_input(name, value)
    _bind_outputs(session, binding, device, fixed_outputs)

    def call(_inputs: object = held) -> None:  # holds the inputs as long as the call
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the call ends when the device has finished

    return call, binding


def session_call(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], provider: str, binds: bool
) -> Callable[[], object]:
    """What one timed call runs: ``session.run``, or the bound call on the provider's device."""
    if not binds:
        feed = dict(inputs)
        return lambda: session.run(None, feed)
    uses_graph = session.get_provider_options().get(CUDA, {}).get("enable_cuda_graph") == "1"
    call, _ = bound_call(session, inputs, DEVICES[provider], fixed_outputs=uses_graph)
    return call
