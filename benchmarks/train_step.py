"""Images per second of one TRS training step: this library's against the authors' computation.

    .venv/bin/python benchmarks/train_step.py --threads 1              # all six cases, quick
    .venv/bin/python benchmarks/train_step.py --arch resnet20 --variant faithful --steps 5
    .venv/bin/python benchmarks/train_step.py --device cuda --steps 20

Cases: architecture x loss (``seed``; ``published`` = the fast published mode; ``faithful`` = the
published variant with ``faithful=True``, the authors' exact computation). All the cases' steps
are built first and timed interleaved, round by round, so that a shared machine's load hits
every one alike:

* ``ours``: ``trs_lib.methods.get("trs").loss`` (the trainer's step) + one backward + Adam;
* ``reference``: the authors' step (:func:`reference_step`): for ``published`` and ``faithful``
  their ``TRS_Trainer`` iteration as released (the same computation as the transcription in
  ``tests/test_trs_official.py``, which ``faithful`` equals to 1e-10 in float64); for ``seed``
  the same structure with the paper's seed formula as the regulariser.

It prints both images per second (batch / median step time) and their ratio; ``faithful`` is
the same math as its reference, ``published`` is not (eval-mode PGD, own-step sign). For each
step it then replays that step's own convolutions and matmuls alone, on random tensors of the
same shapes and strides (``torch.utils.flop_counter``'s formulas count their FLOPs, 2 per
multiply-add), and reports the share of the step's time those kernels need: the rest is
everything else (elementwise work, BatchNorm, autograd, Python).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

import authors_code
from trs_lib import data, models, trs as T
from trs_lib.ensemble import build_ensemble
from trs_lib.methods import StepContext, get
from trs_lib.methods.trs import smooth_radius
from trs_lib.recipes import make_config
from trs_lib.train import resolve_device

CASES = {"small_cnn": "mnist5k", "resnet20": "cifar10"}   # 1x28x28 and 3x32x32 inputs
VARIANTS = ("seed", "published", "faithful")


# ------------------------------------------------------------------ the reference computation
def _magnitude(g):
    return (torch.sum(g ** 2, 1)).mean() * 2          # the authors' Magnitude


def _authors_pgd(nets, inputs, labels, eps, steps):
    """The authors' ``PGD``: members as they are (training mode), objective sum_k Magnitude / k,
    ``backward()`` (parameter gradients accumulate, to be thrown away), sign of the never-zeroed
    input gradient."""
    adv = (inputs.detach() + (2 * torch.rand_like(inputs) - 1) * eps).clamp(0, 1)
    adv.requires_grad = True
    for _ in range(steps):
        grad_loss = 0
        for net in nets:
            loss = F.cross_entropy(net(adv), labels)
            grad = torch.autograd.grad(loss, adv, create_graph=True)[0].flatten(1)
            grad_loss = grad_loss + _magnitude(grad)
        (grad_loss / len(nets)).backward()
        with torch.no_grad():
            adv.data = adv.data + eps / 3 * adv.grad.data.sign()
            adv.data = torch.max(torch.min(adv.data, inputs + eps), inputs - eps).clamp(0, 1)
    return adv.detach()


def reference_step(nets, optimizer, x, y, cfg, eps: float) -> torch.Tensor:
    """One step of the authors' ``TRS_Trainer`` (train/Empirical/trainer.py), members in training
    mode: each member's batch-mean cross-entropy and its input gradient (create_graph); the mean
    pairwise |cos|; their PGD on the second half of the batch (always run); the input gradients
    at clean half + perturbed half (``plus_adv``; else at the clean batch) for ``smooth_loss``;
    ``loss = loss_std + scale * (coeff * cos_loss + lamda * smooth_loss)``; the ensemble forward
    they log accuracy with; ``zero_grad``, ``backward``, Adam. For ``variant="seed"`` the
    regulariser is the paper's seed formula instead, on the same structure.
    """
    for net in nets:
        net.train()
    xc = x.detach().clone().requires_grad_(True)
    loss_std, grads = 0, []
    for net in nets:
        loss = F.cross_entropy(net(xc), y)
        grads.append(torch.autograd.grad(loss, xc, create_graph=True)[0].flatten(1))
        loss_std = loss_std + loss
    half = len(x) // 2
    adv = _authors_pgd(nets, x[half:], y[half:], eps, cfg.smooth_steps)
    if cfg.variant != "seed" and cfg.plus_adv:
        xs = torch.cat([x[:half].detach(), adv]).requires_grad_(True)
    else:
        xs = xc
    smooth = [torch.autograd.grad(F.cross_entropy(net(xs), y), xs, create_graph=True)[0].flatten(1)
              for net in nets]
    if cfg.variant == "seed":      # per-example gradients (the batch-mean ones times B)
        g, sg = torch.stack(grads) * len(x), torch.stack(smooth) * len(x)
        j, k = T.pair_indices(len(nets))
        norms = T.safe_norm(sg)
        reg = cfg.c * (T.pairwise_cosine(g).mean(1).sum() + cfg.lam * (norms[j] + norms[k]).mean(1).sum())
    else:
        pairs = [(a, b) for a in range(len(nets)) for b in range(a + 1, len(nets))]
        cos_loss = sum(F.cosine_similarity(grads[a], grads[b]).abs().mean() for a, b in pairs) / len(pairs)
        smooth_loss = sum(_magnitude(h) for h in smooth) / len(nets)
        reg = cfg.scale * (cfg.coeff * cos_loss + cfg.lamda * smooth_loss)
    loss = loss_std + reg
    with torch.no_grad():
        torch.stack([F.softmax(net(x), -1) for net in nets]).mean(0)   # their logged accuracy
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ------------------------------------------------------------------ this library's step
def ours_step(ensemble, optimizer, x, y, cfg, ctx) -> torch.Tensor:
    """The trainer's TRS step: ``trs_loss`` + one backward + Adam (``trs_lib.train``)."""
    loss, _ = get("trs").loss(ensemble, x, y, cfg, ctx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ------------------------------------------------------------------ measuring
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


class _HeavyOps(TorchDispatchMode):
    """Count the FLOPs of every convolution / matmul run under the mode (``torch.utils.flop_counter``'s
    formulas: 2 per multiply-add) and record each call's op and argument shapes.
    (``FlopCounterMode`` itself hooks modules in a way ``autograd.grad`` on leaves refuses.)"""

    def __init__(self):
        super().__init__()
        self.flops, self.calls = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func.overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
            spec = lambda t: ("T", t.shape, t.stride(), t.dtype, t.device) if isinstance(t, torch.Tensor) else t
            self.calls.append((func, tree_map(spec, args), tree_map(spec, kwargs)))
        return out


def count_flops(fn) -> int:
    """Convolution and matmul FLOPs of ``fn()`` (forward, backward, double backward alike)."""
    with _HeavyOps() as counter:
        fn()
    return counter.flops


def record_kernels(fn):
    """Run ``fn()`` once, recording its convolutions and matmuls. Returns (FLOPs, replay): a
    function that runs those same kernels alone, in order, on random tensors of the same shapes
    and strides (one tensor per distinct shape, reused: the values do not change the kernels'
    speed), with no other work."""
    with _HeavyOps() as rec:
        fn()
    is_spec = lambda s: isinstance(s, tuple) and len(s) == 5 and s[0] == "T"
    pool = {}

    def make(spec):
        if not is_spec(spec):
            return spec
        if spec not in pool:
            pool[spec] = torch.empty_strided(spec[1], spec[2], dtype=spec[3], device=spec[4]).normal_()
        return pool[spec]

    calls = [(f, tree_map(make, a, is_leaf=is_spec), tree_map(make, k, is_leaf=is_spec))
             for f, a, k in rec.calls]

    def replay():
        for f, a, k in calls:
            f(*a, **k)
    return rec.flops, replay


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {torch.get_num_threads()} threads"


def _members(arch, dataset, members, seed, device):
    nets = []
    for k in range(members):          # build_ensemble's seeding: plain nn.BatchNorm2d members
        torch.manual_seed(seed * 1000 + k)
        nets.append(models.build(arch, dataset).to(device))
    return nets


def build_case(arch, variant, members, batch, device, seed=0, channels_last=False):
    """Our ensemble and the reference's members (same initial weights), a random batch, configs.
    ``variant``: ``seed``, ``published`` (fast) or ``faithful`` (published, ``faithful=True``)."""
    dataset = CASES[arch]
    published = variant != "seed"
    cfg = make_config(dataset, "trs", arch=arch, variant="published" if published else "seed",
                      faithful=variant == "faithful", num_models=members)
    ensemble = build_ensemble(arch, dataset, members, seed, device=device)
    nets = _members(arch, dataset, members, seed, device)
    info = data.info(dataset)
    shape = (info.channels, info.size, info.size)
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.rand(batch, *shape, device=device, generator=g)
    y = torch.randint(0, 10, (batch,), device=device, generator=g)
    x_ours = x
    if channels_last:
        ensemble.to(memory_format=torch.channels_last)
        x_ours = x.contiguous(memory_format=torch.channels_last)
    fused = device.type == "cuda" or None
    opt = torch.optim.Adam(ensemble.parameters(), lr=cfg.lr, fused=fused)
    ref_opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=cfg.lr, fused=fused)
    ctx = StepContext(epoch=0, epochs=cfg.epochs, generator=g)
    ensemble.train()
    return cfg, ensemble, opt, nets, ref_opt, x_ours, x, y, ctx


def run_cases(cases, steps, members, batch, device, channels_last, ceiling=True, log=print,
              authors=None):
    """Time every case's two steps, and (``ceiling``) each step's own convolutions and matmuls
    replayed alone, all interleaved round by round in this one process. ``authors``: the
    authors' ``trainer`` module (:mod:`authors_code`): their own ``TRS_Trainer`` step is timed
    too (members with the same initial weights), for every case (for ``seed`` it is the
    published step they released: the seed ratio against their code compares two losses)."""
    built, authors_variants = {}, {}
    for arch, variant in cases:
        cfg, ens, opt, nets, ref_opt, x_ours, x, y, ctx = build_case(arch, variant, members, batch,
                                                                     device, channels_last=channels_last)
        eps = smooth_radius(cfg, ctx)
        fns = {"ours": (lambda e=ens, o=opt, xo=x_ours, yy=y, c=cfg, cx=ctx: ours_step(e, o, xo, yy, c, cx)),
               "reference": (lambda n=nets, o=ref_opt, xx=x, yy=y, c=cfg, ep=eps: reference_step(n, o, xx, yy, c, ep))}
        if authors is not None:
            if arch not in authors_variants:   # one authors' step per architecture
                a_nets = _members(arch, CASES[arch], members, 0, device)
                a_opt = torch.optim.Adam([p for n in a_nets for p in n.parameters()], lr=cfg.lr)
                a_cfg = make_config(CASES[arch], "trs", arch=arch, variant="published",
                                    faithful=True, num_models=members)
                authors_variants[arch] = authors_code.make_step(authors, a_nets, a_opt, x, y, a_cfg)
                fns["authors"] = authors_variants[arch]
        flops = {}
        for side in ("ours", "reference"):                    # warm-up, FLOPs, kernels to replay
            flops[side], replay = record_kernels(fns[side])
            if ceiling:
                fns[f"{side} kernels"] = replay
        if "authors" in fns:
            fns["authors"]()                                   # warm-up
        built[(arch, variant)] = (fns, flops)
    times = {key: {side: [] for side in fns} for key, (fns, _) in built.items()}
    for _ in range(steps):                                      # interleaved rounds
        for key, (fns, _) in built.items():
            for side, fn in fns.items():
                times[key][side].append(_timed(fn, device))
    results = []
    for (arch, variant), (fns, flops) in built.items():
        med = {side: statistics.median(t) for side, t in times[(arch, variant)].items()}
        med_o, med_r = med["ours"], med["reference"]
        out = dict(arch=arch, variant=variant, ours_ips=batch / med_o, ref_ips=batch / med_r,
                   ratio=med_r / med_o, ours_s=med_o, ref_s=med_r, steps=steps,
                   ours_gflop=flops["ours"] / 1e9, ref_gflop=flops["reference"] / 1e9,
                   ratio_rounds=[r / o for r, o in zip(times[(arch, variant)]["reference"],
                                                      times[(arch, variant)]["ours"])])
        log(f"{arch:9s} {variant:9s} ours {out['ours_ips']:8.1f} img/s   reference {out['ref_ips']:8.1f} img/s"
            f"   ratio {out['ratio']:5.2f}x   ({out['ours_gflop']:.1f} vs {out['ref_gflop']:.1f} GFLOP/step)")
        a_times = next((t["authors"] for (a, _), t in times.items() if a == arch and "authors" in t), None)
        if a_times:
            med_a = statistics.median(a_times)
            out.update(authors_s=med_a, authors_ips=batch / med_a, ratio_authors=med_a / med_o)
            log(f"{'':19s} the authors' own TRS_Trainer step {batch / med_a:8.1f} img/s: "
                f"ours / theirs {out['ratio_authors']:5.2f}x")
        if ceiling:
            for side, key in (("ours", "ours"), ("ref", "reference")):
                kt = med[f"{key} kernels"]
                out[f"{side}_kernel_s"], out[f"{side}_kernel_fraction"] = kt, kt / med[key]
                out[f"{side}_kernel_gflops"] = flops[key] / kt / 1e9
            log(f"{'':19s} its convolutions/matmuls alone: ours {out['ours_kernel_s']:.2f} s of "
                f"{med_o:.2f} s = {100 * out['ours_kernel_fraction']:.0f}% "
                f"({out['ours_kernel_gflops']:.1f} GFLOP/s); reference {out['ref_kernel_s']:.2f} s "
                f"of {med_r:.2f} s = {100 * out['ref_kernel_fraction']:.0f}% "
                f"({out['ref_kernel_gflops']:.1f} GFLOP/s)")
        results.append(out)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=[*CASES, "all"], default="all")
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    p.add_argument("--steps", type=int, default=3, help="timed rounds (after a warm-up)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="memory format of our step (auto: on; see benchmarks/README.md)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0: torch's default); on a busy machine 1 avoids OpenMP stalls")
    p.add_argument("--no-ceiling", action="store_true", help="skip the kernels-alone replay")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--authors-code", default=None,
                   help="a checkout or git directory of the authors' repository (default: "
                        "$TRS_AUTHORS_CODE or a mirror beside the project); 'none' to skip")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    channels_last = args.channels_last != "off"
    archs = list(CASES) if args.arch == "all" else [args.arch]
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    print(f"machine: {machine()}; torch {torch.__version__}; device {device}; batch {args.batch}, "
          f"{args.members} members, {args.steps} interleaved rounds, channels_last={channels_last}")
    root = None if args.authors_code == "none" else authors_code.find(args.authors_code)
    authors = authors_code.load(root) if root is not None else None
    print(f"the authors' own step: {'from ' + str(root) if root else 'not found (only the transcription)'}")
    results = run_cases([(a, v) for a in archs for v in variants], args.steps, args.members,
                        args.batch, device, channels_last, ceiling=not args.no_ceiling,
                        authors=authors)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "torch": torch.__version__, "batch": args.batch,
                       "loadavg": os.getloadavg(), "authors_code": str(root) if root else None,
                       "members": args.members, "rounds": args.steps, "cases": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
