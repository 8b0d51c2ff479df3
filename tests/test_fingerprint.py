from __future__ import annotations

import json

import pytest

from perf.measure.fingerprint import (
    diff_fingerprints,
    fingerprint_id,
    fingerprint_slug,
    machine_fingerprint,
    normalise_isa_flags,
    parse_nvidia_smi,
    software_fingerprint,
)
from tests.fake_nvml import FakeNvml

FAKE_CPUINFO = {
    "brand_raw": "AMD EPYC 9R14 96-Core Processor",
    "arch": "X86_64",
    # Linux and py-cpuinfo's CPUID probe spell the same extensions differently.
    "flags": ["sse4_2", "avx", "avx2", "AVX512F", "avx512_vnni", "avx512vnni", "avx_vnni", "fpu"],
}
FIELDS = ["cpu_model", "usable_cores", "isa_flags"]


def _fp(**changes: object) -> dict[str, object]:
    fp: dict[str, object] = {
        "cpu_model": "AMD EPYC",
        "usable_cores": 2,
        "isa_flags": ["avx2", "avx512f", "avx512vnni"],
        "memory_gib": 23.5,
        "onnxruntime_version": "1.32.0",
    }
    fp.update(changes)
    return fp


def test_isa_flags_are_normalised() -> None:
    assert normalise_isa_flags(FAKE_CPUINFO["flags"]) == [
        "avx",
        "avx2",
        "avx512f",
        "avx512vnni",
        "avxvnni",
    ]
    assert normalise_isa_flags(["amx_tile", "amx_int8", "amx_bf16"]) == [
        "amxbf16",
        "amxint8",
        "amxtile",
    ]


def test_machine_fingerprint_from_fake_cpuinfo() -> None:
    fp = machine_fingerprint(FAKE_CPUINFO)

    assert fp["cpu_model"] == "AMD EPYC 9R14 96-Core Processor"
    assert fp["isa_flags"] == ["avx", "avx2", "avx512f", "avx512vnni", "avxvnni"]
    assert fp["usable_cores"] >= 1
    assert fp["logical_cores"] >= fp["usable_cores"]
    assert fp["memory_gib"] > 0
    json.dumps(fp)  # stored next to baselines


def test_gpu_details_only_where_nvml_sees_a_gpu() -> None:
    without = machine_fingerprint(FAKE_CPUINFO, nvml=FakeNvml(init_error="Driver Not Loaded"))
    with_gpu = machine_fingerprint(FAKE_CPUINFO, nvml=FakeNvml())

    assert "gpu_details" not in without
    assert with_gpu["gpu_details"]["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert fingerprint_id(with_gpu) == fingerprint_id(without)
    json.dumps(with_gpu)


def test_software_fingerprint() -> None:
    fp = software_fingerprint()

    assert fp["onnxruntime_version"]
    assert fp["onnxruntime_distributions"]
    assert "CPUExecutionProvider" in fp["providers"]
    json.dumps(fp)


def test_id_is_stable_and_ignores_field_order() -> None:
    first = fingerprint_id(_fp(), FIELDS)
    assert first == fingerprint_id(_fp(), list(reversed(FIELDS)))
    assert len(first) == 12
    int(first, 16)  # hex: safe in folder names


def test_id_depends_on_selected_fields_only() -> None:
    base = fingerprint_id(_fp(), FIELDS)

    assert fingerprint_id(_fp(memory_gib=64.0), FIELDS) == base
    assert fingerprint_id(_fp(onnxruntime_version="1.20.0"), FIELDS) == base
    assert fingerprint_id(_fp(usable_cores=4), FIELDS) != base
    assert fingerprint_id(_fp(isa_flags=["avx2"]), FIELDS) != base
    assert fingerprint_id(_fp(), [*FIELDS, "onnxruntime_version"]) != base


def test_nested_fields_are_addressable() -> None:
    a = _fp(gpu={"names": ["NVIDIA H100"], "driver": "550.54"})
    b = _fp(gpu={"names": ["NVIDIA H100"], "driver": "560.10"})

    assert fingerprint_id(a, ["gpu.names"]) == fingerprint_id(b, ["gpu.names"])
    assert diff_fingerprints(a, b, ["gpu.names", "gpu.driver"]) == [
        "gpu.driver: '550.54' != '560.10'"
    ]


def test_slug() -> None:
    assert fingerprint_slug(_fp()) == "amd-epyc-2c-avx512vnni"
    intel = _fp(
        cpu_model="Intel(R) Xeon(R) Platinum 8488C CPU @ 2.40GHz",
        usable_cores=4,
        isa_flags=["avx512f", "avx512vnni", "amxint8", "amxtile"],
    )
    assert fingerprint_slug(intel) == "intel-xeon-platinum-8488c-4c-amxint8"
    assert fingerprint_slug({}) == "unknown"


def test_diff_names_differing_fields_with_both_values() -> None:
    a, b = _fp(), _fp(usable_cores=4, memory_gib=64.0)

    assert diff_fingerprints(a, b, FIELDS) == ["usable_cores: 2 != 4"]
    assert diff_fingerprints(a, a, FIELDS) == []
    assert diff_fingerprints(a, {}, ["cpu_model"]) == ["cpu_model: 'AMD EPYC' != None"]


def test_parse_nvidia_smi() -> None:
    query = "NVIDIA H100 80GB HBM3, 550.54.15\nNVIDIA H100 80GB HBM3, 550.54.15\n"
    summary = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"

    assert parse_nvidia_smi(query, summary) == {
        "names": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"],
        "driver": "550.54.15",
        "cuda": "12.4",
    }
    assert parse_nvidia_smi("", summary) is None
    assert parse_nvidia_smi(query, "")["cuda"] is None  # type: ignore[index]


def test_fields_given_as_one_string_is_an_error() -> None:
    with pytest.raises(TypeError, match="list of names"):
        fingerprint_id(_fp(), "cpu_model")
