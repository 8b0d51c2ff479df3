from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from export.architectures import (
    ARCHITECTURES,
    DiarizationModel,
    WeightsMismatchError,
    build_model,
    count_parameters,
    example_audio,
)

TINY = ARCHITECTURES["tiny"]


@pytest.fixture(scope="module")
def w2v2_base() -> DiarizationModel:
    return build_model(ARCHITECTURES["w2v2-base"])


@pytest.fixture(scope="module")
def tiny_model() -> DiarizationModel:
    return build_model(TINY)


def _outputs(model: DiarizationModel) -> torch.Tensor:
    with torch.no_grad():
        return model(example_audio(2, 1.0))


def _save_state(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


def test_w2v2_base_encoder_has_94_4m_parameters(w2v2_base: DiarizationModel) -> None:
    assert count_parameters(w2v2_base.encoder) == pytest.approx(94.4e6, abs=0.1e6)


def test_w2v2_base_head_has_about_4_6m_parameters(w2v2_base: DiarizationModel) -> None:
    assert count_parameters(w2v2_base.head) == pytest.approx(4.6e6, abs=0.1e6)


def test_distilhubert_has_two_transformer_layers() -> None:
    model = build_model(ARCHITECTURES["distilhubert"])
    assert type(model.encoder).__name__ == "HubertModel"
    assert len(model.encoder.encoder.layers) == 2


def test_w2v2_small_has_hidden_384_and_six_layers() -> None:
    model = build_model(ARCHITECTURES["w2v2-small"])
    assert model.encoder.config.hidden_size == 384
    assert len(model.encoder.encoder.layers) == 6
    assert model.head.input_proj.in_features == 384


def test_cnn_encoder_has_between_1m_and_5m_parameters() -> None:
    model = build_model(ARCHITECTURES["cnn"])
    assert 1e6 < count_parameters(model.encoder) < 5e6


def test_tiny_outputs_speaker_probabilities_per_20ms_frame(tiny_model: DiarizationModel) -> None:
    audio = example_audio(2, 3.0)
    assert audio.shape == (2, 48_000)
    with torch.no_grad():
        output = tiny_model(audio)
    assert list(output.shape) == [2, 149, 4]
    assert bool(((output > 0) & (output < 1)).all())


def test_same_seed_builds_identical_weights(tiny_model: DiarizationModel) -> None:
    again = build_model(TINY).state_dict()
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, again[key]), key


def test_a_different_seed_builds_different_weights(tiny_model: DiarizationModel) -> None:
    other = build_model(dataclasses.replace(TINY, seed=1))
    assert not torch.equal(_outputs(tiny_model), _outputs(other))


def test_safetensors_weights_round_trip(tmp_path: Path) -> None:
    trained = build_model(dataclasses.replace(TINY, seed=7))
    weights = _save_state(trained.state_dict(), tmp_path / "trained.safetensors")

    loaded = build_model(TINY, weights=weights)

    assert torch.equal(_outputs(loaded), _outputs(trained))
    assert not torch.equal(_outputs(loaded), _outputs(build_model(TINY)))


def test_loaded_model_is_in_eval_mode(tmp_path: Path, tiny_model: DiarizationModel) -> None:
    weights = _save_state(tiny_model.state_dict(), tmp_path / "w.safetensors")
    assert not build_model(TINY, weights=weights).training


def _mismatched_state(tiny_model: DiarizationModel, problem: str) -> tuple[dict, str]:
    state = dict(tiny_model.state_dict())
    key = "head.classifier.weight"
    if problem == "missing":
        del state[key]
    elif problem == "unexpected":
        key = "head.extra_layer.weight"
        state[key] = torch.zeros(3)
    else:
        state[key] = torch.zeros(5, 5)
    return state, key


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_mismatched_weights_name_the_file_and_the_key(
    tmp_path: Path, tiny_model: DiarizationModel, problem: str
) -> None:
    state, key = _mismatched_state(tiny_model, problem)
    weights = _save_state(state, tmp_path / f"{problem}.safetensors")

    with pytest.raises(WeightsMismatchError) as error:
        build_model(TINY, weights=weights)

    message = str(error.value)
    assert str(weights) in message
    assert key in message
    assert f"{problem}:" in message


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.safetensors"):
        build_model(TINY, weights=tmp_path / "nowhere.safetensors")


class _CreatesMarker:
    """Unpickling this runs ``Path.touch(marker)``: code execution from a weights file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("filename", ["weights.safetensors", "pytorch_model.bin"])
def test_pickled_weights_are_rejected_without_unpickling(
    tmp_path: Path, writer: str, filename: str
) -> None:
    marker = tmp_path / "code-ran"
    payload = {"head.classifier.weight": torch.zeros(4, 16), "evil": _CreatesMarker(marker)}
    weights = tmp_path / filename
    if writer == "torch.save":
        torch.save(payload, weights)
    else:
        with weights.open("wb") as handle:
            pickle.dump(payload, handle)

    with pytest.raises(WeightsMismatchError, match="not a readable safetensors file") as error:
        build_model(TINY, weights=weights)

    assert str(weights) in str(error.value)
    assert not marker.exists()


def test_the_pickle_payload_does_run_code_when_unpickled(tmp_path: Path) -> None:
    """Control for the test above: the crafted file is armed, so 'no marker' means something."""
    marker = tmp_path / "code-ran"
    weights = tmp_path / "pytorch_model.bin"  # torch.load reads *.safetensors with safetensors
    torch.save({"evil": _CreatesMarker(marker)}, weights)
    torch.load(weights, weights_only=False)
    assert marker.exists()
