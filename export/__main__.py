"""Command line: ``python -m export list | build | verify | clean``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from export.cache import ModelCache, default_cache_dir
from export.inputs import parse_assignments
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
    build.add_argument("names", nargs="*", metavar="ARCH/VARIANT", help="e.g. w2v2-base/int8")
    build.add_argument("--all", action="store_true", help="every architecture and variant")
    build.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="trained weights for ARCH from a local .safetensors file (repeatable)",
    )
    build.add_argument("--onnx", type=Path, help="start from your own ONNX file instead")
    build.add_argument(
        "--variants", help=f"with --onnx: comma-separated, from {','.join(FILE_VARIANTS)}"
    )
    build.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="with --onnx: size of a symbolic input dim for the parity reference (repeatable)",
    )
    commands.add_parser("verify", help="re-hash every cached file against its manifest")
    clean = commands.add_parser("clean", help="delete cached artifacts")
    clean.add_argument("--stale", action="store_true", help="only those no current recipe uses")
    return parser


COMMANDS = {"list": cmd_list, "build": cmd_build, "verify": cmd_verify, "clean": cmd_clean}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cache = ModelCache(args.cache)
    try:
        return COMMANDS[args.command](cache, args)
    except (RecipeError, FileNotFoundError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the cache holds only complete artifacts", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
