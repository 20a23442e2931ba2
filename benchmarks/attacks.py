"""Throughput of our PGD-k and CW-L2 against torchattacks at equal settings, side by side.

    python benchmarks/attacks.py                      # CPU, small CNN x 3 members, mnist5k
    python benchmarks/attacks.py --device cuda --arch resnet20 --n 1024 --batch 256

Both implementations attack the same freshly initialised ensemble (the timed work does not
depend on the weights). PGD: same eps, steps, step size eps/10 and random start. CW: same c,
kappa, steps and learning rate; ours runs every step (``abort_early=False``), torchattacks keeps
its batch-level early stop (checked every steps // 10 iterations), which can only favour it.
Each measurement is repeated ``--repeats`` times, interleaved (ours, theirs, ours, ...), after
a warm-up; the median images/s is reported with the ratio ours / theirs.

The ensemble returns log-probabilities; torchattacks' CW takes the best other class with a
masked max that is wrong on them (see ``tests/test_crosscheck.py``), which changes its result
but not its cost, so CW is timed on the members' mean-logits model for both.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device):
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


class _SumLogits(torch.nn.Module):
    def __init__(self, ens):
        super().__init__()
        self.ens = ens

    def forward(self, x):
        return self.ens.member_logits(x).mean(0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet20"])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--n", type=int, default=256, help="images per measurement")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pgd-steps", type=int, default=10)
    ap.add_argument("--cw-steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torchattacks

    from trs_lib import data
    from trs_lib.attacks import get
    from trs_lib.ensemble import build_ensemble
    from trs_lib.train import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    ens = build_ensemble(args.arch, args.dataset, args.members, device=device).eval()
    x, y = data.load(args.dataset, "test")
    reps = (args.n + len(x) - 1) // len(x)
    x, y = x.repeat(reps, 1, 1, 1)[: args.n].to(device), y.repeat(reps)[: args.n].to(device)
    eps = 0.1
    logits_model = _SumLogits(ens).eval()

    def batched(fn):
        def run():
            for i in range(0, args.n, args.batch):
                fn(x[i:i + args.batch], y[i:i + args.batch])
        return run

    ours_pgd = batched(lambda a, b: get("pgd")(ens, a, b, eps=eps, steps=args.pgd_steps,
                                                step_size=eps / 10))
    ta_pgd_atk = torchattacks.PGD(ens, eps=eps, alpha=eps / 10, steps=args.pgd_steps, random_start=True)
    theirs_pgd = batched(lambda a, b: ta_pgd_atk(a, b))
    ours_cw = batched(lambda a, b: get("cw")(logits_model, a, b, c=1.0, kappa=0.1, steps=args.cw_steps,
                                              lr=0.01, abort_early=False))
    ta_cw_atk = torchattacks.CW(logits_model, c=1.0, kappa=0.1, steps=args.cw_steps, lr=0.01)
    theirs_cw = batched(lambda a, b: ta_cw_atk(a, b))

    print(f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), "
          f"torch threads {torch.get_num_threads()}, {args.arch} x {args.members} members, "
          f"{args.n} images, batch {args.batch}, torchattacks {torchattacks.__version__}")
    ours_pgd(), theirs_pgd()  # warm-up
    rows = []
    for name, ours, theirs in (("PGD-%d" % args.pgd_steps, ours_pgd, theirs_pgd),
                               ("CW-%d" % args.cw_steps, ours_cw, theirs_cw)):
        t_o, t_t = [], []
        for _ in range(args.repeats):
            t_o.append(_time(ours, device))
            t_t.append(_time(theirs, device))
        ips_o, ips_t = args.n / statistics.median(t_o), args.n / statistics.median(t_t)
        rows.append((name, ips_o, ips_t))
        print(f"{name:8s} ours {ips_o:10.1f} img/s   torchattacks {ips_t:10.1f} img/s   "
              f"ratio ours/theirs {ips_o / ips_t:5.2f}")
    return rows


if __name__ == "__main__":
    main()
