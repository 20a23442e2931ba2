"""Wall time of the CPU-scale MNIST grid (Tables 1, 3, 5, 6 and Figures 2-3 on ``mnist5k``).

    .venv/bin/python benchmarks/reproduce.py                 # the whole grid, from scratch
    .venv/bin/python benchmarks/reproduce.py --dry-run       # the cells it would run
    .venv/bin/python benchmarks/reproduce.py --tables 1      # one table
    .venv/bin/python benchmarks/reproduce.py --estimate      # how long the grid would take

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
yet use stated assumptions (:data:`ASSUMED`).
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
TARGET_MIN = 300.0   # issue 16: the whole CPU regrid in at most 5 hours
CELL_OVERHEAD_S = 10.0  # papermill: kernel start, imports, data (not in the records' wall time)
# Ratios for kinds without a record yet, with their source:
ASSUMED = {
    # benchmarks/README.md, TRS step on the small CNN: published 142 img/s vs seed 490 img/s
    "trs_published_vs_trs": 490.1 / 142.1,
    # GAL: one input-gradient cosine per pair, like CosSim; DVERGE: 10 distillation steps per
    # batch, like TRS + AT's 10 PGD steps
    "gal_like": "cossim", "dverge_like": "trs_at",
    # methods without a regrid record yet: their cost relative to TRS in the pre-regrid records
    # (commit e905c60, small CNN, 4 epochs, one sitting): wall time per epoch-member / TRS's 4.08 s
    "vs_trs": {"vanilla": 3.55 / 4.08, "cossim": 6.62 / 4.08, "ckae": 3.30 / 4.08,
               "adaboost": 5.40 / 4.08, "gradientboost": 4.44 / 4.08, "adp": 3.39 / 4.08,
               "trs_at": 36.66 / 4.08},
    # suites without a regrid record yet: seconds per test point relative to the paper's
    # white-box suite in the same pre-regrid records (whitebox 0.266 s per point)
    "eval_vs_whitebox": {"audit": 0.647 / 0.266, "ila": 0.0277 / 0.266, "pgd110": 0.335 / 0.266,
                         "transfer": 0.0511 / 0.266},
    # CW-L2 with 1,000 iterations (stop at first success), seconds per point, measured on TRS
    # seed 0 (200 points, 2 threads, after the small CNN's pool-first layout): c = 10 0.105,
    # c = 0.1 0.277 (nothing breaks: every point runs until CW's early abort); the c = 10
    # convergence check with the iterations doubled 0.141
    "cw_1000_per_point": 0.105 + 0.277 + 0.141,
    # the smoothness suite (3 radii x 5 member gradients per point): 8.3 s for 100 points in the
    # evaluation chapter while two other jobs shared the 2 cores; taken as 0.02 s per point
    "smoothness_per_point": 0.02,
    # two drivers side by side (reproduce --shard 0/2 and 1/2, OMP_NUM_THREADS=1 each): the
    # first 43 minutes of the regrid ran 4,995 s of cell time in 2,580 s of wall time
    "two_shards_speedup": 4995 / 2580,
    # ResNet-20 vs small CNN: TRS step 25.6 vs 490 img/s (README); a plain forward-backward
    # measured 13.5x on this machine (1 thread)
    "r20_trs": 490.1 / 25.6, "r20_plain": 13.5,
    # worst_case (contract C1): per budget about APGD-CE + APGD-DLR on the points still robust,
    # i.e. 1.5 audit APGD rows per budget (the second attack runs on the survivors only)
    "worst_case_per_budget": "audit_apgd_pair",
    # training images per epoch relative to mnist5k's 4,000 (trs_lib.data): full Fashion-MNIST
    "train_images_vs_mnist5k": {"fashion_mnist": 60000 / 4000, "mnist": 60000 / 4000,
                                "cifar10": 50000 / 4000},
}
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


def _records_rates(records):
    """Per-kind rates from committed records: training seconds per epoch-member by method,
    evaluation seconds per test point by suite (and per row for APGD), and counts."""
    from statistics import median
    train, ev, apgd, wc, linf, cw = {}, {}, [], [], [], []
    for key, rec in records.items():
        wall = rec["provenance"].get("wall_time_s")
        if not wall:
            continue
        if key.startswith("train/"):
            cfg = rec["config"]
            if cfg.get("arch", "small_cnn") != "small_cnn":
                continue  # the ResNet-20 ratios below apply to small-CNN rates
            kind = "trs_published" if cfg.get("variant") == "published" else cfg["method"]
            train.setdefault(kind, []).append(wall / (cfg["epochs"] * cfg["num_models"]))
            continue
        n = rec["metrics"].get("n_test")
        suite = rec.get("grid", {}).get("cell", key.split("/")[1]).split("-")[0]
        rows = rec["metrics"].get("rows", [])
        if suite == "whitebox" and rows and all(str(r.get("key", "")).startswith("pgd110") for r in rows):
            suite = "pgd110"
        if n:
            ev.setdefault(suite, []).append(wall / n)
            if suite == "audit":
                apgd += [r["wall_s"] / n for r in rows if r.get("wall_s")]
            if suite == "worst_case" and rows:
                wc.append(wall / (n * len(rows)))
            if suite == "whitebox" and rows and all(r.get("wall_s") for r in rows):
                lin = [r for r in rows if r.get("attack") != "cw"]
                linf.append(sum(r["wall_s"] for r in lin) / n)
                cw_rows = [r for r in rows if r.get("attack") == "cw"
                           and r.get("kwargs", {}).get("steps") == 1000]
                if cw_rows:
                    check = rec["metrics"].get("cw_convergence") or {}
                    cw.append((sum(r["wall_s"] for r in cw_rows) + check.get("wall_s", 0.0))
                              / len(cw_rows[0]["correct"]))
    rates = {("train", k): median(v) for k, v in train.items()}
    rates.update({("eval", k): median(v) for k, v in ev.items()})
    if apgd:
        rates[("eval", "apgd_row")] = median(apgd)
    if wc:
        rates[("eval", "worst_case_row")] = median(wc)
    if linf:
        rates[("eval", "whitebox_linf")] = median(linf)
    if cw:
        rates[("eval", "cw_1000")] = median(cw)
    counts = {("train", k): len(v) for k, v in train.items()}
    counts.update({("eval", k): len(v) for k, v in ev.items()})
    return rates, counts


def _cell_seconds(cell, rates):
    """Projected seconds of one cell and whether it rests on an assumption."""
    assumed = False
    if cell.kind == "train":
        cfg = cell.config()
        method = cfg.method
        if method == "trs" and cfg.variant == "published" and ("train", "trs_published") in rates:
            base = rates[("train", "trs_published")]
        elif method == "trs" and cfg.variant == "published":
            base, assumed = rates[("train", "trs")] * ASSUMED["trs_published_vs_trs"], True
        elif ("train", method) in rates:
            base = rates[("train", method)]
        else:
            like = ASSUMED.get(f"{method}_like", method)
            if ("train", like) in rates:
                base, assumed = rates[("train", like)], True
            else:
                base, assumed = rates[("train", "trs")] * ASSUMED["vs_trs"][like], True
        if cfg.arch.startswith("resnet20"):
            base *= ASSUMED["r20_trs"] if method == "trs" else ASSUMED["r20_plain"]
            assumed = True
        if cfg.dataset in ASSUMED["train_images_vs_mnist5k"]:
            base, assumed = base * ASSUMED["train_images_vs_mnist5k"][cfg.dataset], True
        return base * cfg.epochs * cfg.num_models + CELL_OVERHEAD_S, assumed
    n = dict(cell.settings).get("n_test") or 1000
    suite = cell.suite
    if suite == "whitebox" and all(r.steps == 110 for r in cell.rows):
        suite = "pgd110"
    if suite == "worst_case" and ("eval", "worst_case_row") in rates:
        per_point = rates[("eval", "worst_case_row")] * len(cell.rows)
    elif suite == "worst_case":
        per_point, assumed = 1.5 * rates[("eval", "apgd_row")] * len(cell.rows), True
    elif suite == "whitebox" and ("eval", "whitebox_linf") in rates:
        settings = dict(cell.settings)
        cw_n = settings.get("cw_n_test") or n
        cw_rate = rates.get(("eval", "cw_1000"))
        assumed = assumed or cw_rate is None
        cw_rate = ASSUMED["cw_1000_per_point"] if cw_rate is None else cw_rate
        if settings.get("cw_steps") != 1000:
            cw_rate *= settings.get("cw_steps", 1000) / 1000
        has_cw = any(r.attack == "cw" for r in cell.rows)
        per_point = rates[("eval", "whitebox_linf")] + (cw_rate * cw_n / n if has_cw else 0.0)
    elif ("eval", suite) in rates:
        per_point = rates[("eval", suite)]
    elif suite == "smoothness":
        per_point, assumed = ASSUMED["smoothness_per_point"], True
    else:
        per_point, assumed = rates[("eval", "whitebox")] * ASSUMED["eval_vs_whitebox"][suite], True
    if cell.train.config().arch.startswith("resnet20"):
        per_point, assumed = per_point * ASSUMED["r20_plain"], True
    return per_point * n + CELL_OVERHEAD_S, assumed


def estimate(tables=TABLES, rung="cpu", log=print) -> dict:
    """Project the wall time of the grid's cells still to run, in the driver's order."""
    from trs_lib.companion import grid as G
    from trs_lib.companion import reproduce as D
    from trs_lib.records import load_records
    rates, counts = _records_rates(load_records(warn=lambda m: None))
    log("wall time per kind of cell in the committed records (median):")
    for (kind, name), r in sorted(rates.items()):
        unit = "s per epoch-member" if kind == "train" else "s per test point"
        log(f"  {kind:5s} {name:14s} {r:7.3f} {unit}" + (f"  ({counts[(kind, name)]} records)"
                                                         if (kind, name) in counts else ""))
    items = D.plan([G.normalise_target(t) for t in tables], rung)
    todo = [c for c, done in items if not done]
    groups = {0: "Table 1, all seeds", 1: "figures and Table 6", 2: "Tables 3 and 5",
              5: "audits' sanity checks"}
    total, rows, by_group, by_kind = 0.0, [], {}, {}
    budget_cell = None
    for c in todo:
        sec, assumed = _cell_seconds(c, rates)
        total += sec
        g = min(G._group(t, p) for t in tables for s in G.seeds_for(t, rung)
                for (col, p), ec in G.table_cells(t, rung, s)["eval"].items()
                if (ec.name == c.name) or (c.kind == "train" and ec.train.name == c.name))
        by_group[g] = by_group.get(g, 0.0) + sec
        kind = c.kind if c.kind == "train" else c.suite
        by_kind[kind] = by_kind.get(kind, 0.0) + sec
        if budget_cell is None and total > TARGET_MIN * 60:
            budget_cell = c.name
        rows.append((c.kind, c.name, sec, assumed, total))
    log(f"\n{len(todo)} cells to run on rung {rung!r} (of {len(items)}); projected "
        f"{total / 3600:.1f} h of cell time, one cell after another (budget {TARGET_MIN / 60:.0f} h); "
        f"with two one-thread shards (reproduce --shard, measured {ASSUMED['two_shards_speedup']:.2f}x) "
        f"about {total / ASSUMED['two_shards_speedup'] / 3600:.1f} h of wall time")
    log("by kind: " + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in sorted(by_kind.items())))
    cum = 0.0
    for g in sorted(by_group):
        cum += by_group[g]
        log(f"  {groups.get(g, g)}: {by_group[g] / 3600:.2f} h (cumulative {cum / 3600:.2f} h"
            f"{', within budget' if cum <= TARGET_MIN * 60 else ', beyond the budget'})")
    if budget_cell:
        log(f"the budget ends at cell {budget_cell}")
    log("(* = rests on an assumption, see ASSUMED in benchmarks/reproduce.py)")
    return {"total_s": total, "by_group": by_group, "by_kind": by_kind, "cells": rows,
            "budget_ends_at": budget_cell}


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
    args = p.parse_args(argv)
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
