"""Wall time of the CPU-scale MNIST grid (Tables 1, 3, 5, 6 and Figures 2-3 on ``mnist5k``).

    .venv/bin/python benchmarks/reproduce.py                 # the whole grid, from scratch
    .venv/bin/python benchmarks/reproduce.py --dry-run       # the cells it would run
    .venv/bin/python benchmarks/reproduce.py --tables 1      # one table

It times the reproduce driver exactly as a reader runs it, ``python -m trs_lib.reproduce
--tables ... --scale cpu``, in a subprocess. By default results and checkpoints go to fresh
temporary folders (``TRS_RESULTS_DIR``, ``TRS_RUNS_DIR``), so every cell runs and the project's
committed ``results/`` is not touched; ``--in-place`` uses the project's folders instead (cells
already recorded are then skipped, as the driver does). The target (issue 8) is under 60
minutes on a 2-core CPU.
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

TABLES = ["1", "3", "5", "6", "fig2", "fig3"]
TARGET_MIN = 60.0
_DONE = re.compile(r"^\s*done in (\d+) s")
_START = re.compile(r"^\[(\d+)/(\d+)\] (train|eval)\s+(\S+)")


def run(tables, device="cpu", in_place=False, dry_run=False, keep=False, log=print) -> dict:
    """Run the driver and return ``{"wall_s", "returncode", "cells": [(kind, name, seconds)]}``."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "trs_lib.reproduce", "--tables", *tables, "--scale", "cpu",
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
    p.add_argument("--in-place", action="store_true", help="use the project's results/ and runs/")
    p.add_argument("--dry-run", action="store_true", help="list the cells, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary results and runs")
    p.add_argument("--json", help="also write the timing summary to this file")
    args = p.parse_args(argv)
    out = run(args.tables, args.device, args.in_place, args.dry_run, args.keep)
    if args.dry_run:
        return out["returncode"]
    minutes = out["wall_s"] / 60
    by_kind = {}
    for kind, _, sec in out["cells"]:
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
