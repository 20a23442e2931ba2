"""Reproduction check: retrain one committed TRS cell from this commit and check
that its clean and worst-case accuracies fall inside the committed record's intervals.

    make repro-check                                     # = python -m trs_lib.companion.repro_check
    python -m trs_lib.companion.repro_check --column trs --seed 0  # which cell of Table 1

It reruns the cell exactly as the driver does (``trs_lib.companion.reproduce.run_cell``: the training
notebook, then the ``worst_case`` evaluation notebook) into temporary ``runs/`` and
``results/`` folders, so the committed store is untouched, then compares with the committed
records: the clean accuracy against the Wilson interval of the committed one, each worst-case
row against its record's ``ci95``. The report (markdown) is printed and written to
``results/repro_check.md`` for the book's reproducing page. Exit status 0 when every number is
inside, 1 when one is not, 2 when there is no committed record to check against. About 5-10
minutes on 2 CPU cores; not part of CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from ..stats import wilson_interval
from . import grid as G
from . import reproduce as D
from ..provenance import dirty_files, git_commit
from ..records import cell_record, load_records, read_record, record_path

__all__ = ["check", "compare", "main"]


def _interval(entry, n):
    if entry.get("ci95"):
        return tuple(float(v) for v in entry["ci95"])
    return wilson_interval(round(float(entry["accuracy"]) * n), n)


def compare(old: dict, new: dict) -> list[dict]:
    """Rows ``{what, committed, interval, rerun, inside, points_changed}`` comparing a
    committed evaluation record with a rerun of the same cell (fractions)."""
    mo, mn = old["metrics"], new["metrics"]
    n = int(mo["n_test"])
    out = [dict(what="clean accuracy", committed=mo["clean_accuracy"],
                interval=wilson_interval(round(mo["clean_accuracy"] * n), n),
                rerun=mn.get("clean_accuracy"), points_changed=None)]
    new_rows = {r["key"]: r for r in mn.get("rows", [])}
    for r in mo.get("rows", []):
        if r.get("accuracy") is None:
            continue
        got = new_rows.get(r["key"], {})
        changed = None
        if isinstance(r.get("correct"), str) and isinstance(got.get("correct"), str):
            changed = sum(a != b for a, b in zip(r["correct"], got["correct"]))
        out.append(dict(what=r["key"], committed=r["accuracy"], interval=_interval(r, n),
                        rerun=got.get("accuracy"), points_changed=changed))
    for row in out:
        lo, hi = row["interval"]
        row["inside"] = row["rerun"] is not None and lo - 1e-12 <= row["rerun"] <= hi + 1e-12
    return out


def _report(column, seed, tc, ec, rows, commit, dirty, wall) -> str:
    pct = (lambda v: "missing" if v is None else f"{100 * v:.1f}")
    lines = [f"Reproduction check: column `{column}`, seed {seed}, training `{tc.name}`, "
             f"evaluation `{ec.name}`, rerun at commit `{commit}`"
             + (" (working tree with uncommitted changes)" if dirty else "") + f", {wall / 60:.1f} min.",
             "", "| number | committed (%) | 95% interval (%) | rerun (%) | points changed | inside |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lo, hi = r["interval"]
        lines.append(f"| {r['what']} | {pct(r['committed'])} | [{pct(lo)}, {pct(hi)}] | "
                     f"{pct(r['rerun'])} | {'' if r['points_changed'] is None else r['points_changed']} | "
                     f"{'yes' if r['inside'] else 'NO'} |")
    ok = all(r["inside"] for r in rows)
    lines += ["", "Verdict: " + ("every number of the rerun is inside the committed record's interval."
                                 if ok else "some numbers of the rerun fall outside the committed "
                                            "record's interval.")]
    return "\n".join(lines) + "\n"


def check(column="trs", seed=0, rung="cpu", out=None, keep=False, log=print) -> int:
    """Run the check; returns the exit status (module docstring)."""
    records = load_records()
    cells = G.table_cells("1", rung, seed)
    if column not in cells["train"]:
        log(f"unknown column {column!r} for Table 1; valid: {sorted(cells['train'])}")
        return 2
    tc, ec = cells["train"][column], cells["eval"][(column, "worst_case")]
    old = cell_record(ec, records)
    if cell_record(tc, records) is None or old is None:
        log(f"no committed record of {tc.name} and its worst_case evaluation {ec.name}: the regrid "
            f"has not run this cell yet (python -m trs_lib.reproduce --rung {G.rung(rung).name})")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="trs-repro-check-"))
    os.environ["TRS_RUNS_DIR"] = str(tmp / "runs")  # this process and its notebooks
    root = tmp / "results"
    t0 = time.perf_counter()
    for cell in (tc, ec):
        log(f"rerunning {cell.kind} {cell.name} ...")
        D.run_cell(cell, root=root, rung_name=G.rung(rung).name, log=log)
    new = read_record(record_path(ec, root))
    rows = compare(old, new)
    files = dirty_files()
    text = _report(column, seed, tc, ec, rows, git_commit(), bool(files), time.perf_counter() - t0)
    log(text)
    out = Path(out) if out else record_path(ec).parent.parent / "repro_check.md"
    out.write_text(text, encoding="utf-8")
    log(f"report written to {out}" + ("" if keep else f"; temporary runs removed from {tmp}"))
    if not keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["inside"] for r in rows) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trs_lib.companion.repro_check",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--column", default="trs", help="a column of Table 1 (default: trs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rung", default="cpu")
    ap.add_argument("--out", help="where to write the report (default: results/repro_check.md)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary runs and results")
    args = ap.parse_args(argv)
    return check(args.column, args.seed, args.rung, args.out, args.keep)


if __name__ == "__main__":
    sys.exit(main())
