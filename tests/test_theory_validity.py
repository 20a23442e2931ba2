"""Theory checks that could fail: the main-text Theorem 1 counterexample, the closed-form terms of
the validity searches against the library's estimators, small validity searches, check tables."""
import math

import numpy as np
import pytest
import sympy as sp
import torch

from trs_lib import theory as th
from trs_lib.theory import validity

D64 = torch.float64


# ------------------------------------------------------------- main-text Theorem 1 is false
def test_main_text_theorem1_counterexample():
    cx = th.main_text_counterexample()
    t, b = cx["terms"], cx["bounds"]
    assert t["beta"] == pytest.approx(0.005)
    assert (t["alpha"], t["eta_F"], t["eta_G"], t["transferability"]) == (0.0, 0.0, 0.0, 0.0)
    assert 0 < t["c_G"] < t["epsilon"] and t["c_F"] > 0.9          # the Markov step applies
    assert b["lower_main_text"] > 0.9 > t["transferability"]        # printed form: violated
    assert b["lower"] < 0 <= t["transferability"]                   # appendix form: holds
    # with S_upper = 1 the printed bound is (c_F - c_G) / (eps - c_G) exactly
    assert b["lower_main_text"] == pytest.approx((t["c_F"] - t["c_G"]) / (1 - t["c_G"]))


def test_counterexample_attack_is_the_definition1_maximiser():
    cx = th.main_text_counterexample()
    model_f = cx["model_f"]
    loss = lambda z, lab: torch.nn.functional.cross_entropy(model_f(z), lab, reduction="none")
    solved = th.definition1_attack(loss, cx["x"], cx["y"], 1.0, steps=200, starts=4,
                                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(solved, cx["x_adv"], atol=1e-4)
    ang = torch.linspace(0, 2 * math.pi, 721, dtype=D64)
    circle = cx["x"] + torch.stack([ang.cos(), ang.sin()], 1)
    vals = loss(circle, torch.zeros(len(circle), dtype=torch.long))
    assert vals.max() <= loss(cx["x_adv"], cx["y"]).item() + 1e-12


def test_counterexample_similarities_are_zero_and_one():
    cx = th.main_text_counterexample()
    g = torch.Generator().manual_seed(0)
    # radii up to ~20: farther out, p_k - 1 rounds to 0 in float64 and autograd's gradients are
    # rounding noise (which can point anywhere)
    pts = torch.cat([torch.randn(2000, 2, generator=g, dtype=D64) * s for s in (1, 5, 10)])
    sim = th.estimate_gradient_similarity(cx["model_f"], cx["model_g"], pts)
    assert sim["lower"] >= -1e-12           # never obtuse: S_lower = inf >= 0
    # the infimum 0: for label 1, cos = p_0 c / ||(p_0 c, -p_0 d - p_2 (d + e))|| -> 0 as p_0 -> 0,
    # computed from p - e_1 = (p_0, -(p_0 + p_2), p_2) without cancellation
    Wf, Wg = cx["model_f"].weight.detach(), cx["model_g"].weight.detach()
    cosines = []
    for x2 in (-50.0, -200.0, -800.0):
        x = torch.tensor([[0.99, x2]], dtype=D64)
        pf, pg = torch.softmax(cx["model_f"](x), -1)[0].detach(), torch.softmax(cx["model_g"](x), -1)[0].detach()
        gf = Wf.T @ torch.stack([pf[0], -(pf[0] + pf[2]), pf[2]])
        gg = Wg.T @ torch.stack([pg[0], -(pg[0] + pg[2]), pg[2]])
        cosines.append((gf @ gg / gf.norm() / gg.norm()).item())
    assert all(c > 0 for c in cosines) and cosines[-1] < 1e-3 and cosines == sorted(cosines, reverse=True)
    # S_upper = 1 is attained for label 0 where p_1 d = p_2 e (here on a line x_1 = 0.99)
    x2 = torch.linspace(-100, 100, 20001, dtype=D64)
    line = torch.stack([torch.full_like(x2, 0.99), x2], 1)
    up = th.estimate_gradient_similarity(cx["model_f"], cx["model_g"], line,
                                         torch.zeros(len(line), dtype=torch.long))["upper"]
    assert up > 1 - 1e-6


def test_counterexample_rejects_parameters_that_break_it():
    with pytest.raises(ValueError, match="margin_g"):
        th.main_text_counterexample(margin_g=0.005)
    with pytest.raises(ValueError, match="margin_f"):
        th.main_text_counterexample(margin_f=0.2)


# ------------------------------------------------------------- closed forms of the searches
@pytest.mark.parametrize("targeted", [False, True])
def test_binary_logistic_terms_match_bound_terms(targeted):
    rng = np.random.default_rng(3)
    for _ in range(3):
        theta = rng.uniform(0.2, 1.2)
        s_f, s_g, eps = rng.uniform(0.3, 3), rng.uniform(0.3, 3), rng.uniform(0.2, 1.5)
        mu_f, mu_g = rng.normal(0.5, 1.0, 5), rng.normal(0.5, 1.0, 5)
        x, y, mf, mg = validity.binary_logistic_points(mu_f, mu_g, s_f, s_g, theta)
        closed = validity.binary_logistic_terms(mu_f, mu_g, np.full(5, 0.2), s_f, s_g,
                                                math.cos(theta), eps, targeted)
        xa = th.binary_linear_attack(mf, x, y, eps)
        ref = th.bound_terms(mf, mg, x, y, xa, eps, beta=closed["beta"],
                             target=(1 - y) if targeted else None)
        for key in ("alpha", "eta_F", "eta_G", "xi_F", "xi_G", "c_F", "c_G", "l_min", "B",
                    "S_lower", "S_upper", "transferability"):
            assert closed[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
        assert closed["lower"] == pytest.approx(th.bounds_from_terms(ref)["lower"], rel=1e-6)


# ------------------------------------------------------------- small validity searches
def test_theorem1_appendix_form_search_small():
    s = validity.summarize(validity.search_theorem1(600, seed=1))
    assert s["informative"] >= 40
    assert s["violations"] == 0 and s["min_slack"] > 0


def test_targeted_lower_bound_is_never_positive():
    df = validity.search_theorem1(600, seed=2, targeted=True)
    assert (df["bound"] <= 0).all()
    gaps = df["targeted_gap"].dropna()
    assert len(gaps) > 300 and (gaps >= -1e-9).all()
    # the identity behind it: bound = -eta - (2 eps alpha + (1 - alpha) gap) / (c_G + eps)
    al, eF, eG, ep, cG, S, gap = sp.symbols("alpha eta_F eta_G epsilon c_G S gap", real=True)
    cF = cG - ep * sp.sqrt(2 - 2 * S) + gap
    bound = th.lower_bound_targeted(al, eF, eG, ep, cF, cG, S, guard=False)
    assert sp.simplify(bound - (-(eF + eG) - (2 * ep * al + (1 - al) * gap) / (cG + ep))) == 0


@pytest.mark.parametrize("targeted", [False, True])
def test_theorem2_search_small(targeted):
    df = validity.search_theorem2(6, seed=0, targeted=targeted)
    s = validity.summarize(df)
    assert s["informative"] >= 3
    assert s["violations"] == 0


# ------------------------------------------------------------- check tables and findings
def test_check_table_verdicts_and_errors():
    table = th.check_table([{"name": "a", "what": "x", "cases": 3, "violations": 0},
                            ("b", "y", 2, 1), ("c", "z", 0, 0)])
    assert list(table.columns) == ["name", "what is checked", "cases", "violations", "verdict"]
    assert table["verdict"].tolist() == ["pass", "fail", "no cases"]
    with pytest.raises(ValueError, match="exceed"):
        th.check_table([("a", "x", 1, 2)])
    with pytest.raises(ValueError, match="cases"):
        th.check_table([("a", "x", 1.5, 0)])
    with pytest.raises(ValueError, match="unknown keys"):
        th.check_table([{"name": "a", "what": "x", "cases": 1, "violations": 0, "extra": 1}])


def test_findings_follow_the_contract():
    found = th.findings(size="tiny")
    ids = [f["id"] for f in found]
    assert len(ids) == len(set(ids)) and "thm1-main-text" in ids
    for f in found:
        assert set(f) == {"id", "statement", "verdict", "page", "evidence"}
    by_id = {f["id"]: f for f in found}
    assert by_id["thm1-main-text"]["verdict"] == "refuted"
    assert by_id["thm1-appendix"]["verdict"] == "holds"
    with pytest.raises(ValueError, match="size"):
        th.findings(size="huge")


# ------------------------------------------------------------- trained-network estimators
def test_trained_pair_bounds_on_tiny_smooth_cnns():
    from trs_lib.models import SmallCNN
    torch.manual_seed(0)
    f, g = (SmallCNN(width=2, activation="gelu").double().eval() for _ in range(2))
    x = torch.rand(6, 1, 28, 28, dtype=D64)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    rows = th.trained_pair_bounds(f, g, x, y, [0.5, 1.0], n_beta=2, attack_steps=3, hessian_iters=3,
                                  generator=torch.Generator().manual_seed(0))
    assert len(rows) == 4 and sorted((r["epsilon"], r["targeted"]) for r in rows) == [
        (0.5, False), (0.5, True), (1.0, False), (1.0, True)]
    for r in rows:
        assert r["attack_in_ball"] and math.isfinite(r["beta"]) and r["beta"] > 0
        assert r["lower"] <= r["transferability"] <= r["upper"] or r["upper"] == math.inf
        if r["targeted"]:
            assert r["lower"] <= 0          # Theorem B is never positive
    with pytest.raises(ValueError, match="epsilons"):
        th.trained_pair_bounds(f, g, x, y, [])


def test_smooth_small_cnn_variants():
    from trs_lib.models import SmallCNN, build
    assert build("small_cnn_gelu").activation == "gelu"
    assert build("small_cnn").activation == "relu"
    with pytest.raises(ValueError, match="activation"):
        SmallCNN(activation="tanh")
    # a smooth member's input Hessian depends on the label; a ReLU member's does not (J^T (diag p
    # - p p^T) J whatever the label): the smooth variant really has curvature of its own
    torch.manual_seed(1)
    x = torch.rand(1, 1, 28, 28, dtype=D64)
    for act, differs in (("softplus", True), ("relu", False)):
        model = SmallCNN(width=2, activation=act).double().eval()
        v = torch.randn_like(x)
        hv = [th.input_hvp(lambda z, lab=lab: torch.nn.functional.cross_entropy(
            model(z), torch.tensor([lab]), reduction="none"), x, v) for lab in (0, 1)]
        assert (not torch.allclose(hv[0], hv[1], rtol=1e-6, atol=1e-12)) == differs


def test_estimate_directions_cover_every_term():
    terms = " ".join(d["term"] for d in th.ESTIMATE_DIRECTIONS)
    for name in ("alpha", "eta_F", "xi_F", "beta", "B", "S_lower", "S_upper", "c_F", "c_G", "l_min"):
        assert name in terms
    for d in th.ESTIMATE_DIRECTIONS:
        assert set(d) == {"term", "estimate", "relation to the true term", "lower bound", "upper bound"}


def test_glue_check_counts_rejects_other_tables():
    import pandas as pd
    with pytest.raises(ValueError, match="check_table"):
        th.glue_check_counts(pd.DataFrame({"a": [1]}))
