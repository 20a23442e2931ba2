"""The grid's cost model: the wall time of every cell of a rung, projected from the committed
records (``benchmarks/reproduce.py --estimate``), and checked against them per kind of cell
(``--check``: each record's cell predicted from the other records, leave one out).

Rates are measured on the small CNN (training seconds per epoch-member by method, evaluation
seconds per test point by suite); a ResNet-20 cell is the small-CNN projection times the
network's ratio, measured from the ResNet-20 records of that kind of cell when there are some
(else :data:`ASSUMED`). The worst case's cost grows with the points still robust (each attack
runs on the survivors), so its rate is a line in the column's PGD/BIM/MIM robust accuracy from
its whitebox record, floored at the first attack's cost.
"""
from __future__ import annotations

from statistics import median

import numpy as np

from trs_lib.companion import grid as G
from trs_lib.companion import reproduce as D
from trs_lib.companion.rungs import RUNGS, TARGETS as ALL_TARGETS
from trs_lib.records import load_records

TABLES = ["1", "3", "5", "6", "fig2", "fig3"]
TARGET_MIN = 300.0   # issue 16: the whole CPU regrid in at most 5 hours
CELL_OVERHEAD_S = 10.0  # papermill: kernel start, imports, data (not in the records' wall time)
# --check: every kind's measured / predicted wall time within these factors either way: 2.5x
# where the prediction rests on measured rates only (cells of one config vary up to 2x here on a
# shared 2-core machine), 3x where it rests on an assumption (ASSUMED)
CHECK_FACTOR, CHECK_FACTOR_ASSUMED = 2.5, 3.0
# Ratios for kinds without a record yet, with their source:
ASSUMED = {
    # benchmarks/README.md, TRS step on the small CNN: published 142 img/s vs seed 490 img/s
    "trs_published_vs_trs": 490.1 / 142.1,
    # GAL: one input-gradient cosine per pair, like CosSim; DVERGE: 10 distillation steps per
    # batch, like TRS + AT's 10 PGD steps
    "gal_like": "cossim", "dverge_like": "trs_at",
    # LOTOS adds one power-iteration step per convolution per batch (trs_lib.methods.lotos),
    # small beside a forward-backward: like vanilla alone, like TRS with TRS (not yet measured)
    "lotos_like": "vanilla", "trs_lotos_like": "trs",
    # methods without a regrid record yet: their cost relative to TRS in the pre-regrid records
    # (commit e905c60, small CNN, 4 epochs, one sitting): wall time per epoch-member / TRS's 4.08 s
    "vs_trs": {"vanilla": 3.55 / 4.08, "cossim": 6.62 / 4.08, "ckae": 3.30 / 4.08,
               "adaboost": 5.40 / 4.08, "gradientboost": 4.44 / 4.08, "adp": 3.39 / 4.08,
               "trs_at": 36.66 / 4.08},
    # suites without a regrid record yet: seconds per test point relative to the paper's
    # white-box suite in the same pre-regrid records (whitebox 0.266 s per point)
    "eval_vs_whitebox": {"audit": 0.647 / 0.266, "ila": 0.0277 / 0.266, "pgd110": 0.335 / 0.266,
                         "transfer": 0.0511 / 0.266},
    # the black-box suite (trs_lib.transfer): crafting the default plan (11 attacks x 3
    # surrogates) took 153 s for 24 points at one budget on one loaded thread (the transfer
    # machinery's end-to-end run), charged once per rung to TRS's seed-0 cell (the driver runs it
    # first; later cells reuse the cached examples); evaluating a column is forward passes only:
    # 0.36 s for 64 points and 8 pairs at one budget (benchmarks/transfer.json)
    "blackbox_craft_per_point_budget": 153 / 24,
    "blackbox_eval_per_point_pair_budget": 0.36 / 64 / 8, "blackbox_pairs": 11 * 3 - 2,
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
    # a column's robust accuracy under PGD/BIM/MIM at eps 0.15 when its whitebox record is
    # missing (the median of the regrid's small-CNN columns, results/eval/whitebox-*)
    "worst_case_robust_accuracy": 0.3,
    # worst_case (contract C1): per budget about APGD-CE + APGD-DLR on the points still robust,
    # i.e. 1.5 audit APGD rows per budget (the second attack runs on the survivors only)
    "worst_case_per_budget": "audit_apgd_pair",
    # training images per epoch relative to mnist5k's 4,000 (trs_lib.data): full Fashion-MNIST
    "train_images_vs_mnist5k": {"fashion_mnist": 60000 / 4000, "mnist": 60000 / 4000,
                                "cifar10": 50000 / 4000},
}
def _records_rates(records):
    """Per-kind rates from committed records: training seconds per epoch-member by method,
    evaluation seconds per test point by suite (and per row for APGD), and counts."""
    train, ev, apgd, wc, linf, cw, wc_floor = {}, {}, [], [], [], [], []
    robust = _robust_before(records)
    for key, rec in records.items():
        wall = rec["provenance"].get("wall_time_s")
        if not wall:
            continue
        if _arch(rec) != "small_cnn":
            continue  # the ResNet-20 ratios (ASSUMED) apply to small-CNN rates
        if key.startswith("train/"):
            cfg = rec["config"]
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
                ps = [robust.get((rec.get("grid", {}).get("train"), r.get("value"))) for r in rows]
                if None not in ps:
                    wc.append((sum(ps) / len(ps), wall / (n * len(rows))))
                wc_floor += [r["wall_s_by_attack"]["apgd_ce"] / n for r in rows
                             if "apgd_ce" in r.get("wall_s_by_attack", {})]
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
    if len(wc) >= 2:  # seconds per point and row = a + b * (robust accuracy under PGD/BIM/MIM)
        b, a = np.polyfit([p for p, _ in wc], [y for _, y in wc], 1)
        # never below the first attack's cost, which runs on every point (APGD-CE)
        rates[("eval", "worst_case_row")] = (float(a), float(b),
                                             median(wc_floor) if wc_floor else 0.0)
    rates.update({("robust",) + k: v for k, v in robust.items()})
    if linf:
        rates[("eval", "whitebox_linf")] = median(linf)
    if cw:
        rates[("eval", "cw_1000")] = median(cw)
    counts = {("train", k): len(v) for k, v in train.items()}
    counts.update({("eval", k): len(v) for k, v in ev.items()})
    return rates, counts


def _robust_before(records) -> dict:
    """``{(training name, eps): accuracy}``: the lowest robust accuracy of a training's
    L-inf rows (PGD, BIM, MIM) in its whitebox records, which the driver runs before its
    worst case. The worst case's cost grows with the points still robust (each attack runs on
    the survivors only), so this is the cost model's predictor of it."""
    out = {}
    for key, rec in records.items():
        if not key.startswith("eval/whitebox-"):
            continue
        train = rec.get("grid", {}).get("train")
        for r in rec["metrics"].get("rows", []):
            if r.get("attack") in ("pgd", "bim", "mim") and r.get("accuracy") is not None:
                k = (train, r.get("value"))
                out[k] = min(out.get(k, 1.0), r["accuracy"])
    return out


def _arch(rec) -> str:
    """The network of a record: a training's ``config.arch``, an evaluation's ``config.train.arch``."""
    cfg = rec.get("config", {})
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else cfg
    return train.get("arch", "small_cnn")


def _cw_seconds(cell, rates):
    """Projected seconds of a whitebox cell's CW-L2 rows (with the convergence check), on the
    small CNN, and whether they rest on an assumption."""
    if not any(r.attack == "cw" for r in cell.rows):
        return 0.0, False
    settings = dict(cell.settings)
    cw_n = settings.get("cw_n_test") or settings.get("n_test") or 1000
    cw_rate = rates.get(("eval", "cw_1000"))
    assumed = cw_rate is None
    cw_rate = ASSUMED["cw_1000_per_point"] if cw_rate is None else cw_rate
    if settings.get("cw_steps") != 1000:
        cw_rate *= settings.get("cw_steps", 1000) / 1000
    return cw_rate * cw_n, assumed


def _net_ratio(cell, rates):
    """How much slower a cell's network makes it than the small CNN: measured from the
    records of that network (``rates[(arch, kind)]``, :func:`_rates`) when there are some,
    else the stated assumption. Returns ``(ratio, assumed)``."""
    arch = (cell.config() if cell.kind == "train" else cell.train.config()).arch
    if not arch.startswith("resnet20"):
        return 1.0, False
    key = ("resnet20", _rate_kind(cell))
    if key in rates:
        return rates[key], False
    method = (cell.config() if cell.kind == "train" else cell.train.config()).method
    return (ASSUMED["r20_trs"] if cell.kind == "train" and method == "trs"
            else ASSUMED["r20_plain"]), True


def _rate_kind(cell) -> str:
    if cell.kind == "train":
        cfg = cell.config()
        return "trs_published" if cfg.variant == "published" else cfg.method
    if cell.suite == "whitebox" and all(r.steps == 110 for r in cell.rows):
        return "pgd110"
    return cell.suite


def _rates(records, cells) -> tuple:
    """:func:`_records_rates` plus the measured network ratios: for each kind of cell with
    ResNet-20 records, the median of their wall time over the small-CNN projection of the
    same cell (``cells``: record key -> grid cell)."""
    rates, counts = _records_rates(records)
    ratios = {}
    for key, rec in records.items():
        wall, cell = rec["provenance"].get("wall_time_s"), cells.get(key)
        if cell is None or not wall or not _arch(rec).startswith("resnet20"):
            continue
        small, _ = _cell_seconds(cell, rates, net=False)
        ratios.setdefault(("resnet20", _rate_kind(cell)), []).append(
            wall / (small - CELL_OVERHEAD_S))
    rates.update({k: median(v) for k, v in ratios.items()})
    counts.update({k: len(v) for k, v in ratios.items()})
    return rates, counts


def _grid_cells() -> dict:
    """Every cell of every rung's grid, keyed like the records (``<kind>/<name>``)."""
    cells = {}
    for name, r in RUNGS.items():
        for c in G.cells_for(r.targets or ALL_TARGETS, name):
            cells.setdefault(f"{c.kind}/{c.name}", c)
    return cells


def _cell_seconds(cell, rates, net=True):
    """Projected seconds of one cell and whether it rests on an assumption (``net=False``:
    as if it were on the small CNN)."""
    ratio, net_assumed = _net_ratio(cell, rates) if net else (1.0, False)
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
        base *= ratio
        if cfg.dataset in ASSUMED["train_images_vs_mnist5k"]:
            base, assumed = base * ASSUMED["train_images_vs_mnist5k"][cfg.dataset], True
        return base * cfg.epochs * cfg.num_models + CELL_OVERHEAD_S, assumed or net_assumed
    n = dict(cell.settings).get("n_test") or 1000
    suite = cell.suite
    if suite == "whitebox" and all(r.steps == 110 for r in cell.rows):
        suite = "pgd110"
    if suite == "worst_case" and ("eval", "worst_case_row") in rates:
        a, b, floor = rates[("eval", "worst_case_row")]
        ps = [rates.get(("robust", cell.train.name, r.value)) for r in cell.rows]
        if None in ps:  # no whitebox record of this training yet: assume a median column's
            assumed, typical = True, ASSUMED["worst_case_robust_accuracy"]
            ps = [typical if p is None else p for p in ps]
        per_point = sum(max(a + b * p, floor) for p in ps)
    elif suite == "worst_case":
        per_point, assumed = 1.5 * rates[("eval", "apgd_row")] * len(cell.rows), True
    elif suite == "whitebox" and ("eval", "whitebox_linf") in rates:
        cw_s, assumed = _cw_seconds(cell, rates)
        per_point = rates[("eval", "whitebox_linf")] + cw_s / n
    elif ("eval", suite) in rates:
        per_point = rates[("eval", suite)]
    elif suite == "smoothness":
        per_point, assumed = ASSUMED["smoothness_per_point"], True
    elif suite == "blackbox":
        budgets = len(cell.rows)
        per_point = ASSUMED["blackbox_eval_per_point_pair_budget"] * ASSUMED["blackbox_pairs"] * budgets
        if cell.train.method == "trs" and dict(cell.train.overrides).get("seed", 0) == 0 \
                and dict(cell.train.overrides).get("num_models") == 3 \
                and not {"c", "variant"} & set(dict(cell.train.overrides)):
            per_point += ASSUMED["blackbox_craft_per_point_budget"] * budgets
        assumed, ratio = True, 1.0  # crafting's cost is the surrogates', not the target's network
    else:
        per_point, assumed = rates[("eval", "whitebox")] * ASSUMED["eval_vs_whitebox"][suite], True
    return per_point * ratio * n + CELL_OVERHEAD_S, assumed or net_assumed


def estimate(tables=TABLES, rung="cpu", log=print) -> dict:
    """Project the wall time of the grid's cells still to run, in the driver's order."""
    rates, counts = _rates(load_records(warn=lambda m: None), _grid_cells())
    log("wall time per kind of cell in the committed records (median):")
    for key, r in sorted(rates.items(), key=str):
        if key[0] == "robust":
            continue
        kind, name = key
        n = f"  ({counts[key]} records)" if key in counts else ""
        if key == ("eval", "worst_case_row"):
            log(f"  eval  worst_case_row   {r[0]:+.3f} {r[1]:+.3f} x (PGD/BIM/MIM robust accuracy), "
                f"at least {r[2]:.3f} s per test point and row")
        elif kind == "resnet20":
            log(f"  {kind} {name:14s} {r:7.2f}x the small CNN's projection{n}")
        else:
            unit = "s per epoch-member" if kind == "train" else "s per test point"
            log(f"  {kind:5s} {name:14s} {r:7.3f} {unit}{n}")
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


def _kind(cell, rec) -> str:
    """The kind of a cell in the cost model's check: training per method and network,
    evaluation per suite and network."""
    arch = _arch(rec)
    if cell.kind == "train":
        cfg = cell.config()
        return f"train {cfg.method}{' published' if cfg.variant == 'published' else ''} ({arch})"
    suite = cell.suite
    if suite == "whitebox" and all(r.steps == 110 for r in cell.rows):
        suite = "pgd110"
    return f"eval {suite} ({arch})"


def check(records=None, factor=CHECK_FACTOR, factor_assumed=CHECK_FACTOR_ASSUMED, log=print) -> dict:
    """Predicted vs measured wall time per kind of cell, for every committed record that is a
    cell of some rung's grid. Each cell is predicted from the rates of the *other* records
    (leave one out), so a kind's figure tests the model rather than repeating its input: the
    ResNet-20 and data-set ratios (``ASSUMED``) are checked against the records that never
    feed a rate. The CW-L2 rows of whitebox cells are also a kind of their own (their rows'
    ``wall_s``). Returns ``{kind: {"n", "predicted_s", "measured_s", "ratio", "assumed"}}``
    with ``ratio`` = measured / predicted and the per-cell range; ``within`` says whether
    every ratio is within ``factor`` either way (``factor_assumed`` for a prediction that rests
    on an assumption)."""
    records = load_records(warn=lambda m: None) if records is None else records
    cells = _grid_cells()
    kinds, skipped = {}, 0

    def add(kind, pred, meas, assumed, threads):
        k = kinds.setdefault(kind, {"n": 0, "predicted_s": 0.0, "measured_s": 0.0,
                                    "assumed": False, "threads": set(), "cell_ratios": []})
        k["cell_ratios"].append(meas / pred if pred > 0 else float("inf"))
        k["n"] += 1
        k["predicted_s"] += pred
        k["measured_s"] += meas
        k["assumed"] |= assumed
        k["threads"].add(threads)

    for key, rec in records.items():
        wall = rec["provenance"].get("wall_time_s")
        cell = cells.get(key)
        if cell is None or not wall:
            skipped += 1
            continue
        threads = rec["provenance"].get("hardware", {}).get("torch_threads")
        rates, _ = _rates({k: v for k, v in records.items() if k != key}, cells)
        pred, assumed = _cell_seconds(cell, rates)
        add(_kind(cell, rec), pred - CELL_OVERHEAD_S, wall, assumed, threads)
        rows = rec["metrics"].get("rows", [])
        cw_rows = [r for r in rows if r.get("attack") == "cw" and r.get("wall_s")]
        if cell.kind == "eval" and cell.suite == "whitebox" and cw_rows:
            cw_pred, cw_assumed = _cw_seconds(cell, rates)
            cw_pred *= _net_ratio(cell, rates)[0]
            check_s = (rec["metrics"].get("cw_convergence") or {}).get("wall_s", 0.0)
            add(f"eval whitebox CW-L2 rows ({_arch(rec)})", cw_pred,
                sum(r["wall_s"] for r in cw_rows) + check_s, cw_assumed, threads)
    log(f"cost model vs the committed records ({len(records) - skipped} cells of the rungs' "
        f"grids; {skipped} records of no current cell skipped); each cell predicted from the "
        "other records (leave one out), without the papermill overhead:")
    log(f"  {'kind of cell':40s} {'cells':>5s} {'predicted':>10s} {'measured':>10s} "
        f"{'measured/pred':>13s} {'per cell':>12s}")
    within = True
    for kind, k in sorted(kinds.items()):
        k["ratio"] = k["measured_s"] / k["predicted_s"] if k["predicted_s"] > 0 else float("inf")
        k["threads"] = sorted(t for t in k["threads"] if t is not None)
        f = factor_assumed if k["assumed"] else factor
        k["ok"] = 1 / f <= k["ratio"] <= f
        within &= k["ok"]
        lo, hi = min(k["cell_ratios"]), max(k["cell_ratios"])
        log(f"  {kind:40s} {k['n']:5d} {k['predicted_s']:9.0f}s {k['measured_s']:9.0f}s "
            f"{k['ratio']:12.2f}x{'*' if k['assumed'] else ' '} {lo:5.2f}-{hi:5.2f}x"
            f"{'' if k['ok'] else f'  OUTSIDE {f:g}x'}"
            + (f"  (threads {k['threads']})" if k["threads"] != [1] else ""))
    log(f"(* = the prediction rests on an assumption, see ASSUMED; within {factor:g}x, "
        f"{factor_assumed:g}x with *: {'every kind' if within else 'NOT every kind'})")
    return {"kinds": kinds, "within": within, "factor": factor, "factor_assumed": factor_assumed,
            "skipped": skipped}
