"""The TRS loss: hand-computed values, finite differences in float64, zero-gradient safety."""
import itertools

import pytest
import torch

from trs_lib import trs as T
from trs_lib.ensemble import Ensemble
from trs_lib.methods import get
from trs_lib.recipes import make_config
from trs_lib.methods.base import StepContext


def test_pairwise_cosine_by_hand():
    g = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, -2.0]]], dtype=torch.float64)  # (3, 1, 2)
    cos = T.pairwise_cosine(g)[:, 0]
    expected = [1 / 2 ** 0.5, 0.0, -1 / 2 ** 0.5]  # pairs (0,1), (0,2), (1,2)
    assert torch.allclose(cos, torch.tensor(expected, dtype=torch.float64), atol=1e-9)


def test_seed_regularizer_by_hand():
    g = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]], dtype=torch.float64)
    terms = T.seed_regularizer(g, lam=0.5)
    assert terms["similarity"].item() == pytest.approx(0.8, abs=1e-9)       # cos = 8 / (5 * 2)
    assert terms["smoothness"].item() == pytest.approx(0.5 * (5 + 2), abs=1e-6)
    weighted = T.trs_regularizer(g, "seed", lam=0.5, c=2.0)
    assert weighted["similarity"].item() == pytest.approx(1.6, abs=1e-9)


def test_published_regularizer_by_hand():
    """The authors' scale: gradients of the batch-mean loss (per-example / B), Magnitude =
    2 mean_b ||h_b||^2, weights scale * coeff and scale * lamda."""
    g = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, -2.0], [0.0, 1.0]]], dtype=torch.float64)
    terms = T.trs_regularizer(g, "published", coeff=2.0, lamda=0.5, scale=5.0)
    assert terms["similarity"].item() == pytest.approx(5 * 2.0 * (0.8 + 0.0) / 2, abs=1e-12)
    # member 0: h = g / 2, Magnitude = 2 * mean(25/4, 1/4) = 6.5; member 1: 2 * mean(1, 1/4) = 1.25
    assert terms["smoothness"].item() == pytest.approx(5 * 0.5 * (6.5 + 1.25) / 2, abs=1e-12)


def test_published_loss_at_batch_128_is_the_authors_scale_not_8192_times_it():
    g = torch.randn(3, 128, 10, dtype=torch.float64)
    s = T.trs_regularizer(g, "published", coeff=1.0, lamda=1.0, scale=1.0)["smoothness"]
    assert s.item() == pytest.approx((g * g).sum(-1).mean().item() * 2 / 128 ** 2, rel=1e-12)


def test_zero_gradient_gives_no_nan():
    g = torch.zeros(2, 3, 5, dtype=torch.float64, requires_grad=True)
    terms = T.trs_regularizer(g, "seed", lam=0.1, c=1.0)
    total = sum(terms.values())
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(g.grad).all()


def test_unknown_variant_refused():
    with pytest.raises(ValueError, match="valid names"):
        T.trs_regularizer(torch.ones(2, 1, 2), "literal")


class _Tiny(torch.nn.Module):
    """A smooth two-layer model (tanh) small enough for finite differences in float64."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.l1 = torch.nn.Linear(4, 3)
        self.l2 = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x.flatten(1))))


def _loss(ens, x, y, variant):
    variant, faithful = variant.split("_")[0], variant.endswith("_faithful")
    cfg = make_config("mnist5k", "trs", lam=0.3, c=1.5, variant=variant, faithful=faithful, init_eps=0.0,
                      adv_eps=0.0)  # smoothness inputs = clean inputs: deterministic
    ctx = StepContext(epoch=0, epochs=1)
    return get("trs").loss(ens, x, y, cfg, ctx)[0]


@pytest.mark.parametrize("variant", ["seed", "published", "published_faithful"])
def test_trs_loss_parameter_gradients_match_finite_differences(variant):
    ens = Ensemble([_Tiny(s) for s in range(3)]).double()
    x = torch.rand(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    loss = _loss(ens, x, y, variant)
    grads = torch.autograd.grad(loss, list(ens.parameters()))
    h = 1e-6
    for p, g in itertools.islice(zip(ens.parameters(), grads), None):
        flat, gflat = p.data.view(-1), g.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
            old = flat[i].item()
            flat[i] = old + h
            up = _loss(ens, x, y, variant).item()
            flat[i] = old - h
            down = _loss(ens, x, y, variant).item()
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert gflat[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_input_gradients_are_per_example_and_per_member():
    ens = Ensemble([_Tiny(s) for s in range(2)]).double()
    x = torch.rand(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    ce, g = T.input_gradients(ens.member_logits, x, y, create_graph=False)
    assert g.shape == (2, 3, 4)
    for k in range(2):
        for b in range(3):
            xb = x[b:b + 1].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(ens.member(k)(xb), y[b:b + 1])
            (ref,) = torch.autograd.grad(loss, xb)
            assert torch.allclose(g[k, b], ref[0], atol=1e-12)


def test_faithful_is_a_mode_of_the_published_variant_only():
    with pytest.raises(ValueError, match="faithful=True is a mode of variant 'published'"):
        make_config("mnist5k", "trs", variant="seed", faithful=True)
    with pytest.raises(ValueError, match="plus_adv must be True or False"):
        make_config("mnist5k", "trs", variant="published", plus_adv=1)


def test_recipes_carry_the_authors_values():
    mnist = make_config("mnist5k", "trs", variant="published")
    assert (mnist.coeff, mnist.lamda, mnist.scale, mnist.init_eps, mnist.adv_eps, mnist.plus_adv) \
        == (2.0, 2.0, 5.0, 0.1, 0.2, True)
    cifar = make_config("cifar10", "trs", variant="published")
    assert (cifar.coeff, cifar.lamda, cifar.scale, cifar.init_eps, cifar.adv_eps, cifar.plus_adv) \
        == (8.0, 0.5, 5.0, 0.01, 0.03, True)
