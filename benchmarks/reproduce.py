"""Wall time of the CPU-scale MNIST grid (Tables 1, 3, 5, 6 and Figures 2-3 on ``mnist5k``).

    .venv/bin/python benchmarks/reproduce.py                 # the whole grid, from scratch
    .venv/bin/python benchmarks/reproduce.py --dry-run       # the cells it would run
    .venv/bin/python benchmarks/reproduce.py --tables 1      # one table
    .venv/bin/python benchmarks/reproduce.py --estimate      # how long the grid would take
    .venv/bin/python benchmarks/reproduce.py --check         # the estimate vs the records

It times the reproduce driver exactly as a reader runs it, ``python -m trs_lib.reproduce
--tables ... --rung cpu``, in a subprocess. By default results and checkpoints go to fresh
temporary folders (``TRS_RESULTS_DIR``, ``TRS_RUNS_DIR``), so every cell runs and the project's
committed ``results/`` is not touched; ``--in-place`` uses the project's folders instead (cells
already recorded are then skipped, as the driver does). The report gives the wall time per
kind of cell (trainings per method, evaluations per suite).

``--estimate`` runs nothing: it reads the wall times of the committed records (per method and
per suite, per test point and per epoch-member) and projects the time of every cell the
driver would run, in the driver's order, with the cumulative time against the budget (issue 16:
the whole CPU regrid in at most 5 hours of a 2-core machine). Cells of a kind with no record
yet use stated assumptions (:data:`ASSUMED`). ``--check`` prints, per kind of cell (training
per method and network, evaluation per suite and network, the CW-L2 rows), the predicted and
the measured wall time of the committed records, each predicted from the other records, and
exits 1 when a kind is outside the stated factor. The model is in ``benchmarks/cost_model.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cost_model import ASSUMED, TABLES, TARGET_MIN, check, estimate  # noqa: F401 (benchmarks/)

_DONE = re.compile(r"^\s*done in (\d+) s")
_START = re.compile(r"^\[(\d+)/(\d+)\] (train|eval)\s+(\S+)")


def run(tables, device="cpu", in_place=False, dry_run=False, keep=False, log=print) -> dict:
    """Run the driver and return ``{"wall_s", "returncode", "cells": [(kind, name, seconds)]}``."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "trs_lib.reproduce", "--tables", *tables, "--rung", "cpu",
           "--device", device] + (["--dry-run"] if dry_run else [])
    env = dict(os.environ)
    tmp = None
    if not in_place:
        tmp = tempfile.mkdtemp(prefix="trs-grid-")
        env["TRS_RESULTS_DIR"], env["TRS_RUNS_DIR"] = f"{tmp}/results", f"{tmp}/runs"
    log(f"$ {' '.join(cmd)}" + (f"   (results and runs under {tmp})" if tmp else ""))
    cells, current = [], None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
        log(line.rstrip())
        if m := _START.match(line):
            current = (m.group(3), m.group(4))
        elif (m := _DONE.match(line)) and current is not None:
            cells.append((*current, int(m.group(1))))
            current = None
    proc.wait()
    wall = time.perf_counter() - t0
    if tmp and not keep:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return {"wall_s": wall, "returncode": proc.returncode, "cells": cells, "tables": tables,
            "machine": _machine(), "in_place": in_place}


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", default=TABLES)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rung", default="cpu", help="with --estimate: the rung to project")
    p.add_argument("--in-place", action="store_true", help="use the project's results/ and runs/")
    p.add_argument("--dry-run", action="store_true", help="list the cells, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary results and runs")
    p.add_argument("--json", help="also write the timing summary to this file")
    p.add_argument("--estimate", action="store_true",
                   help="project the grid's wall time from the committed records; run nothing")
    p.add_argument("--list", action="store_true", help="with --estimate: every cell's projection")
    p.add_argument("--check", action="store_true",
                   help="the cost model's predicted vs the records' measured wall time per kind of cell")
    args = p.parse_args(argv)
    if args.check:
        out = check()
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        return 0 if out["within"] else 1
    if args.estimate:
        out = estimate(args.tables, args.rung)
        if args.list:
            for kind, name, sec, assumed, cum in out["cells"]:
                print(f"  {sec / 60:6.1f} min{'*' if assumed else ' '} {cum / 3600:5.2f} h  {kind:5s} {name}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        return 0
    out = run(args.tables, args.device, args.in_place, args.dry_run, args.keep)
    if args.dry_run:
        return out["returncode"]
    minutes = out["wall_s"] / 60
    by_kind = {}
    for kind, name, sec in out["cells"]:
        kind = kind if kind == "train" else f"eval:{name.split('-')[0]}"
        by_kind[kind] = by_kind.get(kind, 0) + sec
    print(f"\nmachine: {out['machine']}")
    print(f"grid {' '.join(args.tables)} (scale cpu): {len(out['cells'])} cells in {minutes:.1f} min "
          f"({', '.join(f'{k} {v / 60:.1f} min' for k, v in sorted(by_kind.items()))}); "
          f"target < {TARGET_MIN:.0f} min: {'met' if minutes < TARGET_MIN else 'NOT met'}"
          + ("" if out["returncode"] == 0 else f"; the driver exited {out['returncode']}"))
    for kind, name, sec in sorted(out["cells"], key=lambda c: -c[2])[:10]:
        print(f"  {sec:6d} s  {kind:5s} {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out["returncode"]


if __name__ == "__main__":
    sys.exit(main())
