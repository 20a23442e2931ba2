"""The results store: one JSON per run with its provenance, written atomically, and its reader.

A record holds ``kind`` (``train``, ``evaluate``, ...), ``config``, ``metrics`` and
``provenance`` (git commit, package versions, hardware, wall time). Records are named by the
hash of their config, so rerunning a finished run is a no-op.

The grid of the paper's tables (``trs_lib.grid``) keeps one record per cell under
``results/<kind>/<cell name>.json`` with the executed notebook beside it
(``<cell name>.ipynb``). :func:`load_records` reads them all; :func:`table_frame` puts the
paper's number and ours side by side for every cell of a table, :func:`transfer_frames` does
the same for the transfer matrices of Figures 2-4. Nothing here computes a number: every
"ours" comes from a record, and a cell without a record says ``not run``.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

from .atomic import atomic_write_json, read_json

__all__ = ["provenance", "hardware", "git_commit", "write_record", "read_record", "record_path",
           "notebook_path", "load_records", "cell_record", "robust_accuracy", "table_frame",
           "transfer_frames", "ila_frame", "scale_of", "audit_checks_frame", "audit_details",
           "NOT_RUN"]

NOT_RUN = "not run"

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
    return atomic_write_json(path, record, checksum=True)  # read_record verifies the checksum


def read_record(path) -> dict:
    """Read a run record, checking it has every section (a clear error names the file)."""
    record = read_json(path)
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        from .atomic import CorruptFileError
        raise CorruptFileError(f"{path}: not a run record, missing {missing}")
    wrong = [k for k in ("config", "metrics", "provenance") if not isinstance(record[k], dict)]
    if wrong:
        from .atomic import CorruptFileError
        raise CorruptFileError(f"{path}: not a run record, {wrong} should be JSON objects")
    return record


# ------------------------------------------------------------------------------ the reader
def record_path(cell, root=None) -> Path:
    """``<results dir>/<cell kind>/<cell name>.json`` for a grid cell (``trs_lib.grid``)."""
    from .paths import results_dir
    return Path(root or results_dir()) / cell.kind / f"{cell.name}.json"


def notebook_path(cell, root=None) -> Path:
    """The executed notebook of a cell, beside its record."""
    return record_path(cell, root).with_suffix(".ipynb")


def load_records(root=None, warn=None) -> dict:
    """Every run record under ``root`` (default ``results/``), keyed ``<kind>/<name>``.

    A file that is not a readable record is skipped with a message through ``warn``
    (default: ``warnings.warn``), never silently used.
    """
    import warnings
    from .atomic import CorruptFileError
    from .paths import results_dir
    root = Path(root or results_dir())
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
    out = {}
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*.json")):
        try:
            rec = read_record(path)
        except CorruptFileError as err:
            warn(f"skipping {path}: {err}")
            continue
        rec["_path"] = str(path.relative_to(root))
        out[f"{path.parent.name}/{path.stem}"] = rec
    return out


def cell_record(cell, records: dict) -> dict | None:
    """The record of a grid cell, or None when it has not run."""
    return records.get(f"{cell.kind}/{cell.name}")


def _as_percent(v):
    return None if v is None else round(100.0 * float(v), 2)


def robust_accuracy(record: dict | None, row) -> float | None:
    """Robust accuracy (percent) of ``row`` (a ``paper_numbers.Row`` or its key) in an
    evaluation record, or None when the record lacks it.

    An evaluation record lists ``metrics["rows"]``: one entry per attack setting with its
    ``key`` (``Row.key``) and ``accuracy`` (a fraction in [0, 1]).
    """
    if record is None:
        return None
    key = row if isinstance(row, str) else row.key
    for entry in record.get("metrics", {}).get("rows", []):
        if entry.get("key") == key:
            return _as_percent(entry.get("accuracy"))
    return None


def scale_of(train_record: dict | None, eval_record: dict | None = None) -> str:
    """The scale a number was measured at, read from its records: data set, members, epochs,
    test points (e.g. ``mnist5k, 3 members, 8 epochs, 500 test points``)."""
    if train_record is None:
        return NOT_RUN
    cfg = train_record["config"]
    text = f"{cfg['dataset']}, {cfg['arch']}, {cfg['num_models']} members, {cfg['epochs']} epochs"
    if eval_record is not None:
        n = eval_record.get("metrics", {}).get("n_test") or eval_record.get("config", {}).get("n_test")
        text += f", {n} test points" if n else ""
        cw = eval_record.get("config", {}).get("eval", {}).get("cw_steps")
        text += f", CW {cw} iterations" if cw else ""
    return text


def audit_checks_frame(table_id, scale="cpu", records: dict | None = None, root=None):
    """The audit's sanity checks per column of Table ``table_id`` (1-5): status of each check
    (``pass``, ``FAIL``, ``skipped``) with its eps, or ``not run``."""
    import pandas as pd
    from . import grid, paper_numbers as P
    tab = P.table(table_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(tab.id, scale)
    out = {}
    for col, label in zip(tab.columns, tab.column_labels):
        ec = cells["eval"].get((col, "audit"))
        rec = cell_record(ec, records) if ec else None
        checks = (rec or {}).get("metrics", {}).get("checks")
        if not checks:
            out[label] = {"audit eps": NOT_RUN}
            continue
        row = {"audit eps": f"{rec['metrics'].get('audit_eps', float('nan')):g}"}
        row.update({c["check"]: c["status"] for c in checks})
        out[label] = row
    frame = pd.DataFrame(out).T.fillna(NOT_RUN)
    frame.index.name = "column"
    return frame


def audit_details(table_id, scale="cpu", records: dict | None = None, root=None):
    """One sentence per (column, check) from the audit records: what was measured."""
    import pandas as pd
    from . import grid, paper_numbers as P
    tab = P.table(table_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(tab.id, scale)
    out = []
    for col, label in zip(tab.columns, tab.column_labels):
        ec = cells["eval"].get((col, "audit"))
        rec = cell_record(ec, records) if ec else None
        for c in (rec or {}).get("metrics", {}).get("checks") or []:
            out.append({"column": label, "check": c["check"], "status": c["status"],
                        "detail": c.get("detail", "")})
    return pd.DataFrame(out, columns=["column", "check", "status", "detail"])


def _audit_value(record, row) -> float | None:
    """Worst case of the audit's APGD attacks at the row's L-infinity budget (percent)."""
    if record is None or row.param != "eps":
        return None
    from .grid import AUDIT_ATTACKS
    from .paper_numbers import Row
    vals = [robust_accuracy(record, Row(a, "eps", row.value)) for a in AUDIT_ATTACKS]
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None


def table_frame(table_id, scale="cpu", records: dict | None = None, root=None):
    """Paper vs ours for every cell of Table ``table_id`` (1-5), as a long ``DataFrame``.

    Columns: ``attack``, ``para``, ``row`` (its key), ``column`` (key), ``label`` (as printed),
    ``paper``, ``ours``, ``diff`` (ours - paper), ``audit`` (the adaptive audit's worst case at
    the same budget), ``audited`` (whether the audit covers the row's budget at all: not CW, not
    the FGSM-only budget), ``clean`` (clean accuracy of the ensemble),
    ``scale`` (read from the records) and ``status`` (``ok`` or ``not run``).
    """
    import pandas as pd
    from . import grid, paper_numbers as P
    tab = P.table(table_id)
    if tab.id == "6":
        return ila_frame(scale, records, root)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(tab.id, scale)
    out = []
    for i, row in enumerate(tab.rows):
        part = "pgd110" if row.steps == 110 else "whitebox"
        for j, col in enumerate(tab.columns):
            tc = cells["train"].get(col)
            ec = cells["eval"].get((col, part))
            audit_cell = cells["eval"].get((col, "audit"))
            trec = cell_record(tc, records) if tc else None
            erec = cell_record(ec, records) if ec else None
            ours = robust_accuracy(erec, row)
            paper = tab.values[i][j]
            audit = _audit_value(cell_record(audit_cell, records) if audit_cell else None, row)
            audited = audit_cell is not None and any(
                r.param == row.param and r.value == row.value for r in audit_cell.rows)
            clean = _clean(erec, trec)
            out.append(dict(attack=row.label, para=row.para, row=row.key, column=col,
                            label=tab.column_labels[j], paper=paper, ours=ours,
                            diff=None if ours is None else round(ours - paper, 2),
                            audit=audit, audited=audited, clean=clean,
                            scale=scale_of(trec, erec) if ours is not None else NOT_RUN,
                            status="ok" if ours is not None else NOT_RUN))
    return pd.DataFrame(out)


def _clean(erec, trec) -> float | None:
    if erec is not None and erec.get("metrics", {}).get("clean_accuracy") is not None:
        return _as_percent(erec["metrics"]["clean_accuracy"])
    if trec is not None:
        return _as_percent(trec["metrics"].get("final", {}).get("test_acc_ensemble"))
    return None


def ila_frame(scale="cpu", records: dict | None = None, root=None):
    """Table 6 (ILA on member 1): paper vs ours per row (data set, eps) and column (member
    1-3, ensemble), in the layout of :func:`table_frame`."""
    import pandas as pd
    from . import grid, paper_numbers as P
    tab = P.table(6)
    records = load_records(root) if records is None else records
    cells = grid.table_cells("6", scale)
    out = []
    for i, row in enumerate(tab.rows):
        ec = cells["eval"].get(("trs", f"ila:{row.dataset}"))
        tc = ec.train if ec else None
        erec = cell_record(ec, records) if ec else None
        trec = cell_record(tc, records) if tc else None
        entry = _ila_entry(erec, row)
        for j, col in enumerate(tab.columns):
            ours = None if entry is None else _as_percent(entry.get(col))
            paper = tab.values[i][j]
            out.append(dict(attack=f"{row.dataset}: ILA", para=row.para, row=row.key,
                            column=col, label=tab.column_labels[j], paper=paper, ours=ours,
                            diff=None if ours is None else round(ours - paper, 2), audit=None,
                            audited=False, clean=_clean(erec, trec),
                            scale=scale_of(trec, erec) if ours is not None else NOT_RUN,
                            status="ok" if ours is not None else NOT_RUN))
    return pd.DataFrame(out)


def _ila_entry(record, row) -> dict | None:
    """The ILA entry of a row: ``{"member1": acc, ..., "ensemble": acc}`` (fractions)."""
    if record is None:
        return None
    for entry in record.get("metrics", {}).get("rows", []):
        if entry.get("key") == row.key:
            return entry.get("accuracy_by_model") or entry
    return None


def transfer_frames(figure_id, scale="cpu", records: dict | None = None, root=None) -> dict:
    """The transfer matrices of a figure: ``{(ensemble column, attack): DataFrame or None}``.

    Cell (i, j) of a matrix is the accuracy (percent) of member i on adversarial examples
    crafted against member j, as in Figures 2-4; None where the cell has not run.
    """
    import pandas as pd
    from . import grid, paper_numbers as P
    fig = P.figure(figure_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(fig.id, scale)
    out = {}
    for col in fig.ensembles:
        ec = cells["eval"].get((col, "transfer"))
        erec = cell_record(ec, records) if ec else None
        for attack in grid.TRANSFER_ATTACKS:
            mat = None
            if erec is not None:
                for entry in erec["metrics"].get("rows", []):
                    if entry.get("attack") == attack and entry.get("matrix") is not None:
                        m = entry["matrix"]
                        names = [f"member {k + 1}" for k in range(len(m))]
                        mat = pd.DataFrame([[_as_percent(v) for v in r] for r in m],
                                           index=names, columns=names)
                        mat.index.name = "evaluated on"
                        mat.columns.name = "crafted on"
            out[(col, attack)] = mat
    return out
