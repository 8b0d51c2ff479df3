"""Writing a file so that a crash never leaves half of it: the one atomic writer of the suite.

The data go to a temporary file beside the target (``.NAME.*.tmp``), which is renamed over it;
a reader sees the old file or the new one, never a mix. ``durable=True`` also fsyncs the file
and its folder, for files whose loss matters after a power cut (committed baselines).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def scratch_prefix(path: Path) -> str:
    """Temporary files of ``path`` start with this (a killed writer's can be found and removed)."""
    return f".{path.name}."


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(scratch, 0o644)  # mkstemp's 0600 would hide a committed file from other users
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise
    if durable:
        _fsync_directory(path.parent)
    return path


def atomic_write_text(path: Path, text: str, durable: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable)


def _fsync_directory(directory: Path) -> None:
    """Makes the rename itself durable; POSIX only."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
