"""The INT8 recipes before 6a5a735 (8-bit weights, per tensor: quantize_dynamic's defaults),
rebuilt from today's w2v2-base/fp32 artifact and judged three ways: natively, on onnxruntime's
own AVX2 kernels under QEMU, and by the numpy emulator of those kernels. One JSON line per
(recipe, where) in old-recipes.jsonl; rows already there are skipped (resumable).

Run from the repository root: python baselines/examples/parity-on-avx2/old_recipes.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from export import ModelCache, parse_variant_name
from export.emulated_cpu import run_model
from export.integer_numerics import emulate, saturation_bound
from export.layout import load_reference
from export.parity import compare_outputs, run_cpu
from export.transforms import _normalise_external_data, _preprocess

OUT = Path(__file__).with_name("old-recipes.jsonl")
RECIPES = {"old-int8": ["MatMul", "Gemm"], "old-int8-conv": None}  # None: Conv too
WHERE = ("native", "avx2-qemu", "avx2-numpy-emulator")


def build(name: str, fp32_model: Path, cache_root: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir = cache_root / ".old-recipes" / name
    model = out_dir / "model.onnx"
    if not model.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        preprocessed = out_dir / "preprocessed.onnx"
        _preprocess(fp32_model, preprocessed)
        quantize_dynamic(
            str(preprocessed),
            str(model),
            op_types_to_quantize=RECIPES[name],
            weight_type=QuantType.QInt8,
            reduce_range=False,
            per_channel=False,
            use_external_data_format=True,
        )
        _normalise_external_data(out_dir)
    return model


def main() -> None:
    rows = [json.loads(line) for line in OUT.read_text().splitlines()] if OUT.exists() else []
    done = {(row["recipe"], row["where"]) for row in rows}
    cache = ModelCache()
    fp32 = cache.get(parse_variant_name("w2v2-base/fp32"))
    inputs, reference = load_reference(fp32.directory)
    for name in RECIPES:
        model = build(name, fp32.model_path, cache.root)
        bound = saturation_bound(model).describe()
        for where in WHERE:
            if (name, where) in done:
                continue
            started = time.perf_counter()
            if where == "native":
                output, arithmetic = run_cpu(model, inputs), "this machine's"
            elif where == "avx2-qemu":
                outputs, arithmetic = run_model("avx2", model, inputs)
                output = outputs[0]
            else:
                output, arithmetic = emulate(model, inputs, "avx2")[0], "numpy"
            row = {
                "recipe": name,
                "where": where,
                "kernel_arithmetic": arithmetic,
                "wall_seconds": round(time.perf_counter() - started, 1),
                "bound": bound,
                **compare_outputs("int8", output, reference).to_dict(),
            }
            with OUT.open("a") as out:
                out.write(json.dumps(row) + "\n")
            print(row, flush=True)


if __name__ == "__main__":
    main()
