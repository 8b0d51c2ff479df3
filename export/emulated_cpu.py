"""onnxruntime's own kernels for a CPU this machine is not, run under QEMU's user-mode emulator.

An INT8 graph's numbers depend on the x86 kernels MLAS picks from CPUID (see
``export.integer_numerics``): a VNNI or AMX developer machine computes u8 x s8 products exactly,
while an AVX2 CI runner saturates them. ``qemu-x86_64 -cpu <model>`` runs this Python and its
onnxruntime wheel with the CPUID of another CPU, so MLAS dispatches to that CPU's kernels: the
real instruction sequences, emulated. The numbers are the other CPU's; the times are not (the
emulator is some 100x slower and its cost per instruction is nothing like silicon's).

Run as a module inside the emulator, it runs one model and reports which arithmetic the kernels
used, measured with a canary product that saturates on AVX2 and is exact on VNNI.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from export.integer_numerics import EXACT, SATURATING

QEMU = "qemu-x86_64"
# QEMU's TCG learned AVX2 and FMA in 7.2; older versions stop with SIGILL in the AVX2 kernels.
MIN_QEMU = (7, 2)
# AVX2 + FMA, no AVX-512, no VNNI: most hosted CI runners. Features TCG cannot provide are
# switched off so that QEMU starts without warnings.
CPU_MODELS = {"avx2": "Haswell-noTSX,-invpcid,-pcid,-x2apic,-tsc-deadline"}
INSTALL_HINT = "install QEMU's user-mode emulator (Debian/Ubuntu: apt-get install qemu-user)"


class EmulationError(RuntimeError):
    """The emulated run could not be made or failed."""


@functools.lru_cache(maxsize=1)
def qemu_version() -> tuple[int, int] | None:
    """QEMU's (major, minor), or None where ``qemu-x86_64`` is not installed."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        return None
    done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"version (\d+)\.(\d+)", done.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def emulation_problem(isa: str, machine: str | None = None) -> str | None:
    """Why onnxruntime cannot be run here as an ``isa`` CPU, or None when it can."""
    if isa not in CPU_MODELS:
        return f"no emulated CPU for ISA {isa!r}; choose from {', '.join(CPU_MODELS)}"
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return f"{QEMU} runs this x86-64 Python only on an x86-64 host"
    version = qemu_version()
    if version is None:
        return f"{QEMU} is not installed: {INSTALL_HINT}"
    if version < MIN_QEMU:
        found = ".".join(map(str, version))
        wanted = ".".join(map(str, MIN_QEMU))
        return f"{QEMU} {found} cannot emulate AVX2 (needs {wanted} or newer): {INSTALL_HINT}"
    return None


def python_command(isa: str, *arguments: str) -> list[str]:
    """This interpreter (a virtual environment's too: its path is kept) as an ``isa`` CPU."""
    problem = emulation_problem(isa)
    if problem is not None:
        raise EmulationError(problem)
    return [QEMU, "-cpu", CPU_MODELS[isa], sys.executable, *arguments]


def run_model(
    isa: str, model_path: Path, inputs: Mapping[str, np.ndarray], timeout: float = 3600
) -> tuple[list[np.ndarray], str]:
    """``model_path``'s outputs from onnxruntime's CPU kernels for ``isa``, and the u8 x s8
    arithmetic (``saturating`` or ``exact``) those kernels were seen to use."""
    with tempfile.TemporaryDirectory(prefix="emulated-cpu-") as scratch:
        inputs_file, outputs_file = Path(scratch, "inputs.npz"), Path(scratch, "outputs.npz")
        np.savez(inputs_file, **inputs)
        command = python_command(
            isa, "-m", "export.emulated_cpu", str(model_path), str(inputs_file), str(outputs_file)
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise EmulationError(
                f"{model_path} under {QEMU} -cpu {CPU_MODELS[isa]} exited {done.returncode}: "
                f"{done.stderr.strip()[-2000:]}"
            )
        with np.load(outputs_file) as data:
            outputs = [data[f"output_{index}"] for index in range(len(data.files))]
        return outputs, json.loads(done.stdout.strip().splitlines()[-1])["arithmetic"]


def _canary_model() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A MatMulInteger whose one u8 x s8 pair sums to 2 * 255 * 127, past int16: the kernels
    that saturate answer 32767, the exact ones 64770."""
    from onnx import TensorProto, helper, numpy_helper

    activation = np.full((1, 2), 255, dtype=np.uint8)
    weights = np.full((2, 1), 127, dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "canary",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString(), activation, weights


@functools.lru_cache(maxsize=1)
def kernel_arithmetic() -> str:
    """The u8 x s8 arithmetic of the kernels onnxruntime picks on the CPU this runs on (asked
    once per process: the CPU does not change)."""
    import onnxruntime as ort

    model, activation, weights = _canary_model()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    product = int(session.run(None, {"a": activation})[0][0, 0])
    exact = int((activation.astype(np.int64) @ weights.astype(np.int64))[0, 0])
    return EXACT if product == exact else SATURATING


def _worker(model_path: str, inputs_file: str, outputs_file: str) -> None:
    """Inside the emulator: run the model, save its outputs, print the arithmetic as JSON."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    with np.load(inputs_file) as data:
        outputs = session.run(None, {name: data[name] for name in data.files})
    np.savez(outputs_file, **{f"output_{index}": value for index, value in enumerate(outputs)})
    print(json.dumps({"arithmetic": kernel_arithmetic()}))


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
