from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.__main__ import main
from export.cache import MANIFEST_FILE, ModelCache
from export.recipes import FILE_VARIANTS, VARIANTS, all_variant_names
from export.transforms import DATA_FILE
from tests.export_fixtures import TINY_VARIANTS, entry_dir

pytest_plugins = ["tests.export_fixtures"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(capsys: pytest.CaptureFixture[str], cache: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--cache", str(cache), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _list_rows(out: str) -> dict[str, list[str]]:
    names = set(all_variant_names())
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in names:
            rows[fields[0]] = fields[1:]
    return rows


def test_list_shows_every_variant_and_marks_cached_ones(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    code, out, _ = _run(capsys, tiny_cache_copy, "list")

    assert code == 0
    rows = _list_rows(out)
    assert set(rows) == set(all_variant_names())
    for name, fields in rows.items():
        if name.startswith("tiny/"):
            assert fields[0] == "cached", name
            assert fields[-1] == str(entry_dir(tiny_cache_copy, name) / "model.onnx")
        else:
            assert fields == ["-", "-"], name
    assert all(variant in out for variant in VARIANTS)


def test_list_on_an_empty_cache_marks_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(capsys, tmp_path / "empty", "list")
    assert code == 0
    assert all(fields == ["-", "-"] for fields in _list_rows(out).values())


def test_build_of_an_unknown_variant_exits_2_naming_the_valid_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, tmp_path / "models", "build", "tiny/nope")

    assert code == 2
    assert out == ""
    assert "'nope'" in err
    assert all(variant in err for variant in VARIANTS)
    assert not (tmp_path / "models" / "tiny").exists()


def test_build_with_no_names_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, tmp_path / "models", "build")
    assert code == 2
    assert "--all" in err


def test_build_with_malformed_weights_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, tmp_path / "models", "build", "tiny/fp32", "--weights", "tiny")
    assert code == 2
    assert "ARCH=PATH" in err


@pytest.mark.parametrize("kind", ["onnx", "weights"])
def test_build_of_a_corrupt_user_file_exits_2_with_one_line_and_builds_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / ("bad.onnx" if kind == "onnx" else "bad.safetensors")
    bad.write_bytes(b"\xff" * 64)
    args = ["--onnx", str(bad)] if kind == "onnx" else ["tiny/fp32", "--weights", f"tiny={bad}"]

    code, out, err = _run(capsys, tmp_path / "models", "build", *args)

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: --{kind} ")
    assert "not an ONNX model" in err if kind == "onnx" else "not a readable safetensors" in err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*.onnx"))


def test_build_of_a_user_file_rejects_variants_it_cannot_get(
    capsys: pytest.CaptureFixture[str], tiny_cache_dir: Path, tmp_path: Path
) -> None:
    model = entry_dir(tiny_cache_dir, "tiny/fp32") / "model.onnx"
    args = ["build", "--onnx", str(model), "--variants", "int8-conv"]
    code, _, err = _run(capsys, tmp_path / "models", *args)
    assert code == 2
    assert "int8-conv" in err
    assert all(variant in err for variant in FILE_VARIANTS)


def test_build_prints_the_model_path_on_stdout(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    shutil.rmtree(entry_dir(tiny_cache_copy, "tiny/ort-opt"))

    code, out, err = _run(capsys, tiny_cache_copy, "build", "tiny/ort-opt", "tiny/int8")

    assert code == 0
    expected = [entry_dir(tiny_cache_copy, f"tiny/{v}") / "model.onnx" for v in ("ort-opt", "int8")]
    assert out.splitlines() == [str(path) for path in expected]
    assert all(path.is_file() for path in expected)
    assert "building tiny/ort-opt" in err
    assert "building tiny/int8" not in err


def test_verify_exits_0_when_every_entry_is_sound(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    code, out, _ = _run(capsys, tiny_cache_copy, "verify")
    assert code == 0
    assert "BAD" not in out
    assert out.count("ok ") == len(TINY_VARIANTS)
    assert f"{len(TINY_VARIANTS)} cached artifact(s), 0 bad" in out


def test_verify_exits_1_and_names_a_corrupted_entry(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    corrupted = entry_dir(tiny_cache_copy, "tiny/fp16")
    data = corrupted / DATA_FILE
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))

    code, out, _ = _run(capsys, tiny_cache_copy, "verify")

    assert code == 1
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert bad == [f"BAD {corrupted}: {DATA_FILE} does not match its sha256 (corrupted)"]
    assert "1 bad" in out


def _fake_stale_entry(cache: Path) -> Path:
    """An entry as an older recipe (another torch, say) left it: a key no recipe has now."""
    current = entry_dir(cache, "tiny/ort-opt")
    stale = current.with_name("ort-opt-0123456789abcdef")
    shutil.copytree(current, stale)
    manifest = json.loads((stale / MANIFEST_FILE).read_text())
    manifest["key"] = "0123456789abcdef" + "0" * 48
    (stale / MANIFEST_FILE).write_text(json.dumps(manifest))
    return stale


def test_clean_stale_removes_only_entries_no_current_recipe_has(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    stale = _fake_stale_entry(tiny_cache_copy)
    current = set(ModelCache(tiny_cache_copy).entries()) - {stale}
    assert len(current) == len(TINY_VARIANTS)

    code, out, _ = _run(capsys, tiny_cache_copy, "clean", "--stale")

    assert code == 0
    assert out.splitlines()[0] == f"removed {stale}"
    assert "1 artifact(s) removed" in out
    assert not stale.exists()
    assert set(ModelCache(tiny_cache_copy).entries()) == current


def test_clean_removes_everything(
    capsys: pytest.CaptureFixture[str], tiny_cache_copy: Path
) -> None:
    code, out, _ = _run(capsys, tiny_cache_copy, "clean")
    assert code == 0
    assert f"{len(TINY_VARIANTS)} artifact(s) removed" in out
    assert ModelCache(tiny_cache_copy).entries() == []


def test_python_dash_m_export_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "export", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m export")
    assert all(command in result.stdout for command in ("list", "build", "verify", "clean"))
