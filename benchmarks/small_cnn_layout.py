"""The small CNN's layer order and layout: textbook (conv, ReLU, max-pool; NCHW) against ours
(conv, max-pool, ReLU; channels-last), the same function, timed side by side in one process.

    python benchmarks/small_cnn_layout.py [--batch 256] [--members 3] [--repeats 7]

Per pass (forward without gradients, input gradient, training step, TRS's double backward) it
prints the best of ``--repeats`` interleaved timings of each version and the ratio. The outputs
are compared too (they agree to rounding; ``tests/test_models_ensemble.py`` checks gradients and
second derivatives in float64).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from trs_lib import models
from trs_lib.ensemble import build_ensemble


def textbook_features(self, x):
    out = F.max_pool2d(F.relu(self.conv1(self.normalize(x))), 2)
    out = F.max_pool2d(F.relu(self.conv2(out)), 2)
    return F.relu(self.fc1(out.flatten(1)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    ens = build_ensemble("small_cnn", "mnist5k", args.members).eval()
    x = torch.rand(args.batch, 1, 28, 28)
    ours = models.SmallCNN.features

    def forward():
        with torch.no_grad():
            ens(x)

    def input_grad():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(ens(xx).sum(), xx)

    def train_step():
        ens.zero_grad(set_to_none=True)
        ens(x).sum().backward()

    def double_backward():
        xx = x.clone().requires_grad_(True)
        g, = torch.autograd.grad(ens(xx).logsumexp(1).sum(), xx, create_graph=True)
        g.pow(2).sum().backward()

    passes = {"forward": forward, "input gradient": input_grad, "training step": train_step,
              "double backward": double_backward}
    versions = {"textbook": textbook_features, "ours": ours}
    best = {(p, v): float("inf") for p in passes for v in versions}
    try:
        for _ in range(args.repeats + 1):  # the first round warms up and is kept out
            for p, fn in passes.items():
                for v, feat in versions.items():
                    models.SmallCNN.features = feat
                    t = time.perf_counter()
                    fn()
                    best[(p, v)] = min(best[(p, v)], time.perf_counter() - t) if _ else best[(p, v)]
        models.SmallCNN.features = textbook_features
        with torch.no_grad():
            ref = ens(x)
    finally:
        models.SmallCNN.features = ours
    with torch.no_grad():
        diff = (ens(x) - ref).abs().max().item()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.members} members; max |output difference| {diff:.1e}")
    for p in passes:
        a, b = best[(p, "textbook")], best[(p, "ours")]
        print(f"  {p:16s} textbook {1e3 * a:7.1f} ms   ours {1e3 * b:7.1f} ms   {a / b:4.2f}x")


if __name__ == "__main__":
    main()
