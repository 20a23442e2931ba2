"""Cost of the transfer evaluation per column: crafting once and reusing the cached examples vs
crafting them again for every column, side by side in one run.

    python benchmarks/transfer.py                        # CPU, small default (3 columns, 64 points)
    python benchmarks/transfer.py --columns 5 --n 256 --attacks mi_fgsm di_fgsm sgm ila
    python benchmarks/transfer.py --device cuda --n 1000

Targets: ``--columns`` freshly initialised 3-member small-CNN ensembles (the timed work does not
depend on the weights). Surrogates: the two of :mod:`trs_lib.surrogates` (a 3-member small CNN
and a ResNet-20), freshly initialised with their seeds. Both modes run
:func:`trs_lib.transfer.transfer_suite` on every column at ``--eps``: "reuse" with one cache
folder (the first column crafts, the others only run forward passes), "per column" with a fresh
folder per column (every column crafts). The report gives each column's seconds in both modes,
the totals and their ratio; ``benchmarks/transfer.json`` is written only when the whole run
took under 3 minutes (the small default is meant to).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from trs_lib import data
from trs_lib.ensemble import build_ensemble
from trs_lib.surrogates import SURROGATES
from trs_lib.transfer import transfer_suite

OUT = Path(__file__).with_name("transfer.json")
LIMIT_S = 180.0


def _run(targets, x, y, surrogates, attacks, eps, reuse: bool, batch: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as shared:
        for k, tgt in enumerate(targets):
            with tempfile.TemporaryDirectory() as own:
                t0 = time.perf_counter()
                transfer_suite(tgt, x, y, surrogates, attacks=attacks, eps_list=eps,
                               cache_dir=shared if reuse else own, batch_size=batch)
                times.append(round(time.perf_counter() - t0, 3))
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--columns", type=int, default=3)
    ap.add_argument("--n", type=int, default=64, help="test points")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.15])
    ap.add_argument("--attacks", nargs="+", default=["mi_fgsm", "di_fgsm", "sgm", "ila"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    t_start = time.perf_counter()
    x, y = data.load("mnist5k", "test")
    idx = torch.arange(args.n) * (len(x) // args.n)
    x, y = x[idx].to(dev), y[idx].to(dev)
    surrogates = {name: build_ensemble(s.arch, "mnist5k", s.num_models, seed=s.seed, device=dev).eval()
                  for name, s in SURROGATES.items()}
    targets = [build_ensemble("small_cnn", "mnist5k", 3, seed=50 + k, device=dev).eval()
               for k in range(args.columns)]
    reuse = _run(targets, x, y, surrogates, args.attacks, args.eps, True, args.batch)
    per_column = _run(targets, x, y, surrogates, args.attacks, args.eps, False, args.batch)
    total = time.perf_counter() - t_start
    report = {
        "device": str(dev), "torch_threads": torch.get_num_threads(), "columns": args.columns,
        "n": args.n, "eps": args.eps, "attacks": args.attacks, "surrogates": sorted(surrogates),
        "reuse_s_per_column": reuse, "per_column_s_per_column": per_column,
        "reuse_total_s": round(sum(reuse), 3), "per_column_total_s": round(sum(per_column), 3),
        "speedup": round(sum(per_column) / max(sum(reuse), 1e-9), 2),
        "added_column_s": {"reuse": reuse[-1], "per_column": per_column[-1]},
        "wall_s": round(total, 1),
    }
    print(json.dumps(report, indent=2))
    if total < LIMIT_S:
        OUT.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {OUT}")
    else:
        print(f"not written: the run took {total:.0f} s (over {LIMIT_S:.0f} s)")


if __name__ == "__main__":
    main()
