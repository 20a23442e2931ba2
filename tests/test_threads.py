"""Two threads differentiating at once get their own, correct gradients (issue 11, item 6).

Whether a convolution's backward builds its weight terms is decided per backward pass (the
engine's current graph task, ``trs_lib.double_backward._wanted``), not by process-wide state:
a thread taking input gradients (an attack, the smoothness PGD, an evaluation) while another
thread trains must not drop the trainer's weight gradients.
"""
import threading

import torch

from trs_lib import trs as T
from trs_lib.ensemble import build_ensemble
from trs_lib.methods import StepContext, get
from trs_lib.recipes import make_config

F64 = torch.float64
ROUNDS = 6


def _batch(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g, dtype=F64), torch.randint(0, 10, (n,), generator=g)


def _train_grads(ens, x, y, cfg):
    """One training step's parameter gradients, as the trainer takes them (``loss.backward()``)."""
    ens.zero_grad(set_to_none=True)
    loss, _ = get("trs").loss(ens, x, y, cfg, StepContext(epoch=0, epochs=1))
    loss.backward()
    return [p.grad.clone() for p in ens.parameters()]


def test_training_step_and_input_gradients_in_two_threads():
    cfg = make_config("mnist5k", "trs")
    trainee = build_ensemble("small_cnn", "mnist5k", 3, seed=0).to(F64)
    other = build_ensemble("small_cnn", "mnist5k", 3, seed=1).to(F64).eval()
    x, y = _batch(0)
    xo, yo = _batch(1, n=16)
    expected = _train_grads(trainee, x, y, cfg)           # single-threaded reference

    results, errors, done = [], [], threading.Event()

    def train():
        try:
            for _ in range(ROUNDS):
                results.append(_train_grads(trainee, x, y, cfg))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)
        finally:
            done.set()

    def input_gradients():
        try:
            while not done.is_set():   # input-only first and second derivatives, over and over
                T.input_gradients(other.member_logits, xo, yo, create_graph=False)
                T.smoothness_inputs(other.member_logits, xo, yo, 0.1, steps=1,
                                    generator=torch.Generator().manual_seed(0))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=train), threading.Thread(target=input_gradients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == ROUNDS
    for got in results:
        for a, b in zip(got, expected):
            assert ((a - b).norm() / b.norm()).item() < 1e-12
    # and the other thread's ensemble got no parameter gradient at all
    assert all(p.grad is None for p in other.parameters())
