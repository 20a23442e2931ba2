"""Numerical faults: a NaN or infinite loss stops training with a message naming epoch, batch and
term, keeps the last good checkpoint and writes nothing else; zero input gradients in the cosine
term give no NaN, in value or gradient."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn

import trs_lib.train as T
from trs_lib import checkpoint as ckpt
from trs_lib import methods
from trs_lib import trs as TRS
from trs_lib.ensemble import Ensemble
from trs_lib.evaluate import gradient_cosine
from trs_lib.recipes import make_config

# 3 batches per epoch; the per-epoch metrics on a few test points (speed only)
SETTINGS = dict(dataset="mnist5k", method="trs", num_models=2, train_subset=192, batch_size=64,
                epochs=2, seed=0, device="cpu")
BATCHES = 3


@pytest.fixture
def fast(monkeypatch):
    load = T._load_split
    monkeypatch.setattr(T, "COS_EVAL_POINTS", 32)
    monkeypatch.setattr(T, "_load_split", lambda cfg, split, device: tuple(
        t[:100] if split == "test" else t for t in load(cfg, split, device)))
    return monkeypatch


def _poison(monkeypatch, epoch: int, batch: int, term: str | None, value=float("nan")):
    """Make the TRS loss of (epoch, batch) (1-based) non-finite in ``term`` (None: only the total)."""
    real = methods.get("trs")
    calls = {"n": 0}

    def loss(ensemble, x, y, cfg, ctx):
        calls["n"] += 1
        total, terms = real.loss(ensemble, x, y, cfg, ctx)
        if calls["n"] == (epoch - 1) * BATCHES + batch:
            bad = torch.tensor(value)
            if term is not None:
                terms = dict(terms, **{term: terms[term] + bad})
            total = total + bad
        return total, terms

    monkeypatch.setitem(methods.REGISTRY, "trs", methods.Method("trs", loss))


@pytest.mark.parametrize("epoch,batch,term,value,expect", [
    (2, 2, "smoothness", float("nan"), "'smoothness' (gradient smoothness)"),
    (1, 1, "ce", float("inf"), "'ce' (cross-entropy)"),
    (1, 3, "similarity", float("-inf"), "'similarity' (gradient similarity)"),
    (2, 1, None, float("nan"), "the total loss"),
], ids=["nan-smoothness-e2b2", "inf-ce-e1b1", "neginf-similarity-e1b3", "nan-total-e2b1"])
def test_nonfinite_loss_stops_with_epoch_batch_and_term(tmp_path, fast, epoch, batch, term, value, expect):
    _poison(fast, epoch, batch, term, value)
    out = tmp_path / "run"
    with pytest.raises(T.NumericalError) as info:
        T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)
    msg = str(info.value)
    assert expect in msg, msg
    assert f"at epoch {epoch}, batch {batch} of {BATCHES}" in msg, msg
    if epoch == 1:
        assert "no checkpoint had been written yet" in msg, msg
        assert not out.exists() or not any(out.iterdir()), "a run that failed in epoch 1 wrote files"
        return
    assert f"last good checkpoint, epoch {epoch - 1}" in msg, msg
    # the good checkpoint is kept and nothing else was written
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"ckpt-e{e:04d}.{ext}" for e in range(1, epoch) for ext in ("json", "safetensors")], names
    meta, _ = ckpt.latest_checkpoint(out)
    assert meta["epoch"] == epoch - 1
    assert all(map(_finite, meta["history"][-1].values()))


def _finite(v):
    return not isinstance(v, float) or (v == v and abs(v) != float("inf"))


def test_nan_after_a_good_epoch_resumes_from_it(tmp_path, fast):
    """After the fault is gone, the same command resumes from the kept checkpoint."""
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        _poison(mp, 2, 2, "smoothness")
        with pytest.raises(T.NumericalError):
            T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)
    messages = []
    result = T.train(out_dir=out, progress=False, log=messages.append, **SETTINGS)
    assert f"resuming {out} after epoch 1" in messages
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(torch.isfinite(p).all() for p in result.ensemble.parameters())


# ---------------------------------------------------------------- zero input gradients
def _zero_grad_cases():
    g = torch.randn(3, 4, 10, dtype=torch.float64)
    all_zero = torch.zeros_like(g)
    one_zero = g.clone()
    one_zero[1] = 0.0
    some_rows = g.clone()
    some_rows[:, :2] = 0.0
    tiny = g * 1e-30  # squares underflow in float32
    return {"all-zero": all_zero, "one-member-zero": one_zero, "some-examples-zero": some_rows,
            "tiny": tiny, "tiny-float32": tiny.float()}


@pytest.mark.parametrize("case", list(_zero_grad_cases()))
def test_cosine_of_zero_gradients_is_finite_with_finite_gradient(case):
    g = _zero_grad_cases()[case].clone().requires_grad_(True)
    cos = TRS.pairwise_cosine(g)
    assert torch.isfinite(cos).all(), cos
    zero = (g.detach().flatten(2).abs().sum(-1) == 0)  # (N, B)
    j, k = TRS.pair_indices(g.shape[0])
    assert (cos.detach()[zero[j] | zero[k]] == 0).all(), "a zero gradient must give cosine 0"
    assert (cos.detach().abs() <= 1 + 1e-6).all()
    for variant, kw in (("seed", dict(lam=0.1, c=2.0)), ("published", dict(coeff=8.0, lamda=0.5, scale=5.0))):
        terms = TRS.trs_regularizer(g, variant, **kw)
        total = sum(terms.values())
        (grad,) = torch.autograd.grad(total, g)
        assert torch.isfinite(total), (variant, terms)
        assert torch.isfinite(grad).all(), f"{variant}: NaN/inf in the gradient of the TRS terms"


class _Flat(nn.Module):
    """A member whose output does not depend on its input: its input gradient is exactly 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(4, 3)
        self.b = nn.Parameter(torch.tensor([0.5, -0.2, 0.1]))

    def forward(self, x):
        return self.w(x.flatten(1) * 0.0) + self.b


def test_trs_loss_with_zero_input_gradients_is_finite_and_trains():
    torch.manual_seed(0)
    ens = Ensemble([_Flat(), _Flat(), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))])
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    cfg = make_config("mnist5k", "trs")
    for variant in ("seed", "published"):
        cfg.variant = variant
        loss, terms = methods.get("trs").loss(ens, x, y, cfg, methods.StepContext(0, 1))
        assert torch.isfinite(loss), (variant, terms)
        assert all(torch.isfinite(v) for v in terms.values()), (variant, terms)
        params = [p for p in ens.parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads), variant
    cos = gradient_cosine(ens, x, y)
    assert all(v == v for v in (cos["mean_abs_cos"], cos["mean_cos"]))
    assert cos["pairs"][0][2] == 0.0  # the two flat members: cosine 0, not NaN


def test_numerical_error_names_the_stage_of_sequential_methods():
    """Boosting trains one member per stage; the message says which."""
    first_bad = {"ce": torch.tensor(1)}
    with pytest.raises(T.NumericalError, match=re.escape("epoch 5 (stage 2), batch 2 of 7")):
        T._raise_if_bad(first_bad, torch.tensor(-1), 5, 7, 1, "runs/x")
