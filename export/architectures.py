"""PyTorch diarization models built from configs: an audio encoder plus a speaker-activity head.

Nothing here downloads weights. Each architecture is plain data (``ArchitectureSpec``), so its
content can be hashed into the cache key; ``build_model`` turns the data into a seeded module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.specs import ARCHITECTURES, ArchitectureSpec, HeadConfig

__all__ = ["ARCHITECTURES", "ArchitectureSpec", "DiarizationModel", "HeadConfig", "build_model"]

SAMPLE_RATE_HZ = 16_000

# wav2vec2's convolutional front end: 20 ms frames (stride 320), 149 frames for 3 s of audio.
W2V2_CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
W2V2_CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


class ConvEncoder(nn.Module):
    """A small strided-conv encoder with wav2vec2's frame rate (kernel/stride schedule)."""

    def __init__(self, channels: tuple[int, ...], hidden_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels, kernel, stride in zip(
            channels, W2V2_CONV_KERNELS, W2V2_CONV_STRIDES, strict=True
        ):
            layers += [nn.Conv1d(in_channels, out_channels, kernel, stride), nn.GELU()]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(in_channels)
        self.proj = nn.Linear(in_channels, hidden_size)
        self.hidden_size = hidden_size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = self.convs(audio.unsqueeze(1)).transpose(1, 2)
        return self.proj(self.norm(features))


class DiarizationHead(nn.Module):
    def __init__(self, encoder_size: int, config: HeadConfig) -> None:
        super().__init__()
        self.input_proj = nn.Linear(encoder_size, config.hidden_size)
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_heads,
            dim_feedforward=config.ff_size,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=config.num_layers, enable_nested_tensor=False
        )
        self.classifier = nn.Linear(config.hidden_size, config.num_speakers)
        prior = config.speaker_prior
        nn.init.constant_(self.classifier.bias, math.log(prior / (1 - prior)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(self.transformer(self.input_proj(hidden))))


class DiarizationModel(nn.Module):
    """audio ``[batch, samples]`` (float32, 16 kHz) -> activity ``[batch, frames, speakers]``."""

    def __init__(self, encoder: nn.Module, encoder_size: int, head: HeadConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = DiarizationHead(encoder_size, head)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(audio)
        if not isinstance(hidden, torch.Tensor):  # transformers' ModelOutput
            hidden = hidden.last_hidden_state
        return self.head(hidden)


def _build_encoder(spec: ArchitectureSpec) -> tuple[nn.Module, int]:
    config = dict(spec.encoder_config)
    if spec.encoder == "cnn":
        encoder = ConvEncoder(tuple(config["channels"]), config["hidden_size"])
        return encoder, encoder.hidden_size
    attn = config.pop("attn_implementation", None)
    if spec.encoder == "wav2vec2":
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        hf_config = Wav2Vec2Config(**config)
        model_class: Any = Wav2Vec2Model
    elif spec.encoder == "hubert":
        from transformers import HubertConfig, HubertModel

        hf_config = HubertConfig(**config)
        model_class = HubertModel
    else:
        raise ValueError(f"unknown encoder kind {spec.encoder!r} in architecture {spec.name!r}")
    if attn:
        hf_config._attn_implementation = attn
    return model_class(hf_config), hf_config.hidden_size


def build_model(spec: ArchitectureSpec, weights: Path | None = None) -> DiarizationModel:
    """A model in eval mode: seeded random weights, or ``weights`` from a safetensors file."""
    torch.manual_seed(spec.seed)
    encoder, encoder_size = _build_encoder(spec)
    model = DiarizationModel(encoder, encoder_size, spec.head)
    if weights is not None:
        load_weights(model, weights, spec.name)
    return model.eval()


class WeightsMismatchError(ValueError):
    """A safetensors file whose tensors do not fit the architecture."""


def load_weights(model: nn.Module, path: Path, arch_name: str) -> None:
    """Load a safetensors file strictly: every key present, no extras, matching shapes.

    safetensors never unpickles, so a file a user hands over cannot run code.
    """
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError
        raise WeightsMismatchError(
            f"{path} is not a readable safetensors file ({error}); export weights with "
            "safetensors.torch.save_file(model.state_dict(), path)"
        ) from error
    expected = model.state_dict()
    problems = weights_problems(
        {key: tuple(tensor.shape) for key, tensor in state.items()},
        {key: tuple(tensor.shape) for key, tensor in expected.items()},
    )
    if problems:
        raise WeightsMismatchError(
            f"{path} does not match architecture {arch_name!r}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def weights_problems(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """What keeps ``found`` tensors from loading strictly into a model expecting ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = sorted(
        f"{key}: file {found[key]} vs model {expected[key]}"
        for key in set(found) & set(expected)
        if tuple(found[key]) != tuple(expected[key])
    )
    groups = {"missing": missing, "unexpected": unexpected, "shape": wrong_shape}
    return [f"{label}: {_shorten(keys)}" for label, keys in groups.items() if keys]


def _shorten(keys: list[str], shown: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def example_audio(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Deterministic speech-like test audio: amplitude-modulated tones plus noise, in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    samples = round(seconds * SAMPLE_RATE_HZ)
    t = torch.arange(samples, dtype=torch.float32) / SAMPLE_RATE_HZ
    pitch = 120.0 + 80.0 * torch.rand(batch, 1, generator=generator)
    phase = torch.rand(batch, 1, generator=generator)
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3.0 * t + phase)
    tone = torch.sin(2 * torch.pi * pitch * t) + 0.3 * torch.sin(2 * torch.pi * 3 * pitch * t)
    noise = 0.05 * torch.randn(batch, samples, generator=generator)
    return (0.4 * envelope * tone + noise).clamp(-1.0, 1.0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
