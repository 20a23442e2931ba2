"""trs_lib.theory: every function against values computed by hand on tiny inputs."""
import math
import pathlib
from fractions import Fraction as Fr

import numpy as np
import pytest
import sympy as sp
import torch

from trs_lib import theory as th

D64 = torch.float64


def _linear(W, b):
    m = torch.nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        m.weight.copy_(W)
        m.bias.copy_(b)
    return m


# ---------------------------------------------------------------- Definitions 1-3
def test_effectiveness_and_transferability_by_hand():
    y = torch.tensor([0, 1, 2, 0])
    pred_f = torch.tensor([0, 1, 2, 1])       # F wrong on the last point
    pred_g = torch.tensor([0, 1, 0, 0])       # G wrong on the third
    pred_f_adv = torch.tensor([1, 1, 0, 2])   # F flipped on points 0, 2, 3
    pred_g_adv = torch.tensor([2, 0, 0, 0])   # G flipped on points 0, 1, 2
    assert th.attack_effectiveness(pred_f_adv, y) == pytest.approx(0.25)  # Pr(F(A(x)) = y)
    assert th.is_effective(pred_f_adv, y, 0.25) and not th.is_effective(pred_f_adv, y, 0.2)
    tr = th.transferability_indicator(y, pred_f, pred_g, pred_f_adv, pred_g_adv)
    assert tr.tolist() == [True, False, False, False]
    target = torch.tensor([1, 2, 0, 1])
    assert th.attack_effectiveness(pred_f_adv, y, target) == pytest.approx(0.5)  # hits at 0, 2
    tr_t = th.transferability_indicator(y, pred_f, pred_g, pred_f_adv, pred_g_adv, target)
    assert tr_t.tolist() == [False, False, False, False]  # point 0: G went to 2, not 1
    pred_g_adv2 = torch.tensor([1, 0, 0, 0])
    assert th.transferability(y, pred_f, pred_g, pred_f_adv, pred_g_adv2, target) == 0.25
    assert th.risk(pred_f, y) == 0.25
    assert th.empirical_risk(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="alpha"):
        th.is_effective(pred_f_adv, y, 1.5)


def test_binary_linear_model_by_hand():
    m = th.binary_linear_model([3.0, 4.0], 2.0, offset=0.5)     # margin 2 (u.x - 0.5), u = (0.6, 0.8)
    x = torch.tensor([[0.3, 0.4], [0.6, 0.8], [0.0, 0.0]], dtype=D64)
    z = m(x)
    assert torch.allclose(z[:, 1] - z[:, 0], torch.tensor([0.0, 1.0, -1.0], dtype=D64))


def test_definition1_attack_stays_in_ball_and_matches_exact_binary_solution():
    model = th.binary_linear_model([3.0, 4.0], 2.0)
    x = torch.tensor([[0.5, 0.2], [-1.0, 0.3]], dtype=D64)
    y = torch.tensor([1, 0])
    loss = lambda z, lab: torch.nn.functional.cross_entropy(model(z), lab, reduction="none")
    xa = th.definition1_attack(loss, x, y, 0.7, steps=50)
    exact = th.binary_linear_attack(model, x, y, 0.7)
    # by hand: u = (0.6, 0.8); y = 1 moves along -u, y = 0 along +u
    assert torch.allclose(exact - x, torch.tensor([[-0.42, -0.56], [0.42, 0.56]], dtype=D64))
    assert torch.allclose(xa, exact, atol=1e-6)
    assert ((xa - x).norm(dim=1) <= 0.7 + 1e-12).all()
    # targeted towards the other class: the same point minimises l(x + delta, 1 - y)
    xt = th.definition1_attack(loss, x, 1 - y, 0.7, targeted=True, steps=50)
    assert torch.allclose(xt, exact, atol=1e-6)
    assert torch.equal(th.definition1_attack(loss, x, y, 0.0), x)
    box = th.definition1_attack(loss, x.clamp(0, 1), y, 0.7, steps=20, clip=(0.0, 1.0))
    assert box.min() >= 0 and box.max() <= 1
    with pytest.raises(ValueError, match="epsilon"):
        th.definition1_attack(loss, x, y, -1.0)


# ---------------------------------------------------------------- Definitions 4-6
def test_gradient_similarity_by_hand():
    gf = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]], dtype=D64)
    gg = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, 0.0], [-3.0, 0.0]], dtype=D64)
    cos = th.gradient_cosines(gf, gg)
    assert cos[0].item() == pytest.approx(1 / math.sqrt(2))
    assert cos[1].item() == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(cos[2].item())  # zero gradient: undefined, skipped
    assert th.lower_gradient_similarity(gf, gg) == pytest.approx(-1.0)
    assert th.upper_gradient_similarity(gf, gg) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="undefined"):
        th.lower_gradient_similarity(torch.zeros(2, 2), torch.ones(2, 2))


def test_smoothness_difference_quotient_by_hand():
    g1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=D64)
    g2 = torch.tensor([[4.0, 4.0], [0.0, 1.0]], dtype=D64)
    x1 = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D64)
    x2 = torch.tensor([[1.0, 0.0], [1.0, 3.0]], dtype=D64)
    assert th.smoothness_difference_quotient(g1, g2, x1, x2) == pytest.approx(5.0)  # |(3,4)| / 1
    with pytest.raises(ValueError, match="x1 != x2"):
        th.smoothness_difference_quotient(g1, g2, x1, x1)


# ---------------------------------------------------------------- Definitions 7-8
def test_total_variation_is_half_the_l1_distance():
    p = [Fr(1, 2), Fr(1, 2), Fr(0)]
    q = [Fr(0), Fr(1, 2), Fr(1, 2)]
    assert th.total_variation(p, q) == Fr(1, 2)               # sup over events: C = {0}
    assert th.total_variation_by_events(p, q) == Fr(1, 2)
    assert sum(abs(a - b) for a, b in zip(p, q)) == 1         # the l1 distance is twice that
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        assert th.total_variation(a, b) == pytest.approx(th.total_variation_by_events(a, b))
    with pytest.raises(ValueError, match="same length"):
        th.total_variation([1.0], [0.5, 0.5])


def test_pushforward_and_rho_conservative():
    p = [Fr(1, 4), Fr(1, 4), Fr(1, 2)]
    pa = th.pushforward(p, [1, 1, 2])                          # A moves point 0 to 1
    assert pa == [0, Fr(1, 2), Fr(1, 2)]
    assert th.total_variation(p, pa) == Fr(1, 4)
    assert th.is_rho_conservative(p, pa, Fr(1, 4)) and not th.is_rho_conservative(p, pa, Fr(1, 5))
    with pytest.raises(ValueError, match="outside"):
        th.pushforward(p, [0, 1, 3])


# ---------------------------------------------------------------- the TRS formula of Sec. 3
def test_literal_trs_formula_is_one_and_cosine_is_not():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=D64)
    y = torch.tensor([[0.0, 2.0], [-1.0, 0.0]], dtype=D64)
    assert torch.allclose(th.frobenius_outer(x, y), torch.tensor([10.0, 1.0], dtype=D64))
    assert torch.allclose(th.trs_similarity_literal(x, y), torch.ones(2, dtype=D64))
    assert torch.allclose(th.trs_similarity_cosine(x, y), torch.tensor([0.8, -1.0], dtype=D64))


# ---------------------------------------------------------------- Lemmas 3, 5, 6, Theorem 4
def test_lemma3_and_theorem4_by_hand():
    assert th.lemma3_bound(Fr(1, 10), Fr(1, 20)) == Fr(1, 4)
    assert th.theorem4_alpha(Fr(1, 10), Fr(1, 10), Fr(1, 20)) == Fr(11, 20)
    assert th.theorem4_alpha(Fr(1, 10), Fr(1, 10), Fr(1, 20), form="definition2") == Fr(7, 20)
    with pytest.raises(ValueError, match="unknown form"):
        th.theorem4_alpha(0.1, 0.1, 0.1, form="other")


def test_lemma5_by_hand_and_at_its_boundary():
    x = torch.tensor([1.0, 0.0], dtype=D64)
    y = torch.tensor([0.0, 1.0], dtype=D64)                 # m = 0, sqrt(2 - 2m) = sqrt 2
    prem, concl = th.lemma5(torch.tensor([0.0, 0.5], dtype=D64), x, y, -1.0, 1.0)
    assert prem.item() and concl.item()                     # 0.5 > -1 + sqrt 2, and 0 > -1
    prem, _ = th.lemma5(torch.tensor([0.0, 0.4], dtype=D64), x, y, -1.0, 1.0)
    assert not prem.item()                                  # 0.4 < 0.414...
    # boundary: delta = -(x - y)/|x - y| makes delta.(x - y) = -eps sqrt(2 - 2m) exactly
    delta = -(x - y) / (x - y).norm()
    c = (delta @ y).item() - math.sqrt(2)
    prem, concl = th.lemma5(delta, x, y, c, 1.0, strict=False)
    assert prem.item() and concl.item()                     # equality: delta.x == c
    assert (delta @ x).item() == pytest.approx(c)
    with pytest.raises(ValueError, match="unit"):
        th.lemma5(delta, 2 * x, y, 0.0, 1.0)


def test_lemma6_fails_at_delta_zero_and_on_the_boundary_but_not_in_its_weak_form():
    x = torch.tensor([1.0, 0.0], dtype=D64)
    y = torch.tensor([0.6, 0.8], dtype=D64)
    prem, concl = th.lemma6(torch.zeros(2, dtype=D64), x, y, 0.7)
    assert prem.item() and not concl.item()                 # 0 < 0 is false
    delta = torch.tensor([1.6, 0.8], dtype=D64)              # along x + y, x.y = S = 0.6
    prem, concl = th.lemma6(delta, x, y, 0.6)
    assert not prem.item() and not concl.item()             # min(1.6, 1.6) == |delta| sqrt(0.8)
    prem, concl = th.lemma6(delta, x, y, 0.6, strict=False)
    assert prem.item() and concl.item()
    prem, concl = th.lemma6(torch.tensor([1.0, 0.1], dtype=D64), x, y, 0.7)
    assert prem.item() and concl.item()


# ---------------------------------------------------------------- Theorems 1-2: terms
def test_aux_and_c_terms_by_hand():
    loss_adv = torch.tensor([[0.5, 2.0, 3.0], [1.0, 0.2, 4.0]], dtype=D64)
    loss_clean = torch.tensor([0.1, 0.3], dtype=D64)
    gnorm = torch.tensor([2.0, 0.5], dtype=D64)
    y = torch.tensor([0, 2])
    beta, eps = 4.0, 0.5                                     # beta eps^2 / 2 = 0.5
    f = th.aux_untargeted(loss_adv, loss_clean, gnorm, y, beta, eps, "F")
    g = th.aux_untargeted(loss_adv, loss_clean, gnorm, y, beta, eps, "G")
    # point 0: min_{y' != 0} = 2.0; point 1: min_{y' != 2} = 0.2
    assert f.tolist() == pytest.approx([(2.0 - 0.1 - 0.5) / 2, (0.2 - 0.3 - 0.5) / 0.5])
    assert g.tolist() == pytest.approx([(2.0 - 0.1 + 0.5) / 2, (0.2 - 0.3 + 0.5) / 0.5])
    assert th.c_terms(f, g) == pytest.approx((-1.2, 1.2))
    ft = th.aux_targeted(loss_adv, loss_clean, gnorm, beta, eps, "F")
    gt = th.aux_targeted(loss_adv, loss_clean, gnorm, beta, eps, "G")
    assert ft.tolist() == pytest.approx([(0.5 - 0.1 + 0.5) / 2, (0.2 - 0.3 + 0.5) / 0.5])
    assert gt.tolist() == pytest.approx([(0.5 - 0.1 - 0.5) / 2, (0.2 - 0.3 - 0.5) / 0.5])
    assert th.c_terms(ft, gt, targeted=True) == pytest.approx((0.8, -1.2))
    zero = th.aux_untargeted(loss_adv, loss_clean, torch.zeros(2, dtype=D64), y, beta, eps, "G")
    assert zero.tolist() == [math.inf, math.inf]             # confident G: c_G = +inf
    with pytest.raises(ValueError, match="role"):
        th.aux_untargeted(loss_adv, loss_clean, gnorm, y, beta, eps, "H")


def test_l_min_by_hand():
    lf = torch.tensor([[0.1, 2.0, 3.0], [1.5, 0.2, 4.0]], dtype=D64)
    lg = torch.tensor([[0.2, 1.8, 2.5], [2.5, 0.1, 1.7]], dtype=D64)
    y = torch.tensor([0, 1])
    assert th.l_min_untargeted(lf, lg, y) == pytest.approx(1.5)   # F at (x1, y'=0)
    assert th.l_min_targeted(lf, lg, torch.tensor([2, 2])) == pytest.approx(1.7)


# ---------------------------------------------------------------- Theorems 1-2: bounds
def test_lower_bounds_by_hand():
    args = dict(alpha=0.2, eta_F=0.05, eta_G=0.1, epsilon=1.0, c_F=-0.5, c_G=0.5)
    # 0.8 - 0.15 - (1.2 + 0.5 * 0.8) / 0.5 - 0.8 / 0.5 * sqrt(2 - 1)
    assert th.lower_bound_untargeted(**args, S_lower=0.5) == pytest.approx(0.65 - 3.2 - 1.6)
    assert th.lower_bound_untargeted_main_text(**args, S_upper=1.0) == pytest.approx(0.65 - 3.2)
    # targeted: 0.8 - 0.15 - (1.2 - 0.5 * 0.8) / 1.5 - 0.8 / 1.5 * 1
    assert th.lower_bound_targeted(**args, S_lower=0.5) == pytest.approx(0.65 - 0.8 / 1.5 - 0.8 / 1.5)
    bad = dict(args, c_G=2.0)                                 # eps - c_G = -1: no Markov step
    assert th.lower_bound_untargeted(**bad, S_lower=0.5) == -math.inf
    assert th.lower_bound_untargeted(**bad, S_lower=0.5, guard=False) == pytest.approx(
        0.65 - (1.2 + 0.4) / -1.0 - 0.8 / -1.0)
    assert th.lower_bound_denominator(1.0, 2.0) == -1.0
    assert th.lower_bound_denominator(1.0, -2.0, targeted=True) == -1.0
    arr = th.lower_bound_untargeted(0.2, 0.05, 0.1, 1.0, -0.5, np.array([0.5, 2.0]), 0.5)
    assert arr[0] == pytest.approx(-4.15) and arr[1] == -np.inf
    with pytest.raises(ValueError, match="alpha"):
        th.lower_bound_untargeted(**dict(args, alpha=1.2), S_lower=0.5)
    with pytest.raises(ValueError, match="S"):
        th.lower_bound_untargeted(**args, S_lower=1.5)


def test_upper_bounds_by_hand_and_symbolically():
    den = 5 - 0.5 * 2 * (1 + math.sqrt(0.75)) - 4 * 0.25
    assert th.upper_bound_denominator(5.0, 0.5, 2.0, 4.0, 0.5) == pytest.approx(den)
    assert th.upper_bound_untargeted(0.1, 0.2, 5.0, 0.5, 2.0, 4.0, 0.5) == pytest.approx(0.3 / den)
    assert th.upper_bound_targeted(0.1, 0.2, 5.0, 0.5, 2.0, 4.0, 0.5) == pytest.approx(0.3 / den)
    assert th.upper_bound_untargeted(0.1, 0.2, 1.0, 0.5, 2.0, 4.0, 0.5) == math.inf
    raw = th.upper_bound_untargeted(0.1, 0.2, 1.0, 0.5, 2.0, 4.0, 0.5, guard=False)
    assert raw == pytest.approx(0.3 / (1 - 1 - math.sqrt(0.75) - 1))
    S, l, e, B, b = sp.symbols("S l_min epsilon B beta", real=True)
    expr = th.upper_bound_untargeted(sp.Rational(1, 10), sp.Rational(1, 5), l, e, B, b, S)
    assert sp.simplify(expr - sp.Rational(3, 10) / (l - e * B * (1 + sp.sqrt((1 + S) / 2)) - b * e**2)) == 0


# ---------------------------------------------------------------- estimators
def test_gradients_of_a_linear_softmax_model_match_the_closed_form():
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], dtype=D64)
    b = torch.tensor([0.1, -0.2, 0.0], dtype=D64)
    model = _linear(W, b)
    x = torch.tensor([[0.3, -0.4], [1.0, 1.0]], dtype=D64)
    p = torch.softmax(x @ W.T + b, -1)
    grads = th.all_label_gradients(model, x)                  # (N, C, D)
    for k in range(3):
        expected = (p - torch.nn.functional.one_hot(torch.tensor(k), 3)) @ W
        assert torch.allclose(grads[:, k], expected)
    loss, g = th.input_gradient(model, x, torch.tensor([2, 0]))
    assert torch.allclose(g, torch.stack([grads[0, 2], grads[1, 0]]))
    assert torch.allclose(loss, th.label_losses(model, x)[[0, 1], [2, 0]])


def test_gradient_similarity_of_binary_linear_models_is_the_weight_cosine():
    f, g = th.binary_linear_model([1.0, 0.0], 2.0), th.binary_linear_model([0.6, 0.8], 3.0)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    sim = th.estimate_gradient_similarity(f, g, x)
    assert sim["lower"] == pytest.approx(0.6) and sim["upper"] == pytest.approx(0.6)
    sim_y = th.estimate_gradient_similarity(f, g, x, torch.zeros(20, dtype=torch.long))
    assert sim_y["cos"].shape == (20,)


def test_hessian_power_iteration_matches_the_explicit_hessian():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.randn(4, 5, dtype=D64)
    y = torch.tensor([0, 1, 2, 1])
    loss = lambda z: torch.nn.functional.cross_entropy(net(z), y, reduction="none")
    res = th.hessian_spectral_norm(loss, x, iters=2000, tol=1e-12,
                                   generator=torch.Generator().manual_seed(1))
    for i in range(4):
        H = torch.autograd.functional.hessian(
            lambda z: torch.nn.functional.cross_entropy(net(z[None]), y[i:i + 1]), x[i])
        eig = torch.linalg.eigvalsh(H)
        top = eig.abs().max()
        assert res["norm"][i].item() == pytest.approx(top.item(), rel=1e-6)
        assert abs(res["eigenvalue"][i].item()) == pytest.approx(top.item(), rel=1e-6)
    v = torch.randn(4, 5, dtype=D64)
    hv = th.input_hvp(loss, x, v)
    H0 = torch.autograd.functional.hessian(
        lambda z: torch.nn.functional.cross_entropy(net(z[None]), y[:1]), x[0])
    assert torch.allclose(hv[0], H0 @ v[0])


def test_linear_softmax_closed_forms():
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], dtype=D64)
    b = torch.zeros(3, dtype=D64)
    model = _linear(W, b)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=D64) * 2
    H = th.linear_softmax_input_hessian(W, b, x)
    for i in (0, 7):
        Hi = torch.autograd.functional.hessian(
            lambda z: torch.nn.functional.cross_entropy(model(z[None]), torch.tensor([1])), x[i])
        assert torch.allclose(H[i], Hi)
    # max ||w_j - w_k||^2 / 4: pairs (0,1) sqrt 5, (0,2) sqrt 5, (1,2) sqrt 2 -> 5/4
    assert th.linear_softmax_smoothness(W) == pytest.approx(5 / 4)
    assert th.linear_softmax_gradient_bound(W) == pytest.approx(math.sqrt(5))
    est = th.estimate_smoothness(model, x, torch.zeros(50, dtype=torch.long), iters=200)
    assert est["beta"] <= 5 / 4 + 1e-12
    assert est["beta"] == pytest.approx(torch.linalg.eigvalsh(H).max().item(), rel=1e-6)
    Bh = th.estimate_gradient_bound(model, x)["B"]
    assert Bh <= math.sqrt(5) + 1e-12
    # two classes: beta = s^2 / 4 is the exact supremum, reached at the decision boundary
    f = th.binary_linear_model([3.0, 4.0], 2.0)
    assert th.linear_softmax_smoothness(f) == pytest.approx(1.0)
    on_boundary = torch.tensor([[0.8, -0.6]], dtype=D64)      # u . x = 0
    assert th.estimate_smoothness(f, on_boundary, torch.tensor([0]), iters=50)["beta"] == pytest.approx(1.0)
    # on the boundary p = (1/2, 1/2): ||grad l|| = s/2 = 1 for both labels
    assert th.estimate_gradient_bound(f, on_boundary)["B"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two-class"):
        th.binary_linear_attack(model, x, torch.zeros(50, dtype=torch.long), 0.1)


def test_estimate_smoothness_along_attack_segments_and_all_labels():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x = torch.randn(5, 3, dtype=D64)
    xa = x + 0.3
    y = torch.zeros(5, dtype=torch.long)
    seg = th.estimate_smoothness(net, x, y, x_adv=xa, t_values=(0.0, 1.0), iters=300)
    at_x = th.estimate_smoothness(net, x, y, iters=300)["norms"]
    at_xa = th.estimate_smoothness(net, xa, y, iters=300)["norms"]
    assert torch.allclose(seg["norms"], torch.cat([at_x, at_xa]), rtol=1e-5)
    every = th.estimate_smoothness(net, x, "all", iters=300)
    assert every["beta"] >= at_x.max().item() - 1e-9
    with pytest.raises(ValueError, match="labels"):
        th.estimate_smoothness(net, x, "true")
    with pytest.raises(ValueError, match="labels"):
        th.estimate_gradient_bound(net, x, "true")
    with pytest.raises(ValueError, match="iters"):
        th.hessian_spectral_norm(lambda z: net(z).sum(1), x, iters=0)


def test_bound_terms_on_an_exact_binary_toy():
    f, g = th.binary_linear_model([1.0, 0.0], 2.0), th.binary_linear_model([1.0, 0.0], 2.0)
    x = torch.tensor([[0.2, 0.0], [-0.3, 1.0], [2.0, 0.0], [-0.1, 0.0]], dtype=D64)
    y = torch.tensor([1, 0, 1, 1])                           # the last point is misclassified
    xa = th.binary_linear_attack(f, x, y, 0.5)
    t = th.bound_terms(f, g, x, y, xa, 0.5, beta=th.linear_softmax_smoothness(f))
    # F = G: the attack flips points 0 and 1 (margins 0.2, 0.3 < 0.5), not 2
    assert t["transferability"] == pytest.approx(0.5)
    assert t["eta_F"] == t["eta_G"] == pytest.approx(0.25)
    assert t["alpha"] == pytest.approx(0.25)                 # Pr(F(A(x)) = y): point 2
    assert t["S_lower"] == pytest.approx(1.0) and t["beta"] == pytest.approx(1.0)
    bd = th.bounds_from_terms(t)
    assert bd["lower"] <= t["transferability"] <= bd["upper"]
    tt = th.bound_terms(f, g, x, y, xa, 0.5, beta=1.0, target=1 - y)
    assert tt["transferability"] == pytest.approx(0.5) and tt["targeted"]


def test_toy_mixture_shapes_labels_and_means():
    x, y = th.toy_mixture(2000, [[0.0, 0.0], [3.0, -1.0]], std=0.5,
                          generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and x.dtype == D64
    assert y.tolist() == [0] * 2000 + [1] * 2000
    assert torch.allclose(x[y == 1].mean(0), torch.tensor([3.0, -1.0], dtype=D64), atol=0.05)
    assert x[y == 0].std(0).tolist() == pytest.approx([0.5, 0.5], abs=0.03)


def test_lower_bound_guard_with_scalar_zero_denominator_returns_minus_inf():
    # c_G = eps (untargeted) and c_G = -eps (targeted): the Markov denominator is 0; the guard
    # must give the trivial bound -inf, not raise ZeroDivisionError from a Python-float division
    assert th.lower_bound_untargeted(0.1, 0.0, 0.0, 1.0, 0.5, 1.0, 0.5) == -math.inf
    assert th.lower_bound_targeted(0.1, 0.0, 0.0, 1.0, 0.5, -1.0, 0.5) == -math.inf
    assert th.lower_bound_untargeted_main_text(0.1, 0.0, 0.0, 1.0, 0.5, 1.0, 0.5) == -math.inf
    raw = th.lower_bound_untargeted(0.1, 0.0, 0.0, 1.0, 0.5, 1.0, 0.5, guard=False)
    assert math.isinf(raw) or math.isnan(raw)
    # a positive denominator is unaffected: eps = 1, c_F = 0.5, c_G = 0, S = 1, alpha = eta = 0
    assert th.lower_bound_untargeted(0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0) == pytest.approx(0.5)


def test_theory_package_keeps_every_public_name():
    """Every ``th.NAME`` the theory notebooks call is a public name of ``trs_lib.theory``
    (removing or renaming one fails here, not in a notebook), and each submodule's public
    names are the package's, pointing at the same object."""
    import re
    root = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
    used = {m for f in root.glob("0*.py") for m in re.findall(r"\bth\.([A-Za-z_]\w*)", f.read_text())}
    used -= {"definitions", "bounds", "estimators", "exact", "validity", "checks"}
    assert len(used) > 20, sorted(used)  # the notebooks do use the package
    missing = sorted(n for n in used if n not in th.__all__)
    assert not missing, f"notebooks call names trs_lib.theory does not export: {missing}"
    for part in (th.definitions, th.bounds, th.estimators, th.exact, th.validity, th.checks):
        for name in part.__all__:
            assert getattr(th, name) is getattr(part, name)
    assert th.lower_bound_untargeted.__module__ == "trs_lib.theory.bounds"


def test_local_smoothness_is_the_hessian_at_small_radius_and_bounded_for_softmax():
    """``local_smoothness`` at a tiny radius equals ||H(x) u|| for the same random direction
    (the Hessian-vector product by double backward), and for a linear softmax model never exceeds
    ``||W||^2 / 2`` (the cross-entropy's Hessian is W^T (diag p - p p^T) W, whose middle factor
    has norm at most 1/2) at any radius; a wrong normalisation by the radius fails both."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).double()
    with torch.no_grad():
        model[1].weight.mul_(3.0)
    x = torch.randn(7, 1, 3, 4, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    est = th.local_smoothness(model, x, y, radius=1e-5, n_dirs=1,
                              generator=torch.Generator().manual_seed(3))
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float32).double()
    u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    hu = th.input_hvp(lambda z: torch.nn.functional.cross_entropy(model(z), y, reduction="none"), x, u)
    assert torch.allclose(est, hu.flatten(1).norm(dim=1), rtol=1e-4)
    bound = 0.5 * torch.linalg.matrix_norm(model[1].weight.detach(), ord=2) ** 2
    for radius in (1e-3, 0.3, 3.0, 30.0):
        v = th.local_smoothness(model, x, y, radius=radius, n_dirs=6,
                                generator=torch.Generator().manual_seed(1))
        assert (v > 0).all() and (v <= bound * (1 + 1e-9)).all()
    with pytest.raises(ValueError, match="radius=0"):
        th.local_smoothness(model, x, y, radius=0)
    with pytest.raises(ValueError, match="n_dirs=0"):
        th.local_smoothness(model, x, y, n_dirs=0)
