"""Command line: ``python -m export list | build | parity | verify | clean``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from export.cache import ModelCache, default_cache_dir
from export.emulated_cpu import (
    CPU_MODELS,
    EmulationError,
    emulation_problem,
    kernel_arithmetic,
    qemu_version,
    run_model,
)
from export.inputs import parse_assignments
from export.integer_numerics import SATURATING, this_machine_isa
from export.layout import load_reference
from export.parity import compare_outputs, describe_result, run_cpu
from export.recipes import (
    FILE_VARIANTS,
    VARIANTS,
    Recipe,
    RecipeError,
    all_variant_names,
    file_source,
    parse_variant_name,
)
from export.specs import ARCHITECTURES
from export.user_files import check_onnx_file, check_weights_file


def _parse_weights(items: list[str]) -> dict[str, Path]:
    weights = {}
    for item in items:
        arch, sep, path = item.partition("=")
        if not sep or not arch or not path:
            raise RecipeError(f"--weights {item!r} must look like ARCH=PATH.safetensors")
        weights[arch] = Path(path)
    return weights


def _recipes(args: argparse.Namespace) -> list[Recipe]:
    weights = _parse_weights(args.weights)
    for arch, path in weights.items():
        if arch not in ARCHITECTURES:
            raise RecipeError(f"--weights {arch}={path}: no architecture {arch!r}")
        check_weights_file(path, "--weights", arch)
    if args.onnx is not None:
        check_onnx_file(args.onnx, "--onnx")
        variants = args.variants.split(",") if args.variants else list(FILE_VARIANTS)
        unknown = [v for v in variants if v not in FILE_VARIANTS]
        if unknown:
            raise RecipeError(
                f"--variants {','.join(unknown)}: a user's ONNX file can get "
                f"{', '.join(FILE_VARIANTS)}"
            )
        dims = {name: int(value) for name, value in parse_assignments(args.dim, "--dim").items()}
        source = file_source(args.onnx, dims)
        return [Recipe(source, variant) for variant in variants]
    names = all_variant_names() if args.all else args.names
    if not names:
        raise RecipeError("name variants to build (e.g. w2v2-base/int8), or pass --all")
    return [parse_variant_name(name, weights) for name in names]


def cmd_list(cache: ModelCache, args: argparse.Namespace) -> int:
    print(f"{'variant':<24} {'status':<8} {'size':>10}  path")
    for name in all_variant_names():
        artifact = cache.lookup(parse_variant_name(name))
        if artifact is None:
            print(f"{name:<24} {'-':<8} {'-':>10}")
        else:
            size = f"{artifact.size_bytes / 1e6:.1f} MB"
            print(f"{name:<24} {'cached':<8} {size:>10}  {artifact.model_path}")
    print(f"\nvariants: {', '.join(f'{k} ({v})' for k, v in VARIANTS.items())}")
    return 0


def cmd_build(cache: ModelCache, args: argparse.Namespace) -> int:
    recipes = _recipes(args)
    started = time.perf_counter()
    for index, recipe in enumerate(recipes, 1):
        cache.progress(f"[{index}/{len(recipes)}] {recipe.name}")
        print(cache.get(recipe).model_path, flush=True)
    cache.progress(f"{len(recipes)} artifact(s) ready in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_parity(cache: ModelCache, args: argparse.Namespace) -> int:
    """Check artifacts against their reference again, natively or as another CPU (emulated)."""
    problem = None if args.cpu == "native" else emulation_problem(args.cpu)
    if problem is not None:
        raise RecipeError(f"--cpu {args.cpu}: {problem}")
    recipes = _recipes(args)
    rows = []
    for index, recipe in enumerate(recipes, 1):
        rows.append(_parity_row(cache, recipe, args.cpu, f"[{index}/{len(recipes)}]"))
    report = {"cpu": args.cpu, "host_isa": this_machine_isa(), "results": rows}
    if args.cpu != "native":
        version = ".".join(map(str, qemu_version() or ()))
        report["emulator"] = f"qemu-x86_64 {version} -cpu {CPU_MODELS[args.cpu]}"
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [row["name"] for row in rows if not row["parity"]["passed"]]
    named = f" ({', '.join(failed)})" if failed else ""
    print(f"{len(rows)} artifact(s) checked on {args.cpu}: {len(failed)} failed parity{named}")
    return 1 if failed else 0


def _parity_row(cache: ModelCache, recipe: Recipe, cpu: str, step: str) -> dict[str, Any]:
    artifact = cache.get(recipe)
    inputs, reference = load_reference(cache.reference_dir(recipe))
    slow = "" if cpu == "native" else " (emulated: minutes for a full-size model)"
    cache.progress(f"{step} {recipe.name}: running on {cpu}{slow}")
    started = time.perf_counter()
    if cpu == "native":
        output, arithmetic = run_cpu(artifact.model_path, inputs), kernel_arithmetic()
    else:
        outputs, arithmetic = run_model(cpu, artifact.model_path, inputs)
        output = outputs[0]
        if arithmetic != SATURATING:  # then MLAS did not see the emulated CPU's CPUID
            raise EmulationError(f"{recipe.name}: the kernels under --cpu {cpu} were exact")
    result = compare_outputs(recipe.variant, output, reference)
    seconds = time.perf_counter() - started
    cache.progress(f"{recipe.name}: {seconds:.0f} s on {cpu}")
    verdict = "ok " if result.passed else "BAD"
    kernels = f"{arithmetic} u8 x s8 kernels"
    print(f"{verdict} {recipe.name} on {cpu} ({kernels}): {describe_result(result)}", flush=True)
    return {
        "name": recipe.name,
        "key": artifact.key,
        "kernel_arithmetic": arithmetic,
        "wall_seconds": round(seconds, 1),
        "parity": result.to_dict(),
    }


def cmd_verify(cache: ModelCache, args: argparse.Namespace) -> int:
    results = cache.verify()
    for path, problem in results:
        print(f"{'ok ' if problem is None else 'BAD'} {path}" + (f": {problem}" if problem else ""))
    bad = sum(problem is not None for _, problem in results)
    hint = "; `python -m export build` rebuilds them" if bad else ""
    print(f"{len(results)} cached artifact(s), {bad} bad{hint}")
    return 1 if bad else 0


def cmd_clean(cache: ModelCache, args: argparse.Namespace) -> int:
    keep = None
    if args.stale:
        keep = {parse_variant_name(name).key() for name in all_variant_names()}
    removed = cache.clean(keep)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} artifact(s) removed from {cache.root}")
    return 0


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """Which artifacts a command works on: names, --all, or a user's ONNX file."""
    parser.add_argument("names", nargs="*", metavar="ARCH/VARIANT", help="e.g. w2v2-base/int8")
    parser.add_argument("--all", action="store_true", help="every architecture and variant")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="trained weights for ARCH from a local .safetensors file (repeatable)",
    )
    parser.add_argument("--onnx", type=Path, help="start from your own ONNX file instead")
    parser.add_argument(
        "--variants", help=f"with --onnx: comma-separated, from {','.join(FILE_VARIANTS)}"
    )
    parser.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="with --onnx: size of a symbolic input dim for the parity reference (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"model cache directory (default: $DIARIZATION_MODEL_CACHE or {default_cache_dir()})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every ARCH/VARIANT, cached or not, with its size")
    build = commands.add_parser("build", help="build (or reuse) artifacts; print their paths")
    _add_selection(build)
    parity = commands.add_parser(
        "parity",
        help="check artifacts against their reference again, here or as another CPU",
        description="Run artifacts (built first where needed) on their parity inputs and judge "
        "them as a build does. --cpu avx2 runs onnxruntime's own AVX2 kernels under QEMU "
        "(qemu-x86_64 -cpu Haswell: AVX2, no AVX-512, no VNNI), so a VNNI or AMX machine checks "
        "what most CI runners compute. Emulated runs take minutes per full-size model.",
    )
    _add_selection(parity)
    parity.add_argument(
        "--cpu",
        choices=("native", *CPU_MODELS),
        default="native",
        help="the CPU whose kernels compute (default: this one)",
    )
    parity.add_argument("--json", type=Path, help="also write the results to this JSON file")
    commands.add_parser("verify", help="re-hash every cached file against its manifest")
    clean = commands.add_parser("clean", help="delete cached artifacts")
    clean.add_argument("--stale", action="store_true", help="only those no current recipe uses")
    return parser


COMMANDS = {
    "list": cmd_list,
    "build": cmd_build,
    "parity": cmd_parity,
    "verify": cmd_verify,
    "clean": cmd_clean,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache = ModelCache(args.cache)
    try:
        return COMMANDS[args.command](cache, args)
    except (RecipeError, EmulationError, FileNotFoundError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the cache holds only complete artifacts", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
