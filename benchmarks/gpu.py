"""One-command GPU benchmark (issue 26 item 4): what the paper's CIFAR-10 protocol costs on this machine.

    python benchmarks/gpu.py                                   # on one CUDA GPU, at most ~8 minutes
    python benchmarks/gpu.py --steps 1 --points 16 --batch 8 --no-compile   # tiny CPU check

Measures, on random CIFAR-shaped tensors (3x32x32, 10 classes; nothing is downloaded):

(a) one epoch of training of ResNet-20 x 3 members, as ``trs_lib.train`` runs a step (batched
    augmentation, the method's ``loss`` under the trainer's autocast, one backward, the library's
    Adam), for ``vanilla`` (the floor), TRS with the ``seed`` loss and TRS as published
    (``variant="published", faithful=True``: the authors' computation), each with AMP off and on
    (bfloat16 autocast) and ``torch.compile`` of the members off and on. ``--steps`` steps are
    timed after one warm-up step (which includes compilation) and the epoch is extrapolated to
    ``50,000 // batch`` steps, plus the per-epoch evaluation forward of 10,000 test images.
    A setting that fails (torch.compile refuses TRS's double backward) is recorded with its reason.
(b) the per-point worst case (``trs_lib.worst_case.worst_case``, suite ``linf``) at ``--eps``
    (default 8/255) on ``--points`` points of the untrained vanilla ensemble, labelled with its own
    clean predictions so that every point is attacked; an untrained ensemble falls to APGD-CE at
    once, so the same suite is also run on ``--robust-points`` points at eps 1e-3, where most points
    stay robust and every attack spends its whole budget: the cost a robust model would have.

Writes one JSON (``--out``): device, torch version, sizes, every measurement in seconds, and the
projected wall time of 180 epochs per column (``vanilla``, ``trs_seed``, ``trs_published``), for
the trainer's default setting (AMP off, compile off) and for the fastest setting that ran.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from trs_lib import data, optimiser
from trs_lib.ensemble import build_ensemble
from trs_lib.methods import StepContext, get
from trs_lib.recipes import make_config
from trs_lib.train import use_channels_last
from trs_lib.worst_case import worst_case

TRAIN_IMAGES, TEST_IMAGES, EPOCHS = 50_000, 10_000, 180      # the paper's CIFAR-10 protocol
MEMBERS, ARCH, DATASET = 3, "resnet20", "cifar10"
FULL_BUDGET_EPS = 1e-3      # small enough that an untrained ensemble's points mostly stay robust
COLUMNS = {"vanilla": ("vanilla", {}),
           "trs_seed": ("trs", {"variant": "seed"}),
           "trs_published": ("trs", {"variant": "published", "faithful": True})}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine() or 'unknown CPU'}, {torch.get_num_threads()} threads"


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        return value
    return parse


def build(column, batch, device, amp, compile_):
    """An ensemble, optimiser, config and step function of ``column`` as the trainer builds them."""
    method, overrides = COLUMNS[column]
    cfg = make_config(DATASET, method, arch=ARCH, num_models=MEMBERS, batch_size=batch,
                      amp="bf16" if amp else "off", **overrides)
    torch.manual_seed(0)
    ensemble = build_ensemble(ARCH, DATASET, MEMBERS, 0, combine=get(method).combine, device=device)
    channels_last = use_channels_last(cfg.channels_last, device)
    if channels_last:
        ensemble.to(memory_format=torch.channels_last)
    if compile_:        # the trainer skips compile for double-backward losses; here it is tried
        for member in ensemble.members:
            member.compile()
    opt = optimiser.build(ensemble.parameters(), cfg, device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, device=device, generator=g)
    y = torch.randint(0, 10, (batch,), device=device, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss_fn = get(method).loss
    augment = data.info(DATASET).augment

    def step():
        xb = data.augment(x, g) if augment else x
        ctx = StepContext(epoch=0, epochs=cfg.epochs, generator=g)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            loss, _ = loss_fn(ensemble, xb, y, cfg, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    def evaluate():
        ensemble.eval()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            ensemble(x)
        ensemble.train()
    ensemble.train()
    return step, evaluate


def measure_training(column, amp, compile_, steps, batch, device, log):
    out = {"column": column, "amp": "bf16" if amp else "off", "compile": compile_}
    try:
        step, evaluate = build(column, batch, device, amp, compile_)
        _sync(device)
        t = time.perf_counter()
        loss = step()                                  # warm-up (and compilation)
        _sync(device)
        out["warmup_s"] = time.perf_counter() - t
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"non-finite loss {float(loss)} in the warm-up step")
        times = []
        for _ in range(steps):
            _sync(device)
            t = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t)
        evaluate()
        _sync(device)
        t = time.perf_counter()
        evaluate()
        _sync(device)
        eval_s = time.perf_counter() - t
    except Exception as err:       # e.g. torch.compile and TRS's double backward; never crash
        out["ok"] = False
        out["reason"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:400] if str(err).strip() else ''}"
        log(f"{column:14s} amp={out['amp']:4s} compile={compile_!s:5s} FAILED: {out['reason']}")
        return out
    steps_per_epoch = TRAIN_IMAGES // batch
    out.update(ok=True, step_s=statistics.median(times), step_times_s=times,
               steps_per_epoch=steps_per_epoch, eval_batch_s=eval_s,
               eval_epoch_s=eval_s * math.ceil(TEST_IMAGES / batch))
    out["epoch_s"] = out["step_s"] * steps_per_epoch + out["eval_epoch_s"]
    out["projected_180_epochs_s"] = out["epoch_s"] * EPOCHS
    log(f"{column:14s} amp={out['amp']:4s} compile={compile_!s:5s} step {out['step_s']:.4f} s  "
        f"epoch {out['epoch_s']:.1f} s  180 epochs {out['projected_180_epochs_s'] / 3600:.2f} h")
    return out


def measure_worst_case(points, eps, device, log, label="worst case"):
    torch.manual_seed(0)
    ensemble = build_ensemble(ARCH, DATASET, MEMBERS, 0, device=device).eval()
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.rand(points, 3, 32, 32, device=device, generator=g)
    with torch.no_grad():
        y = ensemble(x).argmax(1)          # every point correct clean: every point is attacked
    _sync(device)
    t = time.perf_counter()
    res = worst_case(ensemble, x, y, eps=eps, suite="linf")
    _sync(device)
    wall = time.perf_counter() - t
    out = {"points": points, "eps": eps, "suite": "linf", "wall_s": wall,
           "per_attack_s": res.get("wall_s_by_attack", {}),
           "clean_accuracy": res["clean_accuracy"], "robust_accuracy": res["accuracy"],
           "broken_by": res["broken_by"],
           "note": "untrained ensemble labelled with its own predictions: timing of the suite, "
                   "not a robustness figure (a trained ensemble keeps more points robust, so costs more)"}
    log(f"{label:14s} {points} points eps {eps:.4f}: {wall:.1f} s, robust {res['accuracy']:.3f}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=_positive_int("--steps"), default=10,
                   help="timed training steps per setting, after one warm-up step")
    p.add_argument("--points", type=_positive_int("--points"), default=1000, help="worst-case points")
    p.add_argument("--batch", type=_positive_int("--batch"), default=128, help="training batch size")
    p.add_argument("--robust-points", type=int, default=1000,
                   help="points for the full-budget worst case at a tiny eps (0: skip)")
    p.add_argument("--eps", type=float, default=8 / 255, help="worst-case L-inf budget (default 8/255)")
    p.add_argument("--out", default="benchmarks/gpu.json", help="JSON file to write")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    args = p.parse_args(argv)
    if args.batch < 2:
        p.error(f"--batch must be at least 2 (BatchNorm needs more than one example), got {args.batch}")
    if args.robust_points < 0:
        p.error(f"--robust-points must be 0 or more, got {args.robust_points}")
    if not (math.isfinite(args.eps) and 0 < args.eps <= 1):
        p.error(f"--eps must be in (0, 1], got {args.eps}")
    log = lambda msg: print(msg, flush=True)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_all = time.perf_counter()
    name = device_name(device)
    log(f"device {device} ({name}); torch {torch.__version__}; batch {args.batch}, steps {args.steps}, "
        f"points {args.points}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    compiles = (False,) if args.no_compile else (False, True)
    training = [measure_training(col, amp, comp, args.steps, args.batch, device, log)
                for col in COLUMNS for amp in (False, True) for comp in compiles]
    wc = measure_worst_case(args.points, args.eps, device, log)
    if args.robust_points:      # every attack's full budget on every point: the cost's upper bound
        wc_full = measure_worst_case(args.robust_points, FULL_BUDGET_EPS, device, log, "full budget")
        wc_full["note"] = (f"eps {FULL_BUDGET_EPS:g}, where the untrained ensemble stays robust: every "
                           f"attack runs its whole budget on the points it keeps (the cost of a robust model)")
    else:
        wc_full = {"skipped": "--robust-points 0"}

    projection = {}
    for col in COLUMNS:
        runs = [r for r in training if r["column"] == col and r["ok"]]
        default = next((r for r in runs if r["amp"] == "off" and not r["compile"]), None)
        best = min(runs, key=lambda r: r["epoch_s"]) if runs else None
        projection[col] = {
            "default_s": default["projected_180_epochs_s"] if default else None,
            "best_s": best["projected_180_epochs_s"] if best else None,
            "best_setting": {"amp": best["amp"], "compile": best["compile"]} if best else None}
    result = {
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "python": platform.python_version(),
        "measured": ("a CUDA GPU" if device.type == "cuda" else "measured a CPU, not a GPU"),
        "sizes": {"arch": ARCH, "members": MEMBERS, "batch": args.batch, "steps": args.steps,
                  "train_images": TRAIN_IMAGES, "test_images": TEST_IMAGES, "epochs": EPOCHS,
                  "steps_per_epoch": TRAIN_IMAGES // args.batch, "points": args.points, "eps": args.eps,
                  "input": [3, 32, 32], "data": "random CIFAR-shaped tensors"},
        "training": training, "worst_case": wc, "worst_case_full_budget": wc_full,
        "projection_180_epochs_s": projection,
        "total_wall_s": time.perf_counter() - t_all,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for col, pr in projection.items():
        fmt = lambda s: "failed" if s is None else f"{s / 3600:.2f} h"
        log(f"180 epochs {col:14s} default {fmt(pr['default_s'])}  best {fmt(pr['best_s'])} {pr['best_setting']}")
    log(f"wrote {out} ({result['measured']}) in {result['total_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
