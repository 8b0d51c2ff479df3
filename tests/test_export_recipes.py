from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from export import recipes
from export.architectures import ARCHITECTURES
from export.cache import CACHE_DIR_ENV, ModelCache
from export.recipes import (
    EXPORT_PACKAGES,
    VARIANTS,
    Recipe,
    RecipeError,
    architecture_source,
    parse_variant_name,
)


@pytest.mark.parametrize("name", ["tiny", "tiny/", "/fp32", "", "tiny-fp32"])
def test_malformed_names_ask_for_arch_slash_variant(name: str) -> None:
    with pytest.raises(RecipeError, match="ARCH/VARIANT"):
        parse_variant_name(name)


def test_unknown_architecture_names_it_and_the_valid_ones() -> None:
    with pytest.raises(RecipeError) as error:
        parse_variant_name("w2v3-huge/fp32")
    message = str(error.value)
    assert "'w2v3-huge'" in message
    assert all(arch in message for arch in ARCHITECTURES)


def test_unknown_variant_names_it_and_the_valid_ones() -> None:
    with pytest.raises(RecipeError) as error:
        parse_variant_name("tiny/int4")
    message = str(error.value)
    assert "'int4'" in message
    assert all(variant in message for variant in VARIANTS)


def test_missing_weights_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"absent\.safetensors"):
        parse_variant_name("tiny/fp32", {"tiny": tmp_path / "absent.safetensors"})


def test_key_is_stable_for_the_same_recipe() -> None:
    assert parse_variant_name("tiny/int8").key() == parse_variant_name("tiny/int8").key()


def test_key_changes_with_the_variant() -> None:
    keys = {parse_variant_name(f"tiny/{variant}").key() for variant in VARIANTS}
    assert len(keys) == len(VARIANTS)


def test_key_changes_with_the_architecture() -> None:
    assert parse_variant_name("tiny/fp32").key() != parse_variant_name("cnn/fp32").key()


def test_key_changes_with_the_architecture_config(monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_variant_name("tiny/fp32").key()
    tiny = ARCHITECTURES["tiny"]
    wider = dataclasses.replace(tiny, encoder_config={**tiny.encoder_config, "hidden_size": 64})
    monkeypatch.setitem(ARCHITECTURES, "tiny", wider)
    assert parse_variant_name("tiny/fp32").key() != before


def test_key_changes_with_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_variant_name("tiny/fp32").key()
    monkeypatch.setitem(ARCHITECTURES, "tiny", dataclasses.replace(ARCHITECTURES["tiny"], seed=3))
    assert parse_variant_name("tiny/fp32").key() != before


def _weights_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_key_changes_with_the_weights_file_content(tmp_path: Path) -> None:
    first = _weights_file(tmp_path / "a.safetensors", b"weights one")
    second = _weights_file(tmp_path / "b.safetensors", b"weights two")
    unweighted = parse_variant_name("tiny/fp32").key()
    key_one = parse_variant_name("tiny/fp32", {"tiny": first}).key()
    key_two = parse_variant_name("tiny/fp32", {"tiny": second}).key()
    assert len({unweighted, key_one, key_two}) == 3


def test_key_changes_when_a_weights_file_is_rewritten(tmp_path: Path) -> None:
    weights = _weights_file(tmp_path / "w.safetensors", b"before")
    before = parse_variant_name("tiny/fp32", {"tiny": weights}).key()
    weights.write_bytes(b"after!")
    assert parse_variant_name("tiny/fp32", {"tiny": weights}).key() != before


def test_key_ignores_where_the_weights_file_lives(tmp_path: Path) -> None:
    here = _weights_file(tmp_path / "here" / "w.safetensors", b"same bytes")
    there = _weights_file(tmp_path / "there" / "other-name.safetensors", b"same bytes")
    assert (
        parse_variant_name("tiny/fp32", {"tiny": here}).key()
        == parse_variant_name("tiny/fp32", {"tiny": there}).key()
    )


@pytest.mark.parametrize("package", EXPORT_PACKAGES)
def test_key_changes_with_a_library_version(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    before = parse_variant_name("tiny/fp32").key()
    real = recipes.package_versions

    def bumped(names: tuple[str, ...]) -> dict[str, str]:
        return {**real(names), package: "999.0"}

    monkeypatch.setattr(recipes, "package_versions", bumped)
    assert parse_variant_name("tiny/fp32").key() != before


def test_key_changes_with_an_installed_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_variant_name("tiny/int8").key()
    real = recipes.metadata.version
    monkeypatch.setattr(
        recipes.metadata, "version", lambda name: "0.0.1" if name == "onnx" else real(name)
    )
    assert parse_variant_name("tiny/int8").key() != before


def test_recipe_records_the_versions_it_was_keyed_with() -> None:
    versions = parse_variant_name("tiny/fp32").description()["versions"]
    assert set(versions) == set(EXPORT_PACKAGES)
    assert "not installed" not in versions.values()


def test_key_does_not_depend_on_the_cache_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recipe = parse_variant_name("tiny/ort-opt")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "one"))
    monkeypatch.chdir(tmp_path)
    key_one = recipe.key()
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "two"))
    monkeypatch.chdir(Path(__file__).parent)
    assert parse_variant_name("tiny/ort-opt").key() == key_one


def test_entry_path_under_the_cache_root_is_the_same_everywhere(tmp_path: Path) -> None:
    recipe = parse_variant_name("tiny/int8")
    one, two = ModelCache(tmp_path / "one"), ModelCache(tmp_path / "two" / "nested")
    key = recipe.key()
    assert one.entry_dir(recipe, key).relative_to(one.root) == two.entry_dir(
        recipe, key
    ).relative_to(two.root)


def test_derived_variants_have_fp32_as_parent() -> None:
    recipe = parse_variant_name("tiny/int8")
    assert recipe.parent == Recipe(architecture_source("tiny"), "fp32")
    assert recipe.parent is not None and recipe.parent.parent is None


# --- the code that builds an artifact is part of its key ---------------------------------------

FORWARD = "        features = self.convs(audio.unsqueeze(1)).transpose(1, 2)\n"


def _package_copy(tmp_path: Path, name: str, old: str = "", new: str = "") -> Path:
    package = tmp_path / name
    shutil.copytree(
        Path(recipes.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    if old:
        module = package / "architectures.py"
        text = module.read_text()
        assert old in text
        module.write_text(text.replace(old, new, 1))
    return package


def test_a_change_to_forward_code_changes_the_build_code_digest(tmp_path: Path) -> None:
    """Four more Linear layers in ConvEncoder.forward: more work, so never the same key."""
    original = recipes.build_code_digest(_package_copy(tmp_path, "same"))
    extra_work = FORWARD + "        for _ in range(4):\n            features = features * 1.0\n"
    changed = recipes.build_code_digest(_package_copy(tmp_path, "forward", FORWARD, extra_work))

    assert original == recipes.build_code_digest()  # a copy hashes like the original
    assert changed != original


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (FORWARD, FORWARD.rstrip("\n") + "  # a comment\n"),
        ('"""A small strided-conv encoder', '"""A reworded docstring of the encoder'),
        (FORWARD, "\n" + FORWARD),
    ],
    ids=["comment", "docstring", "blank line"],
)
def test_comments_docstrings_and_layout_keep_the_digest(tmp_path: Path, old: str, new: str) -> None:
    edited = recipes.build_code_digest(_package_copy(tmp_path, "edited", old, new))

    assert edited == recipes.build_code_digest()


def test_the_command_line_module_is_not_build_code(tmp_path: Path) -> None:
    package = _package_copy(tmp_path, "cli")
    (package / "__main__.py").write_text("print('another command line')\n")

    assert recipes.build_code_digest(package) == recipes.build_code_digest()


def test_every_key_carries_the_build_code_digest() -> None:
    description = parse_variant_name("tiny/int8").description()

    assert description["build_code"] == recipes.build_code_digest()


def test_key_changes_with_the_build_code(monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_variant_name("tiny/fp32").key()
    monkeypatch.setattr(recipes, "build_code_digest", lambda: "other code")

    assert parse_variant_name("tiny/fp32").key() != before
