"""Where the project's folders are, whatever the working directory.

Notebooks run with the caller's directory (papermill), the notebook's folder (nbval,
Jupyter Book) or anywhere else; all of them find ``results/`` and ``runs/`` through here.
The project root is the nearest folder, from the working directory upwards, that holds
``_config.yml`` and ``trs_lib/``; else the folder above the installed package.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "results_dir", "runs_dir", "display_path"]


def project_root() -> Path:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "trs_lib").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """``$TRS_RESULTS_DIR`` or ``<project root>/results``."""
    return Path(os.environ.get("TRS_RESULTS_DIR") or project_root() / "results")


def runs_dir() -> Path:
    """``$TRS_RUNS_DIR`` or ``<project root>/runs`` (checkpoints and weights; not committed)."""
    return Path(os.environ.get("TRS_RUNS_DIR") or project_root() / "runs")


def display_path(path) -> str:
    """``path`` relative to the project root when inside it, else absolute: for messages and
    records, so that executed notebooks and records hold no machine-specific paths."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(project_root().resolve()))
    except ValueError:
        return str(path)
