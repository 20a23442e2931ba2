"""Property tests of the attack suite (trs_lib.attacks) on analytic and quickly trained models.

Each attack: eps = 0 returns x; outputs lie in their ball and in [0, 1]; accuracy of an
undefended model falls well below clean; targeted modes reach their target; CW's margin is
right on log-probabilities (and a test proves the masked-max bug would be caught); bad inputs
raise ValueError naming the value.
"""
from __future__ import annotations

import inspect

import pytest
import torch

from trs_lib import attacks
from trs_lib.attacks import apgd as APGD
from trs_lib.attacks import cw as CW
from trs_lib.attacks.testing import LogProbs, linear_model, quick_model, test_points

LINF = ("fgsm", "bim", "pgd", "mim", "ila", "apgd_ce", "apgd_dlr", "apgd_t", "square", "reweigh")
#: the L2 attacks and their fast settings (eps set by each test)
L2 = {"pgd_l2": dict(steps=5), "apgd_ce": dict(steps=10, norm="L2"), "apgd_t": dict(steps=10, n_targets=2, norm="L2"),
      "square": dict(n_queries=40, norm="L2"), "reweigh": dict(steps=10, norm="L2"), "ddn": dict(steps=20)}


@pytest.fixture
def model():
    return quick_model()  # a fresh copy per test: no test can leak a mode or weights into another


@pytest.fixture
def points(model):
    x, y = test_points(48)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x, y, ok


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _linf_kwargs(name, eps):
    kw = {"eps": eps}
    if name in ("apgd_ce", "apgd_dlr", "reweigh"):
        kw["steps"] = 20
    if name == "apgd_t":
        kw.update(steps=10, n_targets=2)
    if name == "square":
        kw["n_queries"] = 40
    return kw


# ------------------------------------------------------------------------------ registry
def test_registry_lists_every_attack_and_refuses_unknown_names():
    for name in attacks.ATTACKS:
        assert callable(attacks.get(name))
    assert set(LINF) | {"cw", "ead", "jsma"} <= set(attacks.ATTACKS)
    with pytest.raises(ValueError, match="unknown attack 'nope'.*pgd"):
        attacks.get("nope")


def test_pgd_signature_is_the_documented_one():
    sig = inspect.signature(attacks.get("pgd"))
    assert list(sig.parameters)[:3] == ["model", "x", "y"]
    for k, v in dict(eps=inspect.Parameter.empty, steps=10, step_size=None, random_start=True,
                     targeted=False, restarts=1, generator=None).items():
        assert sig.parameters[k].default == v
        assert sig.parameters[k].kind is inspect.Parameter.KEYWORD_ONLY


# ------------------------------------------------------------------------------ eps = 0, ball, box
@pytest.mark.parametrize("name", LINF)
def test_eps_zero_returns_x(name, model, points):
    x, y, _ = points
    out = attacks.get(name)(model, x[:8], y[:8], **_linf_kwargs(name, 0.0))
    assert torch.equal(out, x[:8])


@pytest.mark.parametrize("name", ["jsma"])
def test_jsma_gamma_zero_returns_x(name, model, points):
    x, y, _ = points
    assert torch.equal(attacks.get(name)(model, x[:4], y[:4], gamma=0.0), x[:4])


@pytest.mark.parametrize("name", LINF)
def test_output_in_linf_ball_and_box_detached(name, model, points):
    x, y, _ = points
    x = x[:16].clone()
    x[:, :, :3] = 0.0
    x[:, :, -3:] = 1.0  # points on the box edges
    eps = 0.1
    out = attacks.get(name)(model, x, y[:16], **_linf_kwargs(name, eps))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not out.requires_grad
    assert (out - x).abs().max() <= eps + 1e-6
    assert out.min() >= 0 and out.max() <= 1
    assert (out != x).any()


@pytest.mark.parametrize("name,kw", [("cw", dict(c=1.0, steps=20, lr=0.1)),
                                     ("ead", dict(c=1.0, steps=20, binary_search_steps=1)),
                                     ("jsma", dict(gamma=0.05, targeted=False))])
def test_unbounded_attacks_stay_in_box(name, kw, model, points):
    x, y, _ = points
    out = attacks.get(name)(model, x[:8], y[:8], **kw)
    assert out.shape == x[:8].shape and not out.requires_grad
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", sorted(L2))
def test_l2_attacks_eps_zero_ball_and_box(name, model, points):
    x, y, _ = points
    x = x[:12].clone()
    x[:, :, :3] = 0.0
    x[:, :, -3:] = 1.0
    kw = L2[name]
    assert torch.equal(attacks.get(name)(model, x, y[:12], eps=0.0, **kw), x)
    eps = 1.0
    out = attacks.get(name)(model, x, y[:12], eps=eps, **kw)
    assert out.shape == x.shape and not out.requires_grad
    assert (out - x).flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert out.min() >= 0 and out.max() <= 1
    assert (out != x).any()


# ------------------------------------------------------------------------------ strength
STRENGTH = [
    ("fgsm", dict(eps=0.2)),
    ("bim", dict(eps=0.2)),
    ("pgd", dict(eps=0.2)),
    ("mim", dict(eps=0.2)),
    ("apgd_ce", dict(eps=0.2, steps=20)),
    ("apgd_dlr", dict(eps=0.2, steps=20)),
    ("ila", dict(eps=0.2)),
    ("cw", dict(c=10.0, kappa=0.1, steps=60, lr=0.1, stop_on_success=True)),
    ("ead", dict(c=10.0, kappa=0.1, steps=40, binary_search_steps=1, stop_on_success=True)),
    ("apgd_t", dict(eps=0.2, steps=10, n_targets=2)),
    ("square", dict(eps=0.3, n_queries=300)),
    ("reweigh", dict(eps=0.2, steps=20)),
    ("pgd_l2", dict(eps=2.5, steps=10)),
    ("apgd_ce-l2", dict(eps=2.5, steps=20, norm="L2")),
    ("ddn", dict(eps=2.5, steps=40)),
]


@pytest.mark.parametrize("name,kw", STRENGTH, ids=[s[0] for s in STRENGTH])
def test_attack_lowers_undefended_accuracy(name, kw, model, points):
    x, y, _ = points
    clean = _acc(model, x, y)
    assert clean >= 0.8
    adv = _acc(model, attacks.get(name.split("-")[0])(model, x, y, **kw), y)
    assert adv <= clean - 0.4, f"{name}: clean {clean:.2f}, adversarial {adv:.2f}"


def test_jsma_untargeted_lowers_accuracy(model, points):
    x, y, _ = points
    x, y = x[:12], y[:12]
    adv = _acc(model, attacks.get("jsma")(model, x, y, gamma=0.1, targeted=False), y)
    assert adv <= _acc(model, x, y) - 0.5


def test_attacks_work_on_log_probabilities_like_on_logits(model, points):
    """The ensemble outputs log-probs; CE and the CW margin give the same attack on both."""
    x, y, _ = points
    lp = LogProbs(model)
    for name, kw in [("pgd", dict(eps=0.1, random_start=False)), ("fgsm", dict(eps=0.1))]:
        a = attacks.get(name)(model, x[:16], y[:16], **kw)
        b = attacks.get(name)(lp, x[:16], y[:16], **kw)
        assert (a - b).abs().max() <= 1e-5
    kw = dict(c=10.0, kappa=0.1, steps=40, lr=0.1, stop_on_success=True)
    acc_logits = _acc(model, attacks.get("cw")(model, x[:24], y[:24], **kw), y[:24])
    acc_lp = _acc(model, attacks.get("cw")(lp, x[:24], y[:24], **kw), y[:24])
    assert acc_lp <= acc_logits + 0.15 and acc_lp <= _acc(model, x[:24], y[:24]) - 0.4


# ------------------------------------------------------------------------------ targeted
TARGETED = [
    ("pgd", dict(eps=0.3, steps=20, step_size=0.03)),
    ("bim", dict(eps=0.3, steps=20, step_size=0.03)),
    ("mim", dict(eps=0.3, steps=20, step_size=0.03)),
    ("apgd_ce", dict(eps=0.3, steps=20)),
    ("cw", dict(c=10.0, steps=80, lr=0.1)),
    ("ead", dict(c=10.0, steps=60, lr=0.1, binary_search_steps=1)),
]


@pytest.mark.parametrize("name,kw", TARGETED, ids=[t[0] for t in TARGETED])
def test_targeted_attacks_hit_their_target(name, kw, model, points):
    x, y, _ = points
    x, y = x[:16], y[:16]
    target = (y + 1 + torch.arange(16) % 9) % 10
    assert (target != y).all()
    out = attacks.get(name)(model, x, target, targeted=True, **kw)
    hit = _acc(model, out, target)
    assert hit >= 0.8, f"{name}: only {hit:.0%} reach their target"


def test_fgsm_targeted_raises_target_probability(model, points):
    x, y, _ = points
    target = (y + 3) % 10
    out = attacks.get("fgsm")(model, x, target, eps=0.05, targeted=True)
    with torch.no_grad():
        before = torch.log_softmax(model(x), 1).gather(1, target[:, None]).mean()
        after = torch.log_softmax(model(out), 1).gather(1, target[:, None]).mean()
    assert after > before + 0.5


def test_jsma_targeted_hits_target_and_changes_few_features(model, points):
    x, y, _ = points
    x, y = x[:8], y[:8]
    with torch.no_grad():  # the runner-up class: a reachable target (0 -> 1 often is not)
        target = model(x).scatter(1, y[:, None], float("-inf")).argmax(1)
    gamma = 0.15
    out = attacks.get("jsma")(model, x, target, gamma=gamma)
    assert _acc(model, out, target) >= 0.75
    changed = (out != x).flatten(1).sum(1)
    assert (changed <= 2 * int(gamma * 784 / 2)).all()


# ------------------------------------------------------------------------------ CW margin
def _masked_max_margin(z, y):
    """The bug of older libraries: max over (1 - onehot) * z, which is 0 on all-negative scores."""
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).to(z.dtype)
    return (onehot * z).sum(1) - ((1 - onehot) * z).max(1).values


def _margin_is_correct(margin_fn) -> bool:
    z = torch.log_softmax(torch.tensor([[2.0, 1.0, -1.0, 0.5], [0.0, 3.0, 1.0, -2.0]]), dim=1)
    y = torch.tensor([0, 1])
    expected = torch.stack([z[0, 0] - z[0, 1], z[1, 1] - z[1, 2]])  # by hand: best other class
    return bool(torch.allclose(margin_fn(z, y), expected, atol=1e-6))


def test_cw_margin_is_right_on_log_probabilities():
    assert _margin_is_correct(CW.margin)
    z = torch.log_softmax(torch.randn(64, 10), dim=1)  # all negative
    y = torch.randint(0, 10, (64,))
    brute = torch.stack([z[i, y[i]] - torch.cat([z[i, :y[i]], z[i, y[i] + 1:]]).max() for i in range(64)])
    assert torch.allclose(CW.margin(z, y), brute)


def test_cw_margin_test_fails_on_the_masked_max_bug():
    assert not _margin_is_correct(_masked_max_margin)


def test_cw_succeeds_on_a_log_probability_model_where_the_bug_would_stall(model, points, monkeypatch):
    x, y, _ = points
    x, y = x[:16], y[:16]
    lp = LogProbs(model)
    kw = dict(c=10.0, kappa=0.1, steps=40, lr=0.1, stop_on_success=True)
    good = _acc(model, CW.cw(lp, x, y, **kw), y)
    monkeypatch.setattr(CW, "margin", _masked_max_margin)
    bugged = _acc(model, CW.cw(lp, x, y, **kw), y)
    assert good <= _acc(model, x, y) - 0.4
    assert bugged >= good + 0.3  # with the bug CW stalls on log-probabilities


def test_cw_zero_confidence_success_rule():
    z = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.9, 0.0]])
    y = torch.tensor([0, 0])
    assert CW.cw_success(z, y, 0.0, False).tolist() == [False, True]
    assert CW.cw_success(z, y, 0.8, False).tolist() == [False, False]


# ------------------------------------------------------------------------------ MIM, PGD, APGD
def test_mim_follows_the_momentum_formula_on_a_linear_model():
    """g_{i+1} = mu g_i + grad / ||grad||_1, x_{i+1} = clip(x_i + a sign(g_{i+1})), Sec. 4.1."""
    m = linear_model()
    g0 = torch.Generator().manual_seed(1)
    x = torch.rand(5, 2, 3, 3, generator=g0) * 0.6 + 0.2
    y = torch.randint(0, 4, (5,), generator=g0)
    eps, a, mu = 0.3, 0.07, 0.5
    xa, g = x.clone(), torch.zeros_like(x)
    for _ in range(3):
        xr = xa.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(m(xr), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xr)
        g = mu * g + grad / grad.abs().sum((1, 2, 3), keepdim=True)
        xa = torch.min(torch.max(xa + a * g.sign(), x - eps), x + eps).clamp(0, 1)
    out = attacks.get("mim")(m, x, y, eps=eps, steps=3, step_size=a, decay=mu)
    assert torch.allclose(out, xa, atol=1e-6)
    # with mu = 0 MIM is BIM
    assert torch.allclose(attacks.get("mim")(m, x, y, eps=eps, steps=3, step_size=a, decay=0.0),
                          attacks.get("bim")(m, x, y, eps=eps, steps=3, step_size=a), atol=1e-6)


def test_bim_is_pgd_without_random_start_and_default_steps():
    m = linear_model()
    x = torch.rand(4, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    a = attacks.get("bim")(m, x, y, eps=0.2, steps=5)
    b = attacks.get("pgd")(m, x, y, eps=0.2, steps=5, step_size=0.04, random_start=False)
    assert torch.equal(a, b)
    # the FGSM step is eps * sign(grad) by hand on the linear model
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(m(xr), y, reduction="sum"), xr)
    assert torch.allclose(attacks.get("fgsm")(m, x, y, eps=0.1), (x + 0.1 * g.sign()).clamp(0, 1))


def test_pgd_is_safe_inside_training(model, points):
    """No parameter .grad, train/eval flag untouched, works under no_grad, reproducible."""
    x, y, _ = points
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        a = attacks.get("pgd")(model, x[:8], y[:8], eps=0.1, steps=3,
                               generator=torch.Generator().manual_seed(0))
    b = attacks.get("pgd")(model, x[:8], y[:8], eps=0.1, steps=3,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_pgd_restarts_keep_a_successful_restart(model, points):
    x, y, _ = points
    one = _acc(model, attacks.get("pgd")(model, x, y, eps=0.08, steps=3,
                                         generator=torch.Generator().manual_seed(0)), y)
    many = _acc(model, attacks.get("pgd")(model, x, y, eps=0.08, steps=3, restarts=4,
                                          generator=torch.Generator().manual_seed(0)), y)
    assert many <= one + 1e-9


def test_apgd_checkpoints_match_croce_hein():
    assert APGD.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_loss_by_hand_and_invariances():
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.0, 0.0]])
    y = torch.tensor([0, 0])
    # row 0: -(3 - 1) / (3 - 0); row 1: -(0.5 - 2) / (2 - 0.5)
    assert torch.allclose(APGD.dlr_loss(z, y), torch.tensor([-2.0 / 3.0, 1.5 / 1.5]))
    assert torch.allclose(APGD.dlr_loss(3 * z + 7, y), APGD.dlr_loss(z, y), atol=1e-6)
    assert torch.allclose(APGD.dlr_loss(torch.log_softmax(z, 1), y), APGD.dlr_loss(z, y), atol=1e-6)


def test_ila_raises_the_projection_on_the_guide(model, points):
    from trs_lib.attacks import ila as ILA
    x, y, _ = points
    x, y = x[:16], y[:16]
    layer = dict(model.named_modules())[ILA.default_layer(model)]
    guide = attacks.get("bim")(model, x, y, eps=0.1)
    out = ILA.ila(model, x, y, eps=0.1, x_guide=guide)
    with torch.no_grad():
        f0, fg, fo = (ILA._features(model, layer, t) for t in (x, guide, out))
    d = fg - f0
    proj_guide = ((fg - f0) * d).sum(1) / d.norm(dim=1)
    proj_out = ((fo - f0) * d).sum(1) / d.norm(dim=1)
    assert (proj_out >= proj_guide - 1e-4).float().mean() >= 0.9
    assert (out - x).abs().max() <= 0.1 + 1e-6


# ------------------------------------------------------------------------------ validation
BAD = [
    ("x dtype", dict(x=lambda x: (x * 255).long()), "floating-point"),
    ("x shape", dict(x=lambda x: x[0, 0, 0]), "shape"),
    ("x range", dict(x=lambda x: x * 2 - 0.5), r"\[0, 1\]"),
    ("x nan", dict(x=lambda x: x.index_fill(0, torch.tensor([0]), float("nan"))), "NaN"),
    ("y length", dict(y=lambda y: y[:-1]), "len"),
    ("y dtype", dict(y=lambda y: y.float()), "integer"),
    ("y shape", dict(y=lambda y: y[:, None]), "shape"),
]


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("case,change,match", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_value_error(name, case, change, match):
    m = linear_model(num_classes=10)
    x = torch.rand(4, 2, 3, 3)
    y = torch.tensor([0, 1, 2, 3])
    x = change.get("x", lambda t: t)(x)
    y = change.get("y", lambda t: t)(y)
    kw = {"cw": dict(c=1.0), "ead": dict(c=1.0), "jsma": {}, "ddn": {}}.get(name, dict(eps=0.1))
    with pytest.raises(ValueError, match=match):
        attacks.get(name)(m, x, y, **kw)


BAD_PARAMS = [
    ("pgd", dict(eps=-0.1), "eps"), ("pgd", dict(eps=1.5), "eps"), ("pgd", dict(eps=float("nan")), "eps"),
    ("pgd", dict(eps=0.1, steps=-1), "steps"), ("pgd", dict(eps=0.1, steps=2.5), "steps"),
    ("pgd", dict(eps=0.1, restarts=0), "restarts"), ("pgd", dict(eps=0.1, step_size=-1.0), "step_size"),
    ("pgd", dict(eps=0.1, targeted="yes"), "targeted"), ("pgd", dict(eps="0.1"), "eps"),
    ("fgsm", dict(eps=2.0), "eps"), ("bim", dict(eps=0.1, steps=0), "steps"),
    ("mim", dict(eps=0.1, decay=-1.0), "decay"), ("mim", dict(eps=0.1, steps=10**9), "steps"),
    ("cw", dict(c=-1.0), "c="), ("cw", dict(c=0.0), "c="), ("cw", dict(c=1e12), "c="),
    ("cw", dict(c=1.0, kappa=-0.5), "kappa"), ("cw", dict(c=1.0, steps=0), "steps"),
    ("cw", dict(c=1.0, lr=0.0), "lr"), ("cw", dict(c=1.0, binary_search_steps=0), "binary_search_steps"),
    ("ead", dict(c=1.0, beta=-1.0), "beta"), ("ead", dict(c=1.0, decision_rule="L2"), "decision_rule"),
    ("jsma", dict(gamma=1.5), "gamma"), ("jsma", dict(theta=0.0), "theta"), ("jsma", dict(theta=2.0), "theta"),
    ("ila", dict(eps=0.1, layer="nope"), "layer"), ("ila", dict(eps=-0.1), "eps"),
    ("apgd_ce", dict(eps=0.1, steps=0), "steps"), ("apgd_ce", dict(eps=0.1, rho=0.0), "rho"),
    ("apgd_dlr", dict(eps=0.1, restarts=0), "restarts"),
    ("apgd_ce", dict(eps=0.1, norm="L1"), "unknown norm 'L1'.*Linf.*L2"), ("apgd_ce", dict(eps=1.5), "eps=1.5"),
    ("apgd_ce", dict(eps=float("inf"), norm="L2"), "eps"), ("apgd_t", dict(eps=0.1, n_targets=10), "n_targets"),
    ("apgd_t", dict(eps=0.1, n_targets=0), "n_targets"), ("apgd_t", dict(eps=-0.1), "eps"),
    ("pgd_l2", dict(eps=-1.0), "eps"), ("pgd_l2", dict(eps=float("nan")), "eps"),
    ("square", dict(eps=0.1, n_queries=0), "n_queries"), ("square", dict(eps=0.1, norm="linf"), "norm"),
    ("square", dict(eps=0.1, p_init=0.0), "p_init"), ("reweigh", dict(eps=0.1, scales=(2.0,)), "scales"),
    ("reweigh", dict(eps=0.1, scales=()), "scales"), ("reweigh", dict(eps=0.1, output="probs"), "output"),
    ("reweigh", dict(eps=0.1, loss="mse"), "loss"), ("ddn", dict(gamma=1.0), "gamma"),
    ("ddn", dict(eps=-1.0), "eps"), ("ddn", dict(steps=0), "steps"),
]


@pytest.mark.parametrize("name,kw,match", BAD_PARAMS, ids=[f"{b[0]}-{sorted(b[1])[-1]}" for b in BAD_PARAMS])
def test_bad_parameters_raise_value_error_naming_them(name, kw, match, model):
    x, y = test_points(2)
    with pytest.raises(ValueError, match=match):
        attacks.get(name)(model, x, y, **kw)


def test_dlr_needs_three_classes_and_no_target():
    m = linear_model(num_classes=2)
    x, y = torch.rand(2, 2, 3, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="3 classes"):
        attacks.get("apgd_dlr")(m, x, y, eps=0.1, steps=2)
    with pytest.raises(ValueError, match="targeted"):
        APGD.apgd(m, x, y, eps=0.1, loss="dlr", targeted=True)


def test_bad_target_class_is_refused_before_work():
    m = linear_model(num_classes=10)
    x, y = torch.rand(2, 2, 3, 3), torch.tensor([0, 12])
    with pytest.raises(ValueError, match="num_classes=10"):
        attacks.get("apgd_t")(m, x, y, eps=0.1, steps=2)


# ------------------------------------------------------------------------------ new attacks
def test_targeted_dlr_by_hand():
    from trs_lib.attacks.apgd_t import dlr_targeted_loss
    z = torch.tensor([[4.0, 2.0, 1.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(4 - 1) / (4 - (1 + 0) / 2)
    assert dlr_targeted_loss(z, y, t).item() == pytest.approx(-3.0 / 3.5)
    assert torch.allclose(dlr_targeted_loss(2 * z + 5, y, t), dlr_targeted_loss(z, y, t))


def test_square_schedule_and_bump():
    from trs_lib.attacks import square as SQ
    assert SQ.p_selection(0.8, 0, 10000) == 0.8 and SQ.p_selection(0.8, 11, 10000) == 0.4
    assert SQ.p_selection(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert SQ.p_selection(0.8, 90, 100) == pytest.approx(0.8 / 512)  # rescaled to the budget
    d = SQ.pseudo_gaussian(5)
    assert d.pow(2).sum().item() == pytest.approx(1.0) and d[:2].sum() > 0 > d[2:].sum()


def test_square_never_differentiates(model, points):
    """Square works on a model whose graph is cut (no gradient exists at all)."""
    x, y, _ = points

    class Cut(torch.nn.Module):
        def forward(self, inp):
            with torch.no_grad():
                return model(inp)

    out = attacks.get("square")(Cut(), x, y, eps=0.3, n_queries=300, generator=torch.Generator().manual_seed(0))
    assert _acc(model, out, y) <= _acc(model, x, y) - 0.3


def test_reweighting_focuses_on_members_still_correct():
    from trs_lib.attacks.reweigh import Reweighted
    from trs_lib.ensemble import Ensemble

    class Fixed(torch.nn.Module):
        def __init__(self, z):
            super().__init__()
            self.z = torch.tensor(z)

        def forward(self, x):
            return self.z.expand(x.shape[0], -1) + 0 * x.flatten(1)[:, :1]

    right, wrong = [3.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]
    ens = Ensemble([Fixed(right), Fixed(wrong)])
    x, y = torch.zeros(1, 1, 2, 2), torch.tensor([0])
    out = Reweighted(ens, y, scale=1.0, output="logits")(x)
    assert torch.allclose(out[:, :4], torch.tensor([right]))          # only the correct member
    assert torch.allclose(out[:, 4:], ens(x))                         # success judged on the ensemble
    half = Reweighted(ens, y, scale=0.0, output="logits")(x)[:, :4]
    assert torch.allclose(half, (torch.tensor([right]) + torch.tensor([wrong])) / 2)
    lp = Reweighted(ens, y, scale=0.0, output="softmax")(x)[:, :4]
    assert torch.allclose(lp, ens(x), atol=1e-6)                       # s = 0: the ensemble's output


def test_ddn_finds_smaller_perturbations_than_its_budget(model, points):
    x, y, ok = points
    x, y = x[ok][:12], y[ok][:12]
    out = attacks.get("ddn")(model, x, y, steps=60)
    fooled = model(out).argmax(1) != y
    assert fooled.float().mean() >= 0.9
    pgd = attacks.get("pgd_l2")(model, x, y, eps=3.0, steps=20, generator=torch.Generator().manual_seed(0))
    both = fooled & (model(pgd).argmax(1) != y)
    assert ((out - x).flatten(1).norm(dim=1)[both] <= (pgd - x).flatten(1).norm(dim=1)[both] + 1e-4).all()


def test_ila_starts_at_x_and_best_of_is_no_weaker():
    from trs_lib import member_transfer as MT
    from trs_lib.attacks.testing import quick_ensemble
    ens = quick_ensemble()
    x, y = test_points(24)
    r = MT.ila_table(ens, x, y, eps=0.15, steps=5, progress=False)
    assert r["layer"] == "conv2"
    for k, v in r["accuracy_by_model_best"].items():
        assert v <= min(r["accuracy_by_model"][k], r["accuracy_by_model_guide"][k]) + 1e-9
    with pytest.raises(ValueError, match="start"):
        attacks.get("ila")(ens.member(0), x[:2], y[:2], eps=0.1, start="middle")
