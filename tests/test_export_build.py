from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.architectures import DiarizationModel, example_audio
from export.cache import MANIFEST_FILE, ModelCache
from export.layout import load_reference
from export.onnx_export import EXPORT_PATHS
from export.parity import compare_outputs, run_cpu
from export.recipes import EXPORT_PACKAGES, package_versions, parse_variant_name
from export.transforms import DATA_FILE
from tests.export_fixtures import (
    TINY_VARIANTS,
    ProgressLog,
    entry_dir,
    external_data_locations,
    input_dims,
    op_types,
    torch_output,
)

pytest_plugins = ["tests.export_fixtures"]


def _manifest(cache_root: Path, name: str) -> dict:
    return json.loads((entry_dir(cache_root, name) / MANIFEST_FILE).read_text())


def _model(cache_root: Path, variant: str) -> Path:
    return entry_dir(cache_root, f"tiny/{variant}") / "model.onnx"


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_every_tiny_variant_is_built(tiny_cache_dir: Path, variant: str) -> None:
    recipe = parse_variant_name(f"tiny/{variant}")
    artifact = ModelCache(tiny_cache_dir, progress=ProgressLog()).lookup(recipe)
    assert artifact is not None
    assert artifact.name == f"tiny/{variant}"
    assert artifact.model_path.is_file()


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_every_tiny_variant_passes_the_onnx_checker(tiny_cache_dir: Path, variant: str) -> None:
    onnx.checker.check_model(str(_model(tiny_cache_dir, variant)), full_check=True)


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_manifest_records_recipe_and_versions(tiny_cache_dir: Path, variant: str) -> None:
    recipe = parse_variant_name(f"tiny/{variant}")
    manifest = _manifest(tiny_cache_dir, recipe.name)
    assert manifest["key"] == recipe.key()
    assert manifest["recipe"] == json.loads(json.dumps(recipe.description()))
    assert manifest["recipe"]["versions"] == package_versions(EXPORT_PACKAGES)


def test_fp32_manifest_records_the_exporter_path(tiny_cache_dir: Path) -> None:
    exporter = _manifest(tiny_cache_dir, "tiny/fp32")["exporter"]
    attempts = exporter["attempts"]
    assert exporter["path"] in dict(EXPORT_PATHS)
    assert attempts[-1] == {"path": exporter["path"], "error": None}
    assert all(attempt["error"] for attempt in attempts[:-1])


@pytest.mark.parametrize("variant", ["ort-opt", "int8", "int8-conv", "fp16"])
def test_derived_manifest_names_its_parent(tiny_cache_dir: Path, variant: str) -> None:
    parent = _manifest(tiny_cache_dir, f"tiny/{variant}")["parent"]
    assert parent == {"name": "tiny/fp32", "key": parse_variant_name("tiny/fp32").key()}


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_manifest_files_match_the_files_on_disk(tiny_cache_dir: Path, variant: str) -> None:
    directory = entry_dir(tiny_cache_dir, f"tiny/{variant}")
    files = _manifest(tiny_cache_dir, f"tiny/{variant}")["files"]
    on_disk = {path.name for path in directory.iterdir()} - {MANIFEST_FILE}
    assert set(files) == on_disk
    assert {"model.onnx", DATA_FILE} <= on_disk
    for name, record in files.items():
        content = (directory / name).read_bytes()
        assert record["bytes"] == len(content), name
        assert record["sha256"] == hashlib.sha256(content).hexdigest(), name


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_manifest_parity_passed_with_the_variants_criteria(
    tiny_cache_dir: Path, variant: str
) -> None:
    parity = _manifest(tiny_cache_dir, f"tiny/{variant}")["parity"]
    inputs, reference = load_reference(entry_dir(tiny_cache_dir, "tiny/fp32"))
    rerun = compare_outputs(variant, run_cpu(_model(tiny_cache_dir, variant), inputs), reference)
    assert parity["passed"] is True
    assert parity["variant"] == variant
    assert parity["criteria"] == rerun.criteria
    assert rerun.passed
    expected_criteria = "max abs error" if variant in ("fp32", "ort-opt") else "cosine"
    assert parity["criteria"].startswith(expected_criteria)


def test_fp32_reference_is_torch_eager(tiny_cache_dir: Path, tiny_torch: DiarizationModel) -> None:
    inputs, reference = load_reference(entry_dir(tiny_cache_dir, "tiny/fp32"))
    np.testing.assert_allclose(reference, torch_output(tiny_torch, inputs["audio"]), atol=1e-6)


@pytest.mark.parametrize("variant", ["fp32", "ort-opt"])
def test_input_axes_are_symbolic(tiny_cache_dir: Path, variant: str) -> None:
    dims = input_dims(_model(tiny_cache_dir, variant))
    assert len(dims) == 2
    assert all(isinstance(dim, str) and dim for dim in dims), dims


@pytest.mark.parametrize("variant", ["fp32", "ort-opt"])
@pytest.mark.parametrize(("batch", "seconds"), [(1, 1.0), (3, 2.0), (1, 2.0), (3, 1.0)])
def test_runs_at_other_shapes_and_matches_torch(
    tiny_cache_dir: Path,
    tiny_torch: DiarizationModel,
    variant: str,
    batch: int,
    seconds: float,
) -> None:
    session = ort.InferenceSession(
        str(_model(tiny_cache_dir, variant)), providers=["CPUExecutionProvider"]
    )
    audio = example_audio(batch, seconds, seed=99).numpy()
    (output,) = session.run(None, {"audio": audio})
    expected = torch_output(tiny_torch, audio)
    assert output.shape == expected.shape == (batch, round(seconds * 50) - 1, 4)
    np.testing.assert_allclose(output, expected, atol=1e-4, rtol=0)


def test_int8_quantizes_matmuls_but_not_convs(tiny_cache_dir: Path) -> None:
    ops = op_types(_model(tiny_cache_dir, "int8"))
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert "ConvInteger" not in ops
    assert "Conv" in ops


def test_int8_conv_quantizes_convs(tiny_cache_dir: Path) -> None:
    ops = op_types(_model(tiny_cache_dir, "int8-conv"))
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= ops


def test_fp16_has_float16_weights_and_float32_io(tiny_cache_dir: Path) -> None:
    model = onnx.load(str(_model(tiny_cache_dir, "fp16")))
    sizes = {onnx.TensorProto.FLOAT: 0, onnx.TensorProto.FLOAT16: 0}
    for tensor in model.graph.initializer:
        if tensor.data_type in sizes:
            sizes[tensor.data_type] += int(np.prod(tensor.dims))
    assert sizes[onnx.TensorProto.FLOAT16] > 0
    assert sizes[onnx.TensorProto.FLOAT16] > 10 * sizes[onnx.TensorProto.FLOAT]
    io = [*model.graph.input, *model.graph.output]
    assert [v.type.tensor_type.elem_type for v in io] == [onnx.TensorProto.FLOAT] * len(io)


def test_ort_opt_has_its_own_external_data(tiny_cache_dir: Path) -> None:
    assert external_data_locations(_model(tiny_cache_dir, "ort-opt")) == {DATA_FILE}
    assert (entry_dir(tiny_cache_dir, "tiny/ort-opt") / DATA_FILE).is_file()


def test_ort_opt_runs_without_its_parent(tiny_cache_dir: Path, tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    shutil.copytree(entry_dir(tiny_cache_dir, "tiny/ort-opt"), alone)
    inputs, reference = load_reference(entry_dir(tiny_cache_dir, "tiny/fp32"))
    np.testing.assert_allclose(run_cpu(alone / "model.onnx", inputs), reference, atol=1e-4)


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_second_get_is_a_cache_hit(
    tiny_cache_dir: Path, progress: ProgressLog, variant: str
) -> None:
    recipe = parse_variant_name(f"tiny/{variant}")
    artifact = ModelCache(tiny_cache_dir, progress=progress).get(recipe)
    assert artifact.directory == entry_dir(tiny_cache_dir, recipe.name)
    assert progress.mentions("building") == []
    assert progress == []


@pytest.mark.parametrize("variant", ["int8", "int8-conv"])
def test_int8_recipes_are_proven_exact_on_every_x86_isa(tiny_cache_dir: Path, variant: str) -> None:
    """The recipes' 7-bit weights cannot saturate AVX2's int16 pair sums: no emulation needed."""
    isa_parity = _manifest(tiny_cache_dir, f"tiny/{variant}")["isa_parity"]
    assert isa_parity["bound"]["exact_everywhere"] is True
    assert isa_parity["bound"]["worst_pair"] <= isa_parity["bound"]["safe_pair_magnitude"]
    assert isa_parity["emulated"] == {}


def test_float_variants_have_no_integer_ops_to_certify(tiny_cache_dir: Path) -> None:
    assert _manifest(tiny_cache_dir, "tiny/fp16")["isa_parity"]["bound"]["integer_ops"] == 0


def test_a_full_range_int8_recipe_is_refused_for_avx2_wherever_it_is_built(
    tiny_cache_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """u8 x s8 with 8-bit weights passes on VNNI (cosine 0.99998) and saturates on AVX2 (0.993,
    measured on a Zen 3 runner; emulated here): the build must fail on either machine."""
    from export import recipes
    from export.parity import ParityError

    full_range = {**recipes.QUANTIZATION["int8"], "reduce_range": False}
    monkeypatch.setitem(recipes.QUANTIZATION, "int8", full_range)
    shutil.rmtree(entry_dir(tiny_cache_copy, "tiny/int8"), ignore_errors=True)
    cache = ModelCache(tiny_cache_copy, progress=ProgressLog())

    with pytest.raises(ParityError, match=r"fails parity on AVX2 .*cosine (0\.\d+)") as error:
        cache.get(parse_variant_name("tiny/int8"))
    cosine = re.search(r"cosine (0\.\d+)", str(error.value))
    assert cosine is not None and float(cosine.group(1)) < 0.999
    assert not entry_dir(tiny_cache_copy, "tiny/int8").exists()
