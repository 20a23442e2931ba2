"""The results store: one JSON per run with its provenance, written atomically.

A record holds ``kind`` (``train``, ``evaluate``, ...), ``config``, ``metrics`` and
``provenance`` (git commit, package versions, hardware, wall time). Records are named by the
hash of their config, so rerunning a finished run is a no-op.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

from .atomic import atomic_write_json, read_json

__all__ = ["provenance", "hardware", "git_commit", "write_record", "read_record"]

_RECORD_KEYS = ("kind", "config", "metrics", "provenance")


def git_commit(cwd=None) -> str:
    """The commit of the working tree (with ``-dirty`` if it has changes), or ``unknown``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if dirty else "")) if commit else "unknown"


def hardware(device=None) -> dict:
    import torch
    hw = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
          "device": str(device) if device is not None else "cpu"}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def provenance(wall_time_s: float, device=None) -> dict:
    import numpy
    import torch
    return {"git_commit": git_commit(), "hardware": hardware(device), "wall_time_s": round(wall_time_s, 3),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": numpy.__version__},
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_record(path, kind: str, config: dict, metrics: dict, wall_time_s: float, device=None,
                 extra: dict | None = None) -> Path:
    """Write one run record atomically to ``path``."""
    record = {"kind": kind, "config": config, "metrics": metrics,
              "provenance": provenance(wall_time_s, device)}
    if extra:
        record.update(extra)
    return atomic_write_json(path, record)


def read_record(path) -> dict:
    """Read a run record, checking it has every section (a clear error names the file)."""
    record = read_json(path)
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        from .atomic import CorruptFileError
        raise CorruptFileError(f"{path}: not a run record, missing {missing}")
    return record
