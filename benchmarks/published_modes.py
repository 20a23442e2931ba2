"""The measured effect of the fast published-TRS mode's departures from the authors' computation.

    .venv/bin/python benchmarks/published_modes.py          # writes benchmarks/published_modes.json

Trains published TRS (the authors' MNIST values, ``trs_lib.recipes``) twice per seed, once with
``faithful=True`` (the authors' computation) and once with ``faithful=False`` (fast: eval-mode
inner PGD, sign of each step's own gradient), everything else equal, and measures on the first
``--points`` test points: clean ensemble accuracy, mean pairwise |cos| of the members' input
gradients, and L-inf PGD robust accuracy at two radii. Small on purpose (a shared 2-core CPU):
the small CNN on a fixed subset of ``mnist5k`` for a few epochs. The small CNN has no BatchNorm,
so only the sign-rule departure is exercised by the trainings. ``--part step`` measures the
BatchNorm departure at one step on ResNet-20 (cheap): both inner PGDs from the same random
start on the same batch, members whose running statistics have followed clean batches, and the
authors' smoothness term (members in training mode) at each one's result.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import copy

from trs_lib import data, trs as T
from trs_lib.ensemble import build_ensemble
from trs_lib.methods import eval_mode
from trs_lib.recipes import make_config
from trs_lib.attacks.pgd import pgd
from trs_lib.evaluate import clean_accuracy, gradient_cosine
from trs_lib.worst_case import robust_accuracy
from trs_lib.train import train

OUT = Path(__file__).with_suffix(".json")


def measure(ensemble, x, y, radii, seed) -> dict:
    ensemble.eval()
    out = {"clean": clean_accuracy(ensemble, x, y),
           "mean_abs_cos": gradient_cosine(ensemble, x, y)["mean_abs_cos"]}
    for eps in radii:
        res = robust_accuracy(ensemble, x, y, pgd, seed=seed, progress=False, eps=eps, steps=10,
                              step_size=eps / 4)
        out[f"pgd_linf_{eps}"] = res["accuracy"]
    return out


def step_level(seeds=2, batch=128, warm_batches=20) -> list[dict]:
    """One published step's inner PGD, fast (eval mode, own-step sign) against the authors'
    (training mode, running-sum sign), on ResNet-20 members at initialisation whose BatchNorm
    running statistics first follow ``warm_batches`` clean batches (no_grad forwards)."""
    x_all, y_all = data.load("mnist5k", "train")
    cfg = make_config("mnist5k", "trs", arch="resnet20", variant="published")
    rows = []
    for seed in range(seeds):
        ens = build_ensemble("resnet20", "mnist5k", 3, seed).train()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _ in range(warm_batches):
                ens.member_logits(x_all[torch.randint(0, len(x_all), (batch,), generator=g)])
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        x, y = x_all[idx], y_all[idx]
        state = copy.deepcopy(ens.state_dict())
        half = batch // 2
        for eps in (cfg.init_eps, cfg.adv_eps):
            noise = T.pgd_start_noise(x[half:].shape, eps, g, like=x)
            with eval_mode(ens):
                fast = T.smoothness_inputs(ens.member_logits, x, y, eps, cfg.smooth_steps, noise=noise)
            faithful = T.smoothness_inputs(ens.member_logits, x, y, eps, cfg.smooth_steps,
                                           noise=noise, running_sum=True)
            smooth = {}
            for name, xs in (("fast", fast), ("faithful", faithful), ("start", torch.cat(
                    [x[:half], (x[half:] + noise).clamp(0, 1)]))):
                ens.load_state_dict(state)        # training mode: the authors' smooth_loss
                _, sg = T.input_gradients(ens.member_logits, xs, y, create_graph=False)
                smooth[name] = (T.magnitude(sg / batch).mean()).item()
            ens.load_state_dict(state)
            d = (fast[half:] - faithful[half:]).abs()
            rows.append(dict(seed=seed, eps=eps, smooth_loss_fast=smooth["fast"],
                             smooth_loss_faithful=smooth["faithful"],
                             smooth_loss_random_start=smooth["start"],
                             fraction_pixels_differing=(d > 1e-6).float().mean().item(),
                             mean_abs_difference=d.mean().item()))
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-subset", type=int, default=2000)
    p.add_argument("--points", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--part", choices=("train", "step", "all"), default="all")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if args.part in ("step", "all"):
        out["resnet20_step"] = {"setup": "ResNet-20 members at initialisation (mnist5k shape), "
                                         "BatchNorm statistics after 20 clean no-grad batches, "
                                         "batch 128, the authors' MNIST radii, same random start",
                                "rows": step_level()}
        OUT.write_text(json.dumps(out, indent=1) + "\n")
        if args.part == "step":
            return out
    radii = (0.1, 0.2)
    x, y = data.load("mnist5k", "test")
    x, y = x[: args.points], y[: args.points]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for faithful in (False, True):
                t = time.perf_counter()
                r = train("mnist5k", "trs", out_dir=Path(tmp) / f"{seed}-{faithful}", progress=False,
                          log=lambda s: None, variant="published", faithful=faithful, seed=seed,
                          epochs=args.epochs, train_subset=args.train_subset, device="cpu")
                wall = time.perf_counter() - t
                row = dict(seed=seed, faithful=faithful, train_wall_s=round(wall, 1),
                           **measure(r.ensemble, x, y, radii, seed))
                print(row, flush=True)
                runs.append(row)
    keys = [k for k in runs[0] if k not in ("seed", "faithful", "train_wall_s")]
    summary = {}
    for k in keys:
        diffs = [next(r[k] for r in runs if r["seed"] == s and not r["faithful"])
                 - next(r[k] for r in runs if r["seed"] == s and r["faithful"]) for s in range(args.seeds)]
        summary[k] = {"fast_mean": statistics.mean(r[k] for r in runs if not r["faithful"]),
                      "faithful_mean": statistics.mean(r[k] for r in runs if r["faithful"]),
                      "fast_minus_faithful_per_seed": diffs}
    out.update({"setup": dict(dataset="mnist5k", arch="small_cnn", members=3, variant="published",
                         recipe="authors' MNIST values (coeff 2, lamda 2, scale 5, init_eps 0.1, "
                                "adv_eps 0.2, plus_adv)", epochs=args.epochs,
                         train_subset=args.train_subset, test_points=args.points,
                         attack="L-inf PGD, 10 steps of eps/4, random start", threads=args.threads,
                         torch=torch.__version__),
           "runs": runs, "summary": summary})
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return out


if __name__ == "__main__":
    main()
