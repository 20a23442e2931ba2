"""Images per second of one TRS training step: this library's against the authors' computation.

    .venv/bin/python benchmarks/train_step.py                       # all four cases, quick
    .venv/bin/python benchmarks/train_step.py --arch resnet20 --variant seed --steps 5
    .venv/bin/python benchmarks/train_step.py --device cuda --steps 20

Each case (architecture x loss variant) times two steps on the same random batch, interleaved
round by round so that a shared machine's load hits both alike:

* ``ours``: ``trs_lib.methods.get("trs").loss`` (the trainer's step) + one backward + Adam;
* ``reference``: the computation the authors' released training code performs per step, written
  here from its description in issue 8 (:func:`reference_step`).

It prints both images per second (batch / median step time), their ratio, the convolution and
matmul FLOPs of our step (``torch.utils.flop_counter``'s formulas, 2 per multiply-add), the
FLOP/s achieved and its fraction of the machine's matmul FLOP/s measured between the steps, and
the FLOP/s of our step's convolutions and matmuls replayed alone (the ceiling those kernels set).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

from trs_lib import data, models, trs as T
from trs_lib.ensemble import build_ensemble
from trs_lib.methods import StepContext, get
from trs_lib.methods.trs import smooth_radius
from trs_lib.recipes import make_config
from trs_lib.train import resolve_device

CASES = {"small_cnn": "mnist5k", "resnet20": "cifar10"}   # 1x28x28 and 3x32x32 inputs
VARIANTS = ("seed", "published")


# ------------------------------------------------------------------ the reference computation
def _member_grad(model, x, y):
    """Cross-entropy (batch mean) and per-example input gradient of one model, differentiable."""
    ce = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(ce, x, create_graph=True)
    return ce / len(y), g.flatten(1)


def reference_step(nets, optimizer, x, y, cfg, eps: float) -> torch.Tensor:
    """One step as the authors' released code computes it (issue 8's description).

    A Python loop over members (plain ``nn.BatchNorm2d``); input gradients at the clean batch for
    the similarity term; then, for both variants, a PGD of ``cfg.smooth_steps`` steps (step
    eps/3, random start) on the second half of the batch maximising the members' summed squared
    input-gradient norm by double backpropagation, members in training mode (BatchNorm statistics
    absorb the adversarial half), ``backward()`` accumulating parameter gradients that are thrown
    away and an input gradient never zeroed (each step takes the sign of the running sum); then
    the input gradients again (published: at clean half + perturbed half; seed: at the clean
    batch) for the smoothness term; one backward and an Adam step.
    """
    xc = x.detach().clone().requires_grad_(True)
    ce_sum, grads = 0, []
    for net in nets:
        ce, g = _member_grad(net, xc, y)
        ce_sum, grads = ce_sum + ce, grads + [g]
    half = len(x) // 2
    start = x[half:].detach()
    adv = (start + (2 * torch.rand_like(start) - 1) * eps).clamp(0, 1).requires_grad_(True)
    for _ in range(cfg.smooth_steps):
        objective = 0
        for net in nets:
            _, g = _member_grad(net, adv, y[half:])
            objective = objective + (g * g).sum()
        objective.backward()                      # adv.grad and parameter .grad accumulate
        with torch.no_grad():
            adv += eps / 3 * adv.grad.sign()
            adv.copy_(torch.min(torch.max(adv, start - eps), start + eps).clamp(0, 1))
    if cfg.variant == "published":
        xs = torch.cat([x[:half].detach(), adv.detach()]).requires_grad_(True)
    else:
        xs = x.detach().clone().requires_grad_(True)
    smooth = torch.stack([_member_grad(net, xs, y)[1] for net in nets])
    grads = torch.stack(grads)
    if cfg.variant == "published":
        reg = sum(T.published_regularizer(grads, smooth, cfg.lambda_a, cfg.lambda_b).values())
    else:
        j, k = T.pair_indices(len(nets))
        norms = T.safe_norm(smooth)
        reg = cfg.c * (T.pairwise_cosine(grads).mean(1).sum() + cfg.lam * (norms[j] + norms[k]).mean(1).sum())
    loss = ce_sum + reg
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


def matmul_flops(device, dtype=torch.float32, n: int = 1024, reps: int = 5) -> float:
    """The machine's matmul FLOP/s now: best of ``reps`` n x n products (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return 2 * n ** 3 / min(_timed(lambda: a @ b, device) for _ in range(reps))


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


def heavy_ceiling(fn, device) -> tuple[int, float]:
    """(FLOPs, seconds) of the convolutions and matmuls of ``fn()`` replayed alone on random
    tensors of the same shapes and strides: what those kernels allow, with no other work."""
    with _HeavyOps() as rec:
        fn()
    make = lambda s: (torch.empty_strided(s[1], s[2], dtype=s[3], device=s[4]).normal_()
                      if isinstance(s, tuple) and s and s[0] == "T" else s)
    calls = [(f, tree_map(make, a, is_leaf=lambda s: isinstance(s, tuple) and s and s[0] == "T"),
              tree_map(make, k, is_leaf=lambda s: isinstance(s, tuple) and s and s[0] == "T"))
             for f, a, k in rec.calls]
    replay = lambda: [f(*a, **k) for f, a, k in calls]
    flops = count_flops(replay)
    return flops, min(_timed(replay, device) for _ in range(2))


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {torch.get_num_threads()} threads"


def build_case(arch, variant, members, batch, device, seed=0, channels_last=False):
    """Our ensemble and the reference's members (same initial weights), a random batch, configs."""
    dataset = CASES[arch]
    cfg = make_config(dataset, "trs", arch=arch, variant=variant, num_models=members)
    ensemble = build_ensemble(arch, dataset, members, seed, device=device)
    nets = []
    for k in range(members):          # build_ensemble's seeding: plain nn.BatchNorm2d members
        torch.manual_seed(seed * 1000 + k)
        nets.append(models.build(arch, dataset).to(device))
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
    return cfg, ensemble, opt, nets, ref_opt, x_ours, x, y, ctx


def run_case(arch, variant, steps, members, batch, device, channels_last, ceiling=True, log=print):
    cfg, ens, opt, nets, ref_opt, x_ours, x, y, ctx = build_case(arch, variant, members, batch, device,
                                                                 channels_last=channels_last)
    eps = smooth_radius(cfg, ctx)
    ours = lambda: ours_step(ens, opt, x_ours, y, cfg, ctx)
    ref = lambda: reference_step(nets, ref_opt, x, y, cfg, eps)
    ours(), ref()                                              # warm-up
    t_ours, t_ref, mm = [], [], []
    for _ in range(steps):                                     # interleaved rounds
        mm.append(matmul_flops(device))
        t_ours.append(_timed(ours, device))
        t_ref.append(_timed(ref, device))
    mm.append(matmul_flops(device))
    flops, ref_flops = count_flops(ours), count_flops(ref)
    med_o, med_r, med_mm = statistics.median(t_ours), statistics.median(t_ref), statistics.median(mm)
    out = dict(arch=arch, variant=variant, ours_ips=batch / med_o, ref_ips=batch / med_r,
               ratio=med_r / med_o, ours_gflop=flops / 1e9, ref_gflop=ref_flops / 1e9,
               ours_gflops=flops / med_o / 1e9, matmul_gflops=med_mm / 1e9,
               fraction=flops / med_o / med_mm, steps=steps)
    log(f"{arch:9s} {variant:9s} ours {out['ours_ips']:8.1f} img/s   reference {out['ref_ips']:8.1f} img/s"
        f"   ratio {out['ratio']:5.2f}x")
    log(f"{'':19s} ours: {out['ours_gflop']:.1f} GFLOP/step at {out['ours_gflops']:.1f} GFLOP/s = "
        f"{100 * out['fraction']:.0f}% of matmul ({out['matmul_gflops']:.1f} GFLOP/s); "
        f"reference: {out['ref_gflop']:.1f} GFLOP/step")
    if ceiling:
        hf, ht = heavy_ceiling(ours, device)
        m = matmul_flops(device)
        out.update(heavy_gflops=hf / ht / 1e9, heavy_fraction=hf / ht / m,
                   heavy_share=ht / med_o)
        log(f"{'':19s} its convolutions/matmuls alone: {hf / ht / 1e9:.1f} GFLOP/s = "
            f"{100 * hf / ht / m:.0f}% of matmul; they take {ht:.2f} s of the {med_o:.2f} s step")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=[*CASES, "all"], default="all")
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    p.add_argument("--steps", type=int, default=3, help="timed rounds per case (after a warm-up)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="memory format of our step (auto: on; see benchmarks/README.md)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0: torch's default); on a busy machine 1 avoids OpenMP stalls")
    p.add_argument("--no-ceiling", action="store_true", help="skip the kernels-alone replay")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    channels_last = args.channels_last != "off"
    archs = list(CASES) if args.arch == "all" else [args.arch]
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    print(f"machine: {machine()}; torch {torch.__version__}; device {device}; batch {args.batch}, "
          f"{args.members} members, {args.steps} interleaved rounds, channels_last={channels_last}")
    results = [run_case(a, v, args.steps, args.members, args.batch, device, channels_last,
                        ceiling=not args.no_ceiling) for a in archs for v in variants]
    return results


if __name__ == "__main__":
    main()
