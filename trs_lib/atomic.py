"""Atomic file writes and checked reads: a half-written file is never read as valid.

Writes go to a temporary file in the same folder (``.<name>.pid<PID>.<random>.tmp``), are
flushed and fsynced, then renamed over the target (``os.replace`` is atomic on POSIX) and the
folder is fsynced. On any failure (a full disk included) the temporary file is removed, the
error names the target, and the previous version of the target is left untouched. A process
killed mid-write (SIGKILL, power loss) can leave a temporary file behind but never a damaged
target; :func:`remove_stale_temp` deletes such leftovers of processes that no longer run.

A JSON file can carry a checksum of its own content (``atomic_write_json(..., checksum=True)``,
key ``content_sha256``): :func:`read_json` verifies it and removes the key, so a flipped digit in
a checkpoint sidecar or a results record is an error, not a silently different number. Files
without the key (written by hand, or by tools that do not add it) are read unchecked unless the
reader requires it (``require_checksum=True``: checkpoint and weights sidecars, which this
library always writes with one, so a damaged key name cannot switch the check off).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_json", "read_json", "sha256_file", "sha256_bytes",
           "remove_stale_temp", "CorruptFileError", "CHECKSUM_KEY"]

CHECKSUM_KEY = "content_sha256"

_TEMP = re.compile(r"^\..+\.pid(\d+)\.[A-Za-z0-9_]+\.tmp$")


class CorruptFileError(ValueError):
    """A file exists but is truncated, corrupt or of the wrong kind."""


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    An ``OSError`` (no space left, file too large, read-only folder) is re-raised with the
    target's path in its message, after the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):
            raise type(err)(err.errno, f"{err.strerror or err}; could not write {path} (its previous "
                            f"version, if any, is untouched)") from None
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _canonical(obj) -> bytes:
    """The content of a JSON object as bytes that do not depend on formatting or key order."""
    plain = json.loads(json.dumps(obj, allow_nan=False, default=str))
    plain.pop(CHECKSUM_KEY, None)
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def atomic_write_json(path, obj, checksum: bool = False) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN and Infinity are refused).

    ``checksum=True`` adds ``content_sha256``, the SHA-256 of the content, checked by :func:`read_json`.
    """
    try:
        if checksum:
            obj = dict(obj)
            obj[CHECKSUM_KEY] = sha256_bytes(_canonical(obj))
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n"
    except ValueError as err:
        raise ValueError(f"{path}: refusing to write NaN or infinity as JSON ({err}); "
                         f"nothing was written") from None
    return atomic_write_bytes(path, text.encode())


def read_json(path, require_checksum: bool = False) -> dict:
    """Read a JSON object; a truncated or corrupt file raises ``CorruptFileError`` naming it.

    A ``content_sha256`` key is verified and removed; ``require_checksum`` refuses a file without one.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path}: not valid JSON ({err}); the file is truncated or corrupt") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    if CHECKSUM_KEY in obj:
        expected = obj.pop(CHECKSUM_KEY)
        try:
            ok = sha256_bytes(_canonical(obj)) == expected
        except ValueError:  # NaN or Infinity in the file: never written by atomic_write_json
            ok = False
        if not ok:
            raise CorruptFileError(f"{path}: content does not match its {CHECKSUM_KEY}; the file is "
                                   f"corrupt or was edited by hand")
    elif require_checksum:
        raise CorruptFileError(f"{path}: has no {CHECKSUM_KEY}; the file is corrupt or was not "
                               f"written by trs_lib")
    return obj


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temp(folder) -> list[Path]:
    """Delete the temporary files in ``folder`` left by writers that are no longer running.

    Temporary files of a live process (this one included) are kept. Returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and not _alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
