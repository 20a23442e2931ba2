"""The audit's backstop (trs_lib.audit): three masked models must each be flagged, a plain one passes.

Masking makes gradient attacks fail without making the model robust: logits x100 (the softmax
saturates, cross-entropy gradients vanish), an input rounded to 8 bits (zero gradient
everywhere), a non-differentiable preprocessing (the graph is cut). The gradient-free Square
check, the transfer check from an independently initialised surrogate and the worst-case check
must catch them. Each test builds its own models; few points, cut-down budgets.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trs_lib import audit as A
from trs_lib import data
from trs_lib.attacks.testing import quick_model, test_points

EPS = 0.15
FAST = dict(steps=20, apgd_steps=10, n_targets=2, square_queries=150,
            checks=("worst_case", "square", "transfer"))


class Scaled(nn.Module):
    def __init__(self, model, k=100.0):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x):
        return self.k * self.model(x)


class Rounded(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


class Blurred(nn.Module):
    """A non-differentiable preprocessing: a 3x3 median-like blur computed outside the graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.no_grad():
            xp = F.avg_pool2d(x, 3, 1, 1).clamp(0, 1)
        return self.model(xp)


def _train_points():
    x, _ = data.load("mnist5k", "train")  # sorted by class: take a random sample
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:2000]]


def _audit(model):
    x, y = test_points(64)
    checks = A.audit(model, x, y, eps=EPS, surrogate_data=_train_points(), **FAST)
    return {c["check"]: c for c in checks}


def test_plain_model_passes_the_backstop():
    res = _audit(quick_model())
    assert all(c["passed"] for c in res.values()), {k: c["detail"] for k, c in res.items()}
    assert res["transfer"]["values"]["surrogate"] == "independent"


@pytest.mark.parametrize("wrap", [Scaled, Rounded, Blurred], ids=["logits_x100", "rounded_8bit", "nondiff_preprocessing"])
def test_masked_models_are_flagged(wrap):
    res = _audit(wrap(quick_model()).eval())
    failed = [k for k, c in res.items() if c["passed"] is False]
    assert failed, {k: c["detail"] for k, c in res.items()}


def test_zero_gradient_models_are_caught_by_the_gradient_free_and_transfer_checks():
    for wrap in (Rounded, Blurred):
        res = _audit(wrap(quick_model()).eval())
        assert res["square"]["passed"] is False, res["square"]["detail"]
        assert res["transfer"]["passed"] is False, res["transfer"]["detail"]


def test_surrogate_is_independent_of_the_model():
    model = quick_model()
    sur = A.independent_surrogate(model, _train_points(), seed=1)
    a = torch.cat([p.flatten() for p in model.parameters()])
    b = torch.cat([p.flatten() for p in sur.parameters()])
    assert a.shape == b.shape and not torch.allclose(a, b)
    x, _ = test_points(64)
    with torch.no_grad():
        agree = (sur(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agree >= 0.5  # it imitates the model's labels


@pytest.mark.parametrize("kw,match", [
    (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"), (dict(eps=2.0), "eps"),
    (dict(eps=0.1, checks=("nope",)), "unknown checks"), (dict(eps=0.1, square_queries=0), "square_queries"),
    (dict(eps=0.1, apgd_steps=-1), "apgd_steps"),
])
def test_bad_audit_arguments(kw, match):
    x, y = test_points(4)
    with pytest.raises(ValueError, match=match):
        A.audit(quick_model(), x, y, **kw)


def test_evaluate_and_audit_do_not_import_each_other_both_ways():
    root = Path(A.__file__).parent

    def imports(mod):
        tree = ast.parse((root / f"{mod}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names.add((node.module or "").split(".")[-1])
                names.update(a.name for a in node.names)
        return names

    assert "evaluate" not in imports("audit")
    assert "audit" not in imports("worst_case") and "evaluate" not in imports("worst_case")
