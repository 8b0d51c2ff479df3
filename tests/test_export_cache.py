"""The cache never hands out a damaged or half-built artifact, and builds each one once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export import transforms
from export.cache import MANIFEST_FILE, ModelCache, entry_problem, quiet_library_logs
from export.parity import ParityError
from export.recipes import parse_variant_name
from export.transforms import DATA_FILE, save_with_external_data
from tests.export_fixtures import TINY_VARIANTS, ProgressLog, entry_dir

pytest_plugins = ["tests.export_fixtures"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 180


def _get(root: Path, name: str, progress: ProgressLog) -> Any:
    return ModelCache(root, progress=progress).get(parse_variant_name(name))


def _assert_rebuilt(progress: ProgressLog, name: str, reason: str) -> None:
    unusable = progress.mentions("is unusable")
    assert len(unusable) == 1, progress
    assert name in unusable[0]
    assert reason in unusable[0]
    assert progress.starting_with(f"building {name}")
    assert progress.starting_with(f"built {name}")


def _assert_sound(root: Path, name: str) -> None:
    assert entry_problem(entry_dir(root, name), None, full=True) is None


def test_a_copied_cache_is_a_hit_in_its_new_location(
    tiny_cache_copy: Path, progress: ProgressLog
) -> None:
    for variant in TINY_VARIANTS:
        artifact = _get(tiny_cache_copy, f"tiny/{variant}", progress)
        assert artifact.directory.is_relative_to(tiny_cache_copy)
    assert progress == []


def test_truncated_weights_are_rebuilt(tiny_cache_copy: Path, progress: ProgressLog) -> None:
    data = entry_dir(tiny_cache_copy, "tiny/ort-opt") / DATA_FILE
    size = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(size // 2)

    artifact = _get(tiny_cache_copy, "tiny/ort-opt", progress)

    _assert_rebuilt(progress, "tiny/ort-opt", f"{DATA_FILE} is {size // 2} bytes")
    assert (artifact.directory / DATA_FILE).stat().st_size == size
    _assert_sound(tiny_cache_copy, "tiny/ort-opt")


def _flip_bytes(path: Path, offset: int, count: int = 16) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        original = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in original))


def test_same_size_overwrite_is_detected_by_its_mtime(
    tiny_cache_copy: Path, progress: ProgressLog
) -> None:
    data = entry_dir(tiny_cache_copy, "tiny/ort-opt") / DATA_FILE
    size = data.stat().st_size
    _flip_bytes(data, size // 2)
    assert data.stat().st_size == size

    _get(tiny_cache_copy, "tiny/ort-opt", progress)

    _assert_rebuilt(progress, "tiny/ort-opt", "does not match its sha256")
    _assert_sound(tiny_cache_copy, "tiny/ort-opt")


def test_verify_rehashes_even_when_the_mtime_is_restored(tiny_cache_copy: Path) -> None:
    corrupted = entry_dir(tiny_cache_copy, "tiny/int8")
    data = corrupted / DATA_FILE
    before = data.stat()
    _flip_bytes(data, before.st_size // 3)
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data.stat().st_mtime_ns == before.st_mtime_ns

    problems = dict(ModelCache(tiny_cache_copy, progress=ProgressLog()).verify())

    assert len(problems) == len(TINY_VARIANTS)
    assert problems.pop(corrupted) == f"{DATA_FILE} does not match its sha256 (corrupted)"
    assert set(problems.values()) == {None}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("delete-manifest", "no manifest (an interrupted build?)"),
        ("garble-manifest", "unreadable manifest"),
        ("delete-weights", f"{DATA_FILE} is missing"),
        ("delete-graph", "model.onnx is missing"),
    ],
)
def test_incomplete_entries_are_rebuilt(
    tiny_cache_copy: Path, progress: ProgressLog, damage: str, reason: str
) -> None:
    directory = entry_dir(tiny_cache_copy, "tiny/ort-opt")
    target, action = {
        "delete-manifest": (MANIFEST_FILE, "delete"),
        "garble-manifest": (MANIFEST_FILE, "garble"),
        "delete-weights": (DATA_FILE, "delete"),
        "delete-graph": ("model.onnx", "delete"),
    }[damage]
    if action == "delete":
        (directory / target).unlink()
    else:
        (directory / target).write_text('{"cache_format": 1, "files": {')

    _get(tiny_cache_copy, "tiny/ort-opt", progress)

    _assert_rebuilt(progress, "tiny/ort-opt", reason)
    _assert_sound(tiny_cache_copy, "tiny/ort-opt")


def test_an_entry_with_another_cache_format_is_rebuilt(
    tiny_cache_copy: Path, progress: ProgressLog
) -> None:
    manifest_path = entry_dir(tiny_cache_copy, "tiny/fp16") / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["cache_format"] = 0
    manifest_path.write_text(json.dumps(manifest))

    _get(tiny_cache_copy, "tiny/fp16", progress)

    _assert_rebuilt(progress, "tiny/fp16", "cache format 0")


BUILD_FP32 = """
import sys
from pathlib import Path
from export import ModelCache, parse_variant_name
ModelCache(Path(sys.argv[1]), progress=lambda message: None).get(parse_variant_name("tiny/fp32"))
"""


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: Any, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"builder exited ({process.returncode}) before {what}: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_build_killed_midway_leaves_no_entry_and_the_next_build_cleans_up(
    tmp_path: Path, progress: ProgressLog
) -> None:
    root = tmp_path / "models"
    scratch_root = root / ".tmp"
    builder = _start(BUILD_FP32, str(root))
    _wait_for(lambda: scratch_root.is_dir() and any(scratch_root.iterdir()), builder, "scratch")
    os.kill(builder.pid, signal.SIGKILL)
    builder.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert builder.returncode == -signal.SIGKILL

    stale = list(scratch_root.iterdir())
    assert len(stale) == 1
    cache = ModelCache(root, progress=progress)
    assert cache.entries() == []
    assert cache.lookup(parse_variant_name("tiny/fp32")) is None

    artifact = cache.get(parse_variant_name("tiny/fp32"))

    assert not stale[0].exists()
    assert list(scratch_root.iterdir()) == []
    assert cache.entries() == [artifact.directory]
    _assert_sound(root, "tiny/fp32")


BUILD_ORT_OPT_CONCURRENTLY = """
import json, sys, time
from pathlib import Path
from export import ModelCache, parse_variant_name, transforms

root, sync, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
someone_waits = sync / "someone-waits"
real_transform = transforms.TRANSFORMS["ort-opt"]

def build_once_the_other_waits(parent, out_dir):
    # Hold the lock until the other process has found it taken (or give up after 20 s).
    deadline = time.monotonic() + 20
    while not someone_waits.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return real_transform(parent, out_dir)

transforms.TRANSFORMS["ort-opt"] = build_once_the_other_waits
messages = []

def progress(message):
    messages.append(message)
    if message.startswith("waiting for another process"):
        someone_waits.touch()

cache = ModelCache(root, progress=progress)
recipe = parse_variant_name("tiny/ort-opt")
(sync / f"ready-{me}").touch()
while not (sync / "go").exists():
    time.sleep(0.005)
artifact = cache.get(recipe)
print(json.dumps({"messages": messages, "model": str(artifact.model_path)}))
"""


def test_concurrent_builders_build_once(tiny_cache_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(entry_dir(tiny_cache_copy, "tiny/ort-opt"))
    sync = tmp_path / "sync"
    sync.mkdir()
    builders = [
        _start(BUILD_ORT_OPT_CONCURRENTLY, str(tiny_cache_copy), str(sync), str(index))
        for index in range(2)
    ]
    for index, builder in enumerate(builders):
        _wait_for(lambda i=index: (sync / f"ready-{i}").exists(), builder, "ready")
    (sync / "go").touch()

    results = []
    for builder in builders:
        stdout, stderr = builder.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        assert builder.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))

    messages = [message for result in results for message in result["messages"]]
    assert sum(m.startswith("built tiny/ort-opt") for m in messages) == 1, messages
    assert sum(m.startswith("waiting for another process") for m in messages) == 1, messages
    assert results[0]["model"] == results[1]["model"]
    _assert_sound(tiny_cache_copy, "tiny/ort-opt")


def _zero_largest_initializer(parent: Path, out_dir: Path) -> dict[str, Any]:
    """A broken transform: the parent model with its largest weight tensor zeroed."""
    model = onnx.load(str(parent))
    largest = max(model.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
    zeros = np.zeros_like(numpy_helper.to_array(largest))
    largest.CopyFrom(numpy_helper.from_array(zeros, largest.name))
    save_with_external_data(model, out_dir / "model.onnx")
    return {"broken": largest.name}


def test_a_transform_that_breaks_the_model_fails_parity_and_caches_nothing(
    tiny_cache_copy: Path, progress: ProgressLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(entry_dir(tiny_cache_copy, "tiny/int8"))
    monkeypatch.setitem(transforms.TRANSFORMS, "int8", _zero_largest_initializer)

    with pytest.raises(ParityError, match=r"int8 artifact .* fails parity"):
        _get(tiny_cache_copy, "tiny/int8", progress)

    assert not entry_dir(tiny_cache_copy, "tiny/int8").exists()
    assert list((tiny_cache_copy / ".tmp").iterdir()) == []
    assert progress.mentions("built tiny/int8") == []
    _assert_sound(tiny_cache_copy, "tiny/fp32")


def test_clean_removes_every_entry_and_scratch(tiny_cache_copy: Path) -> None:
    (tiny_cache_copy / ".tmp" / "leftover-scratch").mkdir(parents=True)
    cache = ModelCache(tiny_cache_copy, progress=ProgressLog())

    removed = cache.clean()

    assert len(removed) == len(TINY_VARIANTS)
    assert cache.entries() == []
    assert not (tiny_cache_copy / ".tmp").exists()


def test_library_chatter_is_kept_out_of_a_build(caplog: pytest.LogCaptureFixture) -> None:
    """onnx_ir logged 309 INFO lines per model under --log-cli-level=INFO; ours stay."""
    chatty = logging.getLogger("onnx_ir.passes.dedup")
    tracing = logging.getLogger("torch.__trace")
    tracing.setLevel(logging.DEBUG)  # torch sets some of its loggers' levels itself
    caplog.set_level(logging.DEBUG)

    with quiet_library_logs():
        chatty.info("deduplicated initializer")
        tracing.debug("graph capture")
        logging.getLogger("onnx_ir.created.during.the.build").info("new logger")
        logging.getLogger("onnx_ir").warning("a real problem")
        logging.getLogger("perf").info("building cnn/fp32")

    assert [r.getMessage() for r in caplog.records] == ["a real problem", "building cnn/fp32"]
    assert tracing.level == logging.DEBUG  # restored


def test_reference_dir_of_follows_the_manifest_to_the_root(tiny_cache_copy: Path) -> None:
    """--perf-against finds REF's reference this way: REF's keys are not this code's."""
    cache = ModelCache(tiny_cache_copy, progress=lambda _m: None)
    fp32 = cache.get(parse_variant_name("tiny/fp32"))
    int8 = cache.get(parse_variant_name("tiny/int8"))

    assert cache.reference_dir_of(int8.directory) == fp32.directory
    assert cache.reference_dir_of(fp32.directory) == fp32.directory
