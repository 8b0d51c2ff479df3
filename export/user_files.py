"""Files users hand over (their ONNX models, trained weights), checked before anything uses them.

Every check raises ``UserFileError`` with one line: the option and file, what is wrong with the
file, and what to do. The checks are the cheap ones: an ONNX file is parsed without its weights,
its external-data files located and ``onnx.checker`` run on the graph; a safetensors file's
header is read and its tensor names and shapes compared with the architecture's, without
loading a tensor.
"""

from __future__ import annotations

from pathlib import Path

from export.recipes import onnx_file_set

ONNX_FIX = "re-export it, or copy it again if the copy was cut short"
WEIGHTS_FIX = "save them with safetensors.torch.save_file(model.state_dict(), path)"


class UserFileError(ValueError):
    """A user's file that cannot be used; the message is one line naming it and the fix."""


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text}"[:300]


def check_onnx_file(path: Path, option: str) -> None:
    """Raises UserFileError unless ``path`` is an ONNX model whose graph and weights are there."""
    import onnx

    where = f"{option} {path}"
    if not path.is_file():
        raise UserFileError(f"{where}: no such file")
    try:
        files = onnx_file_set(path)
    except Exception as error:  # protobuf raises DecodeError and friends for non-ONNX bytes
        raise UserFileError(f"{where}: not an ONNX model ({_reason(error)}); {ONNX_FIX}") from None
    missing = [f.name for f in files[1:] if not f.is_file()]
    if missing:
        raise UserFileError(
            f"{where}: its weights file {', '.join(missing)} is not beside it in {path.parent} "
            "(ONNX keeps large weights in a separate file); copy it next to the .onnx file"
        )
    try:
        onnx.checker.check_model(str(path))
    except Exception as error:  # ValidationError, or the reader failing on the external data
        raise UserFileError(
            f"{where}: not a valid ONNX graph ({_reason(error)}); {ONNX_FIX}"
        ) from None


def weights_shapes(path: Path, option: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors file's header, without loading a tensor."""
    from safetensors import safe_open

    where = f"{option} {path}"
    if not path.is_file():
        raise UserFileError(f"{where}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 - a handle, not a dict
    except Exception as error:  # safetensors raises its own SafetensorError
        raise UserFileError(
            f"{where}: not a readable safetensors file ({_reason(error)}); {WEIGHTS_FIX}"
        ) from None


def check_weights_file(path: Path, option: str, arch_name: str) -> None:
    """Raises UserFileError unless ``path`` holds exactly the architecture's tensors."""
    found = weights_shapes(path, option)
    from export.architectures import ARCHITECTURES, build_model, weights_problems  # needs torch

    expected = {
        key: tuple(tensor.shape)
        for key, tensor in build_model(ARCHITECTURES[arch_name]).state_dict().items()
    }
    problems = weights_problems(found, expected)
    if problems:
        raise UserFileError(
            f"{option} {arch_name}={path}: does not match architecture {arch_name!r}: "
            + "; ".join(problems)
        )
