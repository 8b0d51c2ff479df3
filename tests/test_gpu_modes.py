"""GPU run modes and TensorRT options, checked on CPU: profiles, cache keys, I/O binding (real,
on the CPU provider), the reasons a mode is skipped, and the option checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from perf.config import ConfigError, PerfOptions, _check_gpu_modes
from perf.measure.gpu_modes import (
    GpuModes,
    bound_call,
    check_cuda_graph,
    check_provider,
    configuration_options,
    for_case,
    session_call,
    unbound,
)
from perf.measure.providers import CPU, CUDA, TENSORRT, provider_options
from perf.measure.sessions import ProviderSkip, SessionSettings, open_session
from perf.measure.trt import cache_key, engine_cache_state, profile_options
from tests import test_plugin
from tests.perf_options import perf_options
from tests.test_plugin import Suite, output
from tests.test_sessions import save_model

pytest_plugins = ["pytester"]
model_cache = test_plugin.model_cache
suite = test_plugin.suite

ONE_SECOND = {"audio": (1, 16000)}
THREE_SECONDS = {"audio": (1, 48000)}
ALL_ON_CUDA = {CUDA: 12}


def _never_asked() -> dict[str, int]:
    raise AssertionError("placement is only profiled for --perf-cuda-graph")


@pytest.fixture
def scale_add(tmp_path: Path) -> Path:
    """y = x * 2 + bias, z = relu(x): two inputs, two outputs, a dynamic length."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "samples"])
    bias = helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "samples"])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "samples"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    nodes = [
        helper.make_node("Constant", [], ["two_c"], value=two),
        helper.make_node("Mul", ["x", "two_c"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["y"]),
        helper.make_node("Relu", ["x"], ["z"]),
    ]
    return save_model(tmp_path / "scale_add.onnx", nodes, [x, bias], [y, z])


def _inputs(samples: int = 1600) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((1, samples)).astype(np.float32),
        "bias": np.array([0.5], dtype=np.float32),
    }


# --- TensorRT profiles and caches -----------------------------------------------------------------


def test_one_length_is_its_own_min_opt_and_max() -> None:
    assert profile_options([THREE_SECONDS]) == {
        "trt_profile_min_shapes": "audio:1x48000",
        "trt_profile_opt_shapes": "audio:1x48000",
        "trt_profile_max_shapes": "audio:1x48000",
    }


def test_several_lengths_and_inputs_span_min_to_max_and_opt_is_the_most_common() -> None:
    calls = [
        {"audio": (1, 48000), "speakers": (1, 2)},
        {"audio": (1, 16000), "speakers": (1, 2)},
        {"audio": (1, 160000), "speakers": (1, 2)},
        {"audio": (1, 16000), "speakers": (1, 2)},
    ]
    assert profile_options(calls) == {
        "trt_profile_min_shapes": "audio:1x16000,speakers:1x2",
        "trt_profile_opt_shapes": "audio:1x16000,speakers:1x2",
        "trt_profile_max_shapes": "audio:1x160000,speakers:1x2",
    }


def test_opt_is_the_first_length_when_none_is_more_common() -> None:
    options = profile_options([THREE_SECONDS, ONE_SECOND])
    assert options["trt_profile_opt_shapes"] == "audio:1x48000"


def test_a_length_inside_the_profile_keeps_the_options_and_one_outside_changes_them() -> None:
    run = [ONE_SECOND, {"audio": (1, 160000)}]
    inside = profile_options([*run, THREE_SECONDS])
    outside = profile_options([*run, {"audio": (1, 320000)}])

    assert {k: v for k, v in inside.items() if "opt" not in k} == {
        k: v for k, v in profile_options(run).items() if "opt" not in k
    }  # the engine built for the run serves 3 s without a rebuild
    assert outside["trt_profile_max_shapes"] == "audio:1x320000"


def test_calls_with_other_inputs_or_ranks_are_refused() -> None:
    with pytest.raises(ValueError, match="disagree"):
        profile_options([ONE_SECOND, {"audio": (1, 1, 16000)}])
    with pytest.raises(ValueError, match="at least one call"):
        profile_options([])


def test_cache_key_differs_per_gpu_model_and_library_version() -> None:
    h100 = cache_key("NVIDIA H100 80GB HBM3", "10.7.0", "1.22.0")
    assert h100 == "nvidia-h100-80gb-hbm3_trt10.7.0_ort1.22.0"
    assert cache_key("NVIDIA L4", "10.7.0", "1.22.0") != h100
    assert cache_key("NVIDIA H100 80GB HBM3", "10.8.0", "1.22.0") != h100
    assert cache_key("NVIDIA H100 80GB HBM3", "10.7.0", "1.23.0") != h100
    assert cache_key(None, None, None) == "unknown-gpu_unknown-trt_unknown-ort"


def test_tensorrt_caches_go_under_the_keyed_folder(tmp_path: Path) -> None:
    options = provider_options("tensorrt", tmp_path)
    folder = Path(options["trt_engine_cache_path"])
    assert folder.parent == tmp_path / "tensorrt"
    assert folder.name.count("_") == 2 and "trt" in folder.name and "ort" in folder.name


def test_engine_cache_state_says_built_or_from_cache(tmp_path: Path) -> None:
    options = {"trt_engine_cache_path": str(tmp_path)}
    assert engine_cache_state({}) is None  # not TensorRT
    assert engine_cache_state(options) == "built"
    (tmp_path / "TensorrtExecutionProvider_TRTKernel_graph_1.engine").write_bytes(b"x")
    assert engine_cache_state(options) == "from cache"


# --- I/O binding, for real on the CPU provider ----------------------------------------------------


@pytest.mark.parametrize("preallocate", [False, True])
def test_io_binding_on_cpu_gives_what_session_run_gives(scale_add: Path, preallocate: bool) -> None:
    session = open_session(scale_add, SessionSettings(CPU, intra_op_threads=1))
    inputs = _inputs()
    expected = session.run(None, inputs)

    call, binding = bound_call(session, inputs, "cpu", fixed_outputs=preallocate)
    for _ in range(2):  # the same bound buffers serve every call
        call()
        outputs = binding.copy_outputs_to_cpu()
        assert [o.shape for o in outputs] == [e.shape for e in expected]
        for got, want in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_timed_call_is_session_run_by_default_and_bound_on_request(scale_add: Path) -> None:
    session = open_session(scale_add, SessionSettings(CPU, intra_op_threads=1))
    inputs = _inputs()
    plain = session_call(session, inputs, CPU, binds=False)()
    assert isinstance(plain, list)  # session.run's outputs
    np.testing.assert_allclose(plain[0], inputs["x"] * 2 + 0.5, rtol=1e-6)
    assert session_call(session, inputs, CPU, binds=True)() is None  # run_with_iobinding


def test_a_row_says_it_ran_bound_and_a_plain_one_keeps_its_settings() -> None:
    plain = SessionSettings(CPU, intra_op_threads=1)
    assert "run_mode" not in plain.to_dict() and "io_binding" not in plain.to_dict()
    bound = dataclasses.replace(plain, io_binding=True)
    assert bound.to_dict()["run_mode"] == "io-binding"
    assert bound.to_dict() != plain.to_dict()


# --- when a mode cannot apply ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "modes", "reason"),
    [
        (CPU, GpuModes(cuda_graph=True), f"--perf-cuda-graph runs on {CUDA} only, not on {CPU}"),
        (TENSORRT, GpuModes(cuda_graph=True), f"runs on {CUDA} only, not on {TENSORRT}"),
        (CUDA, GpuModes(trt_fp16=True), f"--perf-trt-fp16 is a {TENSORRT} configuration"),
        ("DmlExecutionProvider", GpuModes(io_binding=True), "no device known for Dml"),
    ],
)
def test_a_mode_on_a_provider_it_cannot_apply_to_is_skipped(
    provider: str, modes: GpuModes, reason: str
) -> None:
    with pytest.raises(ProviderSkip, match=reason.replace("(", r"\(")):
        check_provider(provider, modes)


@pytest.mark.parametrize("provider", [CPU, CUDA, TENSORRT])
def test_io_binding_applies_to_cpu_cuda_and_tensorrt(provider: str) -> None:
    check_provider(provider, GpuModes(io_binding=True))


def test_cuda_graph_is_skipped_for_a_session_fed_several_lengths() -> None:
    with pytest.raises(ProviderSkip, match="feeds 2 input shapes"):
        check_cuda_graph([ONE_SECOND, THREE_SECONDS, ONE_SECOND], ALL_ON_CUDA)


def test_cuda_graph_is_skipped_when_placement_shows_nodes_outside_cuda() -> None:
    placement = {CUDA: 40, CPU: 3, "TensorrtExecutionProvider": 0}
    with pytest.raises(ProviderSkip, match=f"needs every node on {CUDA}; placement shows 3 on "):
        check_cuda_graph([ONE_SECOND], placement)


def test_cuda_graph_with_one_shape_all_on_cuda_applies() -> None:
    check_cuda_graph([ONE_SECOND, ONE_SECOND], ALL_ON_CUDA)


def test_for_case_profiles_tensorrt_over_the_runs_lengths(tmp_path: Path) -> None:
    settings = SessionSettings(TENSORRT, 1, provider_options=provider_options(TENSORRT, tmp_path))
    case = for_case(settings, GpuModes(), [ONE_SECOND, THREE_SECONDS], [ONE_SECOND], _never_asked)
    assert case.provider_options["trt_profile_min_shapes"] == "audio:1x16000"
    assert case.provider_options["trt_profile_max_shapes"] == "audio:1x48000"
    assert case.provider_options["trt_fp16_enable"] == "False"
    assert not case.io_binding and "run_mode" not in case.to_dict()


def test_for_case_adds_cuda_graphs_with_binding_after_checking_placement() -> None:
    settings = SessionSettings(CUDA, 1, provider_options={"device_id": "0"})
    case = for_case(settings, GpuModes(cuda_graph=True), [ONE_SECOND], [ONE_SECOND],
                    lambda: ALL_ON_CUDA)  # fmt: skip
    assert case.provider_options == {"device_id": "0", "enable_cuda_graph": "1"}
    assert case.to_dict()["run_mode"] == "io-binding"
    assert unbound(case) == settings  # placement and profiles after the timed calls run plain
    with pytest.raises(ProviderSkip, match="placement shows 1 on"):
        for_case(settings, GpuModes(cuda_graph=True), [ONE_SECOND], [ONE_SECOND],
                 lambda: {CUDA: 5, CPU: 1})  # fmt: skip


def test_the_default_adds_nothing_to_cpu_sessions() -> None:
    settings = SessionSettings(CPU, 1)
    assert for_case(settings, GpuModes(), [ONE_SECOND], [ONE_SECOND], _never_asked) == settings


def test_fp16_tensorrt_is_its_own_configuration(tmp_path: Path) -> None:
    fp32 = provider_options(TENSORRT, tmp_path)
    fp16 = {**fp32, **configuration_options(TENSORRT, GpuModes(trt_fp16=True))}
    assert fp16["trt_fp16_enable"] == "True" and fp32["trt_fp16_enable"] == "False"
    rows = [SessionSettings(TENSORRT, 1, provider_options=o).to_dict() for o in (fp32, fp16)]
    assert rows[0] != rows[1]  # never compared with each other
    assert configuration_options(CUDA, GpuModes(trt_fp16=True)) == {}


# --- option checks --------------------------------------------------------------------------------


def _options(providers: tuple[str, ...], modes: GpuModes, **changes: object) -> PerfOptions:
    return perf_options(providers=providers, gpu_modes=modes, **changes)


@pytest.mark.parametrize(
    ("modes", "message"),
    [
        (GpuModes(cuda_graph=True), "--perf-cuda-graph runs on cuda only and --perf-providers "
         "selects cpu; add cuda, or drop it"),
        (GpuModes(trt_fp16=True), "--perf-trt-fp16 runs on tensorrt only"),
    ],
)  # fmt: skip
def test_a_mode_no_selected_provider_runs_is_a_usage_error(modes: GpuModes, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _check_gpu_modes(_options(("cpu",), modes))
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("option", "modes"),
    [
        ("--perf-io-binding", GpuModes(io_binding=True)),
        ("--perf-cuda-graph", GpuModes(cuda_graph=True)),
    ],
)
@pytest.mark.parametrize(
    "changes",
    [{"scenario": "server"}, {"variant_pairs": (("tiny/fp32", "tiny/int8"),)}],
    ids=["server", "perf-compare"],
)
def test_binding_modes_are_single_stream_only(
    option: str, modes: GpuModes, changes: dict[str, object]
) -> None:
    """Server rounds and A/Bs (against a commit or another variant) time session.run."""
    with pytest.raises(ConfigError, match=f"^{option} applies to single-stream benchmarks"):
        _check_gpu_modes(_options(("cpu", "cuda"), modes, **changes))


def test_modes_with_their_provider_selected_are_accepted() -> None:
    _check_gpu_modes(_options(("cpu", "cuda", "tensorrt"), GpuModes(True, True, True)))
    _check_gpu_modes(_options(("cpu",), GpuModes(io_binding=True)))


# --- end to end, through the plugin ---------------------------------------------------------------


def test_an_io_binding_run_says_so_in_each_row(suite: Suite) -> None:
    out = suite.pytester.path / "out.json"

    result = suite.run(f"--benchmark-json={out}", "--perf-io-binding")

    result.assert_outcomes(passed=1)
    (bench,) = json.loads(out.read_text())["benchmarks"]
    report = bench["extra_info"]["perf"]
    assert report["session"]["run_mode"] == "io-binding"
    assert report["engine_cache"] is None  # not TensorRT
    assert report["load_ms"] > 0  # session creation, reported apart from the timed calls


def test_cuda_graphs_without_cuda_selected_are_a_usage_error(suite: Suite) -> None:
    result = suite.run("--perf-cuda-graph")

    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert "--perf-cuda-graph runs on cuda only" in output(result)


def test_fp16_rows_skip_the_providers_it_does_not_apply_to(suite: Suite) -> None:
    result = suite.run("--perf-trt-fp16", "-rs", providers="cpu,tensorrt")

    result.assert_outcomes(skipped=2)
    assert f"--perf-trt-fp16 is a {TENSORRT} configuration, not {CPU}'s" in output(result)
