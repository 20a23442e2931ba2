"""Should the members run as one grouped convolution? The convolutions of a TRS step, both ways.

    .venv/bin/python benchmarks/member_batching.py --threads 1 --rounds 3

Stacking N members of one architecture (torch.func ``stack_module_state`` + ``vmap``, or a
"wide" model) turns each convolution into one grouped convolution with ``groups=N``; that is
what ``vmap`` over a convolution with per-member weights lowers to. This times every
convolution layer of ResNet-20 (32x32) and of the small CNN (28x28), forward plus input and
weight gradients, for 3 members at batch 128 in channels_last: a Python loop of 3 convolutions
against 1 grouped convolution, interleaved. On the 2-core CPU of ``benchmarks/README.md`` the
loop was faster (grouped/loop time 1.36-1.42 for ResNet-20, 1.10 for the small CNN), so the
library keeps the loop (``Ensemble.member_logits_each``); rerun this on a GPU, where fewer,
larger kernels may win.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

_aten = torch.ops.aten
CL = torch.channels_last

# (input channels, output channels, input size, stride) of every 3x3 convolution
LAYERS = {
    "resnet20": [(3, 16, 32, 1)] + [(16, 16, 32, 1)] * 6 + [(16, 32, 32, 2)] + [(32, 32, 16, 1)] * 5
                + [(32, 64, 16, 2)] + [(64, 64, 8, 1)] * 5,
    "small_cnn": [(1, 16, 28, 1), (16, 32, 14, 1)],
}


def _tensors(batch, cin, cout, size, stride, members):
    rnd = lambda *shape: torch.randn(*shape).contiguous(memory_format=CL)
    out = (size - 1) // stride + 1
    xs = [rnd(batch, cin, size, size) for _ in range(members)]
    ws = [rnd(cout, cin, 3, 3) for _ in range(members)]
    gys = [rnd(batch, cout, out, out) for _ in range(members)]
    cat = lambda ts, dim: torch.cat(ts, dim).contiguous(memory_format=CL)
    return xs, ws, gys, cat(xs, 1), cat(ws, 0), cat(gys, 1), stride


def _step(x, w, gy, stride, groups):
    F.conv2d(x, w, None, stride, 1, 1, groups)
    _aten.convolution_backward(gy, x, w, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], groups,
                               [True, True, False])


def compare(arch: str, batch: int = 128, members: int = 3, rounds: int = 3) -> dict:
    """Median seconds of the loop and of the grouped convolution over ``rounds`` interleaved rounds."""
    setups = [_tensors(batch, *layer, members) for layer in LAYERS[arch]]
    loop = lambda: [_step(x, w, gy, s, 1) for xs, ws, gys, *_, s in setups
                    for x, w, gy in zip(xs, ws, gys)]
    grouped = lambda: [_step(xg, wg, gyg, s, members) for *_, xg, wg, gyg, s in setups]
    times = {"loop": [], "grouped": []}
    loop(), grouped()
    for _ in range(rounds):
        for name, fn in (("loop", loop), ("grouped", grouped)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for arch in LAYERS:
        t = compare(arch, rounds=args.rounds)
        print(f"{arch:9s} loop {t['loop'] * 1e3:7.0f} ms   grouped {t['grouped'] * 1e3:7.0f} ms   "
              f"grouped/loop time {t['grouped'] / t['loop']:.2f}")


if __name__ == "__main__":
    main()
