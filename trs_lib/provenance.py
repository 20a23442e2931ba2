"""Provenance of a run: the commit of its code (refusing a dirty tree), versions, hardware,
wall time and peak memory, as a record's ``provenance`` section (``trs_lib.records``)."""
from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

from .atomic import atomic_write_bytes
from .paths import project_root

__all__ = ["provenance", "hardware", "git_commit", "dirty_files", "check_clean_tree",
           "DirtyTreeError", "mark_allow_dirty", "is_dirty", "relativize_notebook",
           "peak_memory_mib"]


# Paths whose changes do not make a run's code dirty: the results store itself (the driver
# writes records there while it runs).
_NOT_CODE = ("results",)


def dirty_files(root=None) -> list[str]:
    """Tracked files of the working tree at ``root`` (default: the project) that differ from
    HEAD, and untracked files git does not ignore, outside ``results/``: what makes a
    run's code differ from its commit. ``[]`` for a clean tree; ``None`` outside a git work tree."""
    root = Path(root or project_root())
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", "."]
                             + [f":(exclude){p}" for p in _NOT_CODE], cwd=root,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sorted({line[3:].split(" -> ")[-1].strip().strip('"') for line in out.stdout.splitlines()
                   if line.strip()})


class DirtyTreeError(RuntimeError):
    """The working tree has changes, so a record written now would not name its code."""


def check_clean_tree(root=None, allow_dirty: bool = False, results_root=None) -> list[str]:
    """Refuse a dirty working tree: raise :class:`DirtyTreeError` naming the
    changed files unless ``allow_dirty`` (then the records are marked, see
    :func:`mark_allow_dirty`). Returns the changed files (``[]`` when clean).

    ``results_root``: where the records will go; a folder outside the project (a test's or a
    benchmark's temporary results) is not the committed store and is not checked."""
    root = Path(root or project_root())
    if results_root is not None:
        try:
            Path(results_root).resolve().relative_to(root.resolve())
        except ValueError:
            return []
    files = dirty_files(root)
    if files is None:
        raise DirtyTreeError("not inside a git work tree: a record could not name the commit of "
                             "its code; run from a clone, or pass --allow-dirty")
    if files and not allow_dirty:
        shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
        raise DirtyTreeError(f"the working tree has {len(files)} changed file(s): {shown}. Commit "
                             "them (or stash them) so that each record names the code that made "
                             "it, or pass --allow-dirty to write records marked as such")
    return files


def mark_allow_dirty(record: dict) -> dict:
    """Mark a record whose commit is ``-dirty`` (``provenance.allow_dirty = True``): pages warn
    about it and the provenance test accepts it. Returns the record."""
    prov = record.setdefault("provenance", {})
    if str(prov.get("git_commit", "")).endswith("-dirty"):
        prov["allow_dirty"] = True
    return record


def relativize_notebook(path, root=None) -> Path:
    """Rewrite an executed notebook so that it names no absolute path of this machine: the
    project root (``<root>/``) is removed from its metadata and outputs (papermill's
    ``input_path``/``output_path``, messages that print a run folder). Returns ``path``."""
    path = Path(path)
    prefix = str(Path(root or project_root()).resolve()) + "/"
    text = path.read_text(encoding="utf-8")
    if prefix in text or json.dumps(prefix)[1:-1] in text:
        text = text.replace(prefix, "").replace(json.dumps(prefix)[1:-1], "")
        atomic_write_bytes(path, text.encode("utf-8"))
    return path


def is_dirty(record: dict | None) -> bool:
    """Whether a record was written from a dirty tree (marked or not)."""
    prov = (record or {}).get("provenance", {})
    return bool(prov.get("allow_dirty")) or str(prov.get("git_commit", "")).endswith("-dirty")


def git_commit(cwd=None) -> str:
    """The commit of the working tree (with ``-dirty`` if tracked files outside ``results/``
    have changes), or ``unknown``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."]
                               + [f":(exclude){p}" for p in _NOT_CODE], cwd=top or cwd,
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


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``; the kernel reports
    KiB on Linux, bytes on macOS). In a papermill cell the process is the notebook's kernel,
    so this is the run's own peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def provenance(wall_time_s: float, device=None) -> dict:
    """A record's ``provenance``: commit, hardware, wall time, peak memory (resident, and CUDA's
    allocator peak when the run used a GPU), versions and the finishing time."""
    import numpy
    import torch
    out = {"git_commit": git_commit(), "hardware": hardware(device), "wall_time_s": round(wall_time_s, 3),
           "peak_memory_mib": peak_memory_mib(),
           "versions": {"python": platform.python_version(), "torch": torch.__version__,
                        "numpy": numpy.__version__},
           "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return out


