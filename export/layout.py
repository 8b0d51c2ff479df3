"""An artifact's files, and writing and reading them without torch.

model.onnx        the graph
model.onnx.data   its weights (external data: every artifact has this layout)
reference.npz     the parity inputs and the float reference's output (root artifacts)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

MODEL_FILE = "model.onnx"
REFERENCE_FILE = "reference.npz"


def save_with_external_data(model: onnx.ModelProto, target: Path) -> None:
    """Every artifact's layout: ``model.onnx`` plus its weights in ``model.onnx.data``."""
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=target.name + ".data",
        size_threshold=1024,
    )


def save_reference(out_dir: Path, inputs: dict[str, np.ndarray], output: np.ndarray) -> None:
    arrays = {f"input:{name}": value for name, value in inputs.items()}
    np.savez(out_dir / REFERENCE_FILE, output=output, **arrays)


def load_reference(directory: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    with np.load(directory / REFERENCE_FILE) as data:
        inputs = {key.split(":", 1)[1]: data[key] for key in data.files if key.startswith("input:")}
        return inputs, data["output"]
