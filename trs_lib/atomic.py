"""Atomic file writes and checked reads: a half-written file is never read as valid.

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX). On any failure (a full disk included) the
temporary file is removed and the previous version of the target is left untouched.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_json", "read_json", "sha256_file", "CorruptFileError"]


class CorruptFileError(ValueError):
    """A file exists but is truncated, corrupt or of the wrong kind."""


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN and Infinity are refused)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path) -> dict:
    """Read a JSON object; a truncated or corrupt file raises ``CorruptFileError`` naming it."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err}); the file is truncated or corrupt") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
