"""A runner that only benchmarks cached artifacts needs neither torch nor transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
BLOCK_TORCH = """
import builtins
real_import = builtins.__import__
def no_torch(name, *args, **kwargs):
    if name.split(".")[0] in ("torch", "transformers", "onnxscript"):
        raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = no_torch
"""


def test_the_plugin_and_every_cache_key_load_without_torch() -> None:
    code = BLOCK_TORCH + (
        "import perf.plugin, perf.test_latency\n"
        "from export.recipes import all_variant_names, parse_variant_name\n"
        "print(len({parse_variant_name(n).key() for n in all_variant_names()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == len(__import__("export.recipes").recipes.all_variant_names())
