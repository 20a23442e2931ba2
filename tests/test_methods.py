"""Baseline methods: each loss against a hand / numpy computation on tiny models, SAMME's weights
on a hand-made error pattern, and one epoch of the real trainer per method on mnist5k."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from trs_lib import checkpoint as ckpt
from trs_lib import methods
from trs_lib.attacks.pgd import pgd
from trs_lib.ensemble import Ensemble, build_ensemble
from trs_lib.methods import StepContext
from trs_lib.methods import adp as A
from trs_lib.methods import boosting as B
from trs_lib.methods import ckae as K
from trs_lib.methods import dverge as D
from trs_lib.methods import gal as G
from trs_lib.methods.adversarial import trs_at_loss
from trs_lib.methods.trs import trs_loss
from trs_lib.recipes import METHODS, make_config
from trs_lib.train import train

NEW = ("ckae", "adp", "gal", "dverge", "trs_at", "adaboost", "gradientboost")


# ---------------------------------------------------------------- tiny linear ensembles
class Tiny(nn.Module):
    """logits = W2 (W1 x): features W1 x are linear, so every gradient has a closed form."""

    def __init__(self, w1, w2):
        super().__init__()
        self.fc1 = nn.Linear(w1.shape[1], w1.shape[0], bias=False, dtype=torch.float64)
        self.fc2 = nn.Linear(w2.shape[1], w2.shape[0], bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.as_tensor(w1))
            self.fc2.weight.copy_(torch.as_tensor(w2))

    def features(self, x):
        return self.fc1(x.flatten(1))

    def forward(self, x):
        return self.fc2(self.features(x))


def tiny_ensemble(n=3, d=4, h=3, c=3, seed=0, combine="mean_softmax"):
    rng = np.random.default_rng(seed)
    ws = [(rng.normal(size=(h, d)), rng.normal(size=(c, h))) for _ in range(n)]
    return Ensemble([Tiny(w1, w2) for w1, w2 in ws], combine).double(), ws


def tiny_batch(b=5, d=4, c=3, seed=1):
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.uniform(size=(b, d))), torch.tensor(rng.integers(0, c, size=b))


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_ce(z, y):
    p = np_softmax(z)
    return -np.log(p[np.arange(len(y)), y])


def np_logits(ws, x):
    return [(w2 @ w1 @ x.T).T for w1, w2 in ws]


def cfg_for(method, **kw):
    return make_config("mnist5k", method, **kw)


def ctx(**kw):
    return StepContext(epoch=0, epochs=1, **kw)


# ---------------------------------------------------------------- registry
def test_registry_has_every_method_of_the_recipes():
    assert sorted(methods.REGISTRY) == sorted(METHODS)
    assert methods.get("adaboost").sequential and methods.get("adaboost").combine == "weighted_softmax"
    assert methods.get("gradientboost").sequential and methods.get("gradientboost").combine == "sum_logits"
    assert not any(methods.get(m).sequential for m in ("ckae", "adp", "gal", "dverge", "trs_at"))


def test_recipes_carry_the_papers_adp_and_gal_settings():
    cfg = make_config("mnist5k", "adp")
    assert (cfg.adp_alpha, cfg.adp_beta) == (2.0, 0.5)
    assert make_config("cifar10", "gal").gal_weight == 0.5


# ---------------------------------------------------------------- CKAE
def np_cka_hsic(x, y):
    """Kornblith et al.'s HSIC form with the centring matrix H (independent of the library's)."""
    n = len(x)
    hm = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ hm @ b @ hm)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_linear_cka_against_hsic_formula_and_invariances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    got = K.linear_cka(torch.tensor(x), torch.tensor(y)).item()
    assert got == pytest.approx(np_cka_hsic(x, y), rel=1e-9)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))  # orthogonal map, scale and shift: CKA = 1
    assert K.linear_cka(torch.tensor(x), torch.tensor(3 * x @ q + 2)).item() == pytest.approx(1, abs=1e-9)
    const = torch.ones(7, 3, dtype=torch.float64, requires_grad=True)
    val = K.linear_cka(torch.tensor(x), const)
    val.backward()
    assert val.item() == 0 and torch.isfinite(const.grad).all()


def test_ckae_loss_by_hand():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    loss, terms = K.ckae_loss(ens, x, y, cfg_for("ckae", ckae_weight=0.7), ctx())
    xn, yn = x.numpy(), y.numpy()
    ece = sum(np_ce(z, yn).mean() for z in np_logits(ws, xn))
    feats = [(w1 @ xn.T).T for w1, _ in ws]
    cka = np.mean([np_cka_hsic(feats[a], feats[b]) for a, b in ((0, 1), (0, 2), (1, 2))])
    assert terms["ce"].item() == pytest.approx(ece, rel=1e-9)
    assert loss.item() == pytest.approx(ece + 0.7 * cka, rel=1e-9)


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20"])
def test_features_and_logits_is_features_then_head(arch):
    ens = build_ensemble(arch, "mnist5k", 1, seed=0).eval()
    x = torch.rand(3, 1, 28, 28)
    h, logits = K.features_and_logits(ens.member(0), x)
    assert torch.allclose(h, ens.member(0).features(x), atol=1e-6)
    assert torch.allclose(logits, ens.member(0)(x), atol=1e-6)


# ---------------------------------------------------------------- ADP
def test_adp_terms_on_hand_made_predictions():
    # y = 0; non-maximal predictions (0.5, 0) and (0, 0.5): orthogonal after normalising.
    probs = torch.tensor([[[0.5, 0.5, 0.0]], [[0.5, 0.0, 0.5]]], dtype=torch.float64)
    y = torch.tensor([0])
    assert A.ensemble_entropy(probs).item() == pytest.approx(1.5 * math.log(2), abs=1e-12)
    # logits = log p (any shift per member gives the same p)
    diversity = A.log_ensemble_diversity(torch.log(probs) + 3.0, y).item()
    assert diversity == pytest.approx(2 * math.log(1 + 1e-6), abs=1e-12)
    same = torch.tensor([[[0.2, 0.3, 0.5]], [[0.6, 0.15, 0.25]]], dtype=torch.float64)  # parallel
    # M^T M = [[1, 1], [1, 1]] + 1e-6 I: det = 2e-6 + 1e-12
    diversity = A.log_ensemble_diversity(torch.log(same), y).item()
    assert diversity == pytest.approx(math.log(2e-6 + 1e-12), rel=1e-6)


def test_adp_diversity_stays_finite_for_a_saturated_member():
    # float32 softmax of member 0 underflows to (1, 0, 0): the probability form would give 0/0
    z = torch.tensor([[[200.0, 0.0, 0.0]], [[0.0, 1.0, 2.0]]], requires_grad=True)
    value = A.log_ensemble_diversity(z, torch.tensor([0]))
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    m = A.non_maximal_predictions(z, torch.tensor([0]))
    assert torch.allclose(m[0, 0], torch.tensor([2 ** -0.5, 2 ** -0.5]))   # (e^0, e^0) normalised


def test_adp_loss_against_numpy():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    loss, terms = A.adp_loss(ens, x, y, cfg_for("adp"), ctx())
    xn, yn = x.numpy(), y.numpy()
    z = np_logits(ws, xn)
    p = np.stack([np_softmax(zk) for zk in z])                    # (K, B, C)
    ece = sum(np_ce(zk, yn).mean() for zk in z)
    pm = p.mean(0)
    ent = -(pm * np.log(pm + 1e-20)).sum(-1).mean()
    logdets = []
    for b in range(len(yn)):
        m = np.delete(p[:, b, :], yn[b], axis=1).T                # (C-1, K)
        m = m / np.linalg.norm(m, axis=0, keepdims=True)
        logdets.append(np.log(np.linalg.det(m.T @ m + 1e-6 * np.eye(3))))
    expected = ece - 2.0 * ent - 0.5 * np.mean(logdets)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert terms["diversity_term"].item() == pytest.approx(-0.5 * np.mean(logdets), rel=1e-9)


# ---------------------------------------------------------------- GAL
def test_gradient_coherence_by_hand():
    g = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[3.0, 0.0]]], dtype=torch.float64)
    # cosines of pairs (0,1), (0,2), (1,2): 0, 1, 0
    assert G.gradient_coherence(g).item() == pytest.approx(math.log(2 + math.e), abs=1e-12)


def test_gal_loss_against_closed_form_gradients():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    loss, terms = G.gal_loss(ens, x, y, cfg_for("gal", gal_weight=0.3), ctx())
    xn, yn = x.numpy(), y.numpy()
    onehot = np.eye(3)[yn]
    grads, ece = [], 0.0
    for (w1, w2), z in zip(ws, np_logits(ws, xn)):
        ece += np_ce(z, yn).mean()
        grads.append((np_softmax(z) - onehot) @ (w2 @ w1))       # d CE_b / d x_b, (B, D)
    unit = [g / np.linalg.norm(g, axis=1, keepdims=True) for g in grads]
    cos = np.stack([(unit[a] * unit[b]).sum(1) for a, b in ((0, 1), (0, 2), (1, 2))])
    coherence = np.log(np.exp(cos).sum(0)).mean()
    assert loss.item() == pytest.approx(ece + 3 * 0.3 * coherence, rel=1e-9)
    assert terms["coherence"].item() == pytest.approx(3 * 0.3 * coherence, rel=1e-9)


# ---------------------------------------------------------------- DVERGE
def test_distill_one_step_by_hand_and_stays_in_the_ball():
    ens, ws = tiny_ensemble(n=1)
    member = ens.member(0)
    xs, _ = tiny_batch(seed=3)
    xt, _ = tiny_batch(seed=4)
    w1 = ws[0][0]
    z = D.distill(member.features, xs, xt, eps=0.05, steps=1, step_size=0.02)
    # d/dz ||W1 z - W1 x_t||^2 = 2 W1^T W1 (z - x_t); one signed step down, clipped to [0, 1]
    grad = (xs.numpy() - xt.numpy()) @ (w1.T @ w1).T
    expected = np.clip(xs.numpy() - 0.02 * np.sign(grad), 0, 1)
    assert np.allclose(z.numpy(), expected, atol=1e-12)
    z = D.distill(member.features, xs, xt, eps=0.05, steps=8, step_size=0.02)
    assert (z - xs).abs().max() <= 0.05 + 1e-12 and z.min() >= 0 and z.max() <= 1
    dist = lambda u: ((member.features(u) - member.features(xt)) ** 2).sum().item()
    assert dist(z) < dist(xs)
    assert torch.equal(D.distill(member.features, xs, xt, eps=0.0, steps=5, step_size=0.02), xs)


def test_dverge_loss_without_distillation_is_n_minus_1_times_ece():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    loss, _ = D.dverge_loss(ens, x, y, cfg_for("dverge", dverge_steps=0), ctx())
    ece = sum(np_ce(z, y.numpy()).mean() for z in np_logits(ws, x.numpy()))
    assert loss.item() == pytest.approx(2 * ece, rel=1e-9)


def test_dverge_loss_is_cross_entropy_of_other_members_distilled_inputs():
    ens, _ = tiny_ensemble()
    x, y = tiny_batch()
    cfg = cfg_for("dverge", dverge_eps=0.1, dverge_steps=3, dverge_step_size=0.03)
    loss, _ = D.dverge_loss(ens, x, y, cfg, ctx(generator=torch.Generator().manual_seed(5)))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(5))
    xd = [D.distill(m.features, x, x[perm], eps=0.1, steps=3, step_size=0.03) for m in ens.members]
    ce = torch.nn.functional.cross_entropy
    expected = sum(ce(ens.member(i)(xd[j]), y) for i in range(3) for j in range(3) if i != j)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    assert not torch.equal(xd[0], x)


# ---------------------------------------------------------------- TRS + AT
def test_trs_at_is_trs_plus_member_ce_on_pgd_examples():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    cfg0 = cfg_for("trs_at", at_eps=0.0)
    loss, terms = trs_at_loss(ens, x, y, cfg0, ctx())
    trs, _ = trs_loss(ens, x, y, cfg0, ctx())
    ece = sum(np_ce(z, y.numpy()).mean() for z in np_logits(ws, x.numpy()))
    assert loss.item() == pytest.approx(trs.item() + ece, rel=1e-9)     # eps = 0: x_adv = x

    cfg = cfg_for("trs_at", at_eps=0.1, at_steps=3, at_step_size=0.04)
    loss, terms = trs_at_loss(ens, x, y, cfg, ctx(generator=torch.Generator().manual_seed(2)))
    x_adv = pgd(ens, x, y, eps=0.1, steps=3, step_size=0.04, generator=torch.Generator().manual_seed(2))
    adv = sum(np_ce(z, y.numpy()).mean() for z in np_logits(ws, x_adv.numpy()))
    assert terms["adv_ce"].item() == pytest.approx(adv, rel=1e-9)
    assert loss.item() == pytest.approx(trs.item() + adv, rel=1e-9)
    assert adv > ece  # the attack raised the members' loss


# ---------------------------------------------------------------- AdaBoost (SAMME)
def test_samme_alpha_and_update_by_hand():
    assert B.samme_alpha(0.25, 10) == pytest.approx(math.log(3) + math.log(9))
    assert B.samme_alpha(0.9, 10) == pytest.approx(0.0, abs=1e-12)   # chance level: weight 0
    assert B.samme_alpha(0.0, 10) == pytest.approx(math.log(1e10 - 1) + math.log(9))  # clipped
    w = B.samme_update(torch.full((4,), 0.25), torch.tensor([1.0, 0, 0, 0]), math.log(27))
    assert torch.allclose(w, torch.tensor([27.0, 1, 1, 1]) / 30)


class Lookup(nn.Module):
    """A member that predicts ``table[i]`` for the input ``x = i`` (a hand-made error pattern)."""

    def __init__(self, table, num_classes):
        super().__init__()
        self.register_buffer("logits", 5.0 * torch.eye(num_classes)[torch.as_tensor(table)])
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * self.logits[x.view(-1).long()]


def test_adaboost_stages_follow_samme_on_a_hand_made_pattern():
    n, c = 10, 3
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    wrong = lambda idx: [(int(y[i]) + 1) % c if i in idx else int(y[i]) for i in range(n)]
    tables = [wrong({0, 1}), wrong({0, 2, 3}), wrong({4})]        # members' mistakes
    ens = Ensemble([Lookup(t, c) for t in tables], "weighted_softmax")
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    cfg, state = cfg_for("adaboost"), {}

    w = np.full(n, 1 / n)
    expected_alpha = []
    for k, t in enumerate(tables):                                 # SAMME by hand (numpy)
        miss = (np.array(t) != y.numpy()).astype(float)
        err = (w * miss).sum() / w.sum()
        alpha = np.log((1 - err) / err) + np.log(c - 1)
        expected_alpha.append(alpha)
        w = w * np.exp(alpha * miss)
        w = w / w.sum()

    for k in range(3):
        B.adaboost_begin_stage(ens, k, x, y, cfg, state)
        assert ens.weights[k + 1:].eq(0).all()                      # untrained members weigh 0
        out = ens(x)                                                # usable mid-way, zero weights
        assert torch.isfinite(out).all()
        B.adaboost_end_stage(ens, k, x, y, cfg, state)
        assert ens.weights[k].item() == pytest.approx(expected_alpha[k], rel=1e-6)
    assert ens.weights.tolist() == pytest.approx(expected_alpha, rel=1e-6)
    assert state[B.SAMPLE_WEIGHTS].numpy() == pytest.approx(w, rel=1e-5)
    assert expected_alpha[0] == pytest.approx(math.log(4) + math.log(2))   # err = 2/10


def test_untrained_members_weigh_zero_with_finite_outputs_and_input_gradients():
    ens, ws = tiny_ensemble(combine="weighted_softmax")
    ens.weights.copy_(torch.tensor([1.7, 0.0, 0.0]))
    x, y = tiny_batch()
    xg = x.clone().requires_grad_(True)
    out = ens(xg)
    expected = np.log(np_softmax(np_logits(ws, x.numpy())[0]))   # member 0 alone
    assert np.allclose(out.detach().numpy(), expected, atol=1e-12)
    (g,) = torch.autograd.grad(out[torch.arange(len(y)), y].sum(), xg)  # what attacks need
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_adaboost_worse_than_chance_member():
    y = torch.tensor([0, 1, 2, 0])
    x = torch.arange(4, dtype=torch.float32).view(4, 1)
    bad = [(int(v) + 1) % 3 for v in y]                               # always wrong
    ens = Ensemble([Lookup(bad, 3), Lookup(bad, 3)], "weighted_softmax")
    cfg, state = cfg_for("adaboost"), {}
    B.adaboost_begin_stage(ens, 0, x, y, cfg, state)
    with pytest.raises(ValueError, match="no better than chance"):
        B.adaboost_end_stage(ens, 0, x, y, cfg, state)
    ens.members[0] = Lookup(y.tolist(), 3)                            # perfect member 0
    B.adaboost_end_stage(ens, 0, x, y, cfg, state)
    assert math.isfinite(ens.weights[0].item()) and ens.weights[0].item() > 20
    before = state[B.SAMPLE_WEIGHTS].clone()
    B.adaboost_begin_stage(ens, 1, x, y, cfg, state)
    B.adaboost_end_stage(ens, 1, x, y, cfg, state)
    assert ens.weights[1].item() == 0 and torch.equal(state[B.SAMPLE_WEIGHTS], before)


def test_adaboost_loss_is_the_sample_weighted_ce():
    ens, ws = tiny_ensemble()
    x, y = tiny_batch()
    n = 8
    sw = torch.tensor([0.05, 0.1, 0.2, 0.05, 0.15, 0.25, 0.1, 0.1], dtype=torch.float64)
    idx = torch.tensor([6, 2, 0, 5, 1])
    loss, _ = B.adaboost_loss(ens, x, y, cfg_for("adaboost"),
                              ctx(stage=1, index=idx, state={B.SAMPLE_WEIGHTS: sw}))
    ce1 = np_ce(np_logits(ws, x.numpy())[1], y.numpy())
    assert loss.item() == pytest.approx((n * sw[idx].numpy() * ce1).mean(), rel=1e-9)


# ---------------------------------------------------------------- GradientBoost
def test_gradientboost_stage_loss_by_hand_and_earlier_members_frozen():
    ens, ws = tiny_ensemble(combine="sum_logits")
    x, y = tiny_batch()
    cfg = cfg_for("gradientboost", boost_shrinkage=0.3)
    B.gradientboost_begin_stage(ens, 0, x, y, cfg, {})
    assert ens.weights.tolist() == [1.0, 0.0, 0.0]
    B.gradientboost_begin_stage(ens, 1, x, y, cfg, {})
    assert ens.weights.tolist() == pytest.approx([1.0, 0.3, 0.0])
    loss, _ = B.gradientboost_loss(ens, x, y, cfg, ctx(stage=1))
    z = np_logits(ws, x.numpy())
    assert loss.item() == pytest.approx(np_ce(z[0] + 0.3 * z[1], y.numpy()).mean(), rel=1e-9)
    # the stage loss is the trained ensemble's own cross-entropy
    assert loss.item() == pytest.approx(-ens(x)[torch.arange(len(y)), y].mean().item(), rel=1e-9)
    loss.backward()
    assert all(p.grad is None for p in ens.member(0).parameters())
    assert all(p.grad is not None for p in ens.member(1).parameters())


# ---------------------------------------------------------------- one epoch in the trainer
@pytest.mark.parametrize("method", NEW)
def test_one_epoch_on_mnist5k(method, tmp_path):
    result = train("mnist5k", method, out_dir=tmp_path, progress=False, log=lambda *a: None,
                   epochs=1, train_subset=256, batch_size=64)
    hist = result.history
    seq = methods.get(method).sequential
    assert len(hist) == (3 if seq else 1)                          # one stage per member
    for row in hist:
        terms = {k: v for k, v in row.items() if k.startswith("train_")}
        assert terms and all(math.isfinite(v) for v in terms.values()), terms
        assert 0 <= row["test_acc_ensemble"] <= 1
    ens = result.ensemble
    logp = ens(torch.rand(4, 1, 28, 28, device=ens.weights.device))  # log-probabilities for all
    assert torch.allclose(logp.exp().sum(-1), torch.ones(4, device=logp.device), atol=1e-5)
    if method == "adaboost":
        assert (ens.weights > 0).all()
        _, tensors = ckpt.latest_checkpoint(tmp_path)                 # state is checkpointed
        sw = tensors[f"method.{B.SAMPLE_WEIGHTS}"]
        assert sw.shape == (256,) and sw.sum().item() == pytest.approx(1, abs=1e-5)
    if method == "gradientboost":
        assert ens.weights.tolist() == pytest.approx([1.0, 0.5, 0.5])


def test_adaboost_resumes_mid_run_to_the_same_ensemble(tmp_path):
    """Sample weights and member weights live in the checkpoint: a run resumed between stages
    ends where an uninterrupted one does."""
    import shutil
    kw = dict(progress=False, log=lambda *a: None, epochs=1, train_subset=128, batch_size=64,
              num_models=2)
    full = train("mnist5k", "adaboost", out_dir=tmp_path / "full", **kw)
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for name in ("record.json", "weights.safetensors", "weights.json", "ckpt-e0002.safetensors",
                 "ckpt-e0002.json"):
        (tmp_path / "cut" / name).unlink()
    logs = []
    resumed = train("mnist5k", "adaboost", out_dir=tmp_path / "cut", **{**kw, "log": logs.append})
    assert any("resuming" in m and "after epoch 1" in m for m in logs), logs   # stage 2 only
    assert resumed.ensemble.weights.tolist() == full.ensemble.weights.tolist()
    for a, b in zip(full.ensemble.state_dict().values(), resumed.ensemble.state_dict().values()):
        assert torch.equal(a, b)
