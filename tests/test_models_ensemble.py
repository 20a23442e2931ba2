"""Models and the ensemble: shapes, parameter counts, the paper's combination rule."""
import math

import pytest
import torch

from trs_lib import models
from trs_lib.ensemble import Ensemble, build_ensemble, combine_logits


def test_resnet20_matches_he_et_al():
    m = models.build("resnet20", "cifar10")
    n = models.count_parameters(m)
    assert 0.26e6 < n < 0.28e6  # He et al. 2016, Table 6: 0.27 M
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 19  # 19 conv layers + 1 fc = 20 weighted layers
    assert [c.out_channels for c in convs[1:]] == [16] * 6 + [32] * 6 + [64] * 6
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch,dataset,shape", [("resnet20", "mnist5k", (1, 28, 28)),
                                                ("small_cnn", "mnist5k", (1, 28, 28)),
                                                ("small_cnn", "cifar10", (3, 32, 32))])
def test_models_take_unit_range_inputs(arch, dataset, shape):
    m = models.build(arch, dataset).eval()
    x = torch.rand(3, *shape)
    assert m(x).shape == (3, 10)
    assert m.features(x).dim() == 2
    # normalisation is inside the model: shifting the buffer mean changes the output
    before = m(x)
    m.normalize.mean += 0.5
    assert not torch.allclose(before, m(x))


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="valid names"):
        models.build("vgg16")


@pytest.mark.parametrize("n", [2, 3, 5])
def test_ensemble_output_is_log_of_mean_softmax(n):
    ens = build_ensemble("small_cnn", "mnist5k", n, seed=1).eval()
    x = torch.rand(4, 1, 28, 28)
    logits = ens.member_logits(x)
    assert logits.shape == (n, 4, 10)
    expected = torch.log(torch.stack([torch.softmax(l, -1) for l in logits]).mean(0))
    assert torch.allclose(ens(x), expected, atol=1e-6)
    assert torch.allclose(ens(x).exp().sum(-1), torch.ones(4), atol=1e-5)
    assert torch.equal(ens.member(n - 1)(x), logits[n - 1])
    # members differ (seeded separately)
    assert not torch.allclose(logits[0], logits[1])


def test_weighted_combinations_by_hand():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # 2 members, 1 example, 2 classes
    p0 = torch.softmax(logits[0, 0], -1)
    p1 = torch.softmax(logits[1, 0], -1)
    w = torch.tensor([3.0, 1.0])
    got = combine_logits(logits, "weighted_softmax", w)[0]
    assert torch.allclose(got, torch.log(0.75 * p0 + 0.25 * p1))
    got = combine_logits(logits, "sum_logits", w)[0]
    assert torch.allclose(got, torch.log_softmax(torch.tensor([6.0, 1.0]), -1))
    got = combine_logits(logits, "mean_softmax")[0]
    assert torch.allclose(got, torch.log((p0 + p1) / 2))
    assert math.isclose(float(torch.logsumexp(got, 0)), 0.0, abs_tol=1e-6)


def test_bad_combination_is_refused():
    with pytest.raises(ValueError, match="valid names"):
        Ensemble([torch.nn.Linear(2, 2)], combine="vote")
    with pytest.raises(ValueError, match="non-negative"):
        combine_logits(torch.zeros(2, 1, 3), "weighted_softmax", torch.tensor([1.0, -1.0]))


def _textbook_small_cnn(m, x):
    """The small CNN in the textbook order (conv, ReLU, pool) and NCHW layout."""
    F = torch.nn.functional
    out = F.max_pool2d(F.relu(m.conv1(m.normalize(x))), 2)
    out = F.max_pool2d(F.relu(m.conv2(out)), 2)
    return m.fc2(F.relu(m.fc1(out.flatten(1))))


@pytest.mark.parametrize("cheap", [False, True])
def test_small_cnn_pool_first_equals_textbook_order(cheap):
    """The fast layer order (pool, then ReLU, channels_last) changes no number: outputs, input
    gradients and the parameter gradients of a double backward (TRS's) equal the textbook order's
    in float64 up to summation order (the layouts' convolutions add in different orders), with
    PyTorch's and with the cheap double-backward layers. Inputs include exact ties and
    all-negative windows, where a wrong gradient routing would differ by O(1), not O(1e-12)."""
    from trs_lib.double_backward import cheap_double_backward
    torch.manual_seed(0)
    m = models.build("small_cnn", "mnist5k").double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    x[:, :, :8, :8] = 0.0                     # flat patches: tied window maxima
    x[0] = x[0].round()                       # a binary digit: many ties everywhere

    def grads(forward):
        for p in m.parameters():
            p.grad = None
        xx = x.clone().requires_grad_(True)
        ctx = cheap_double_backward() if cheap else torch.enable_grad()
        with ctx:
            out = forward(xx)
        g, = torch.autograd.grad(out.logsumexp(1).sum(), xx, create_graph=True)
        (g.pow(2).sum() + out[:, 3].sum()).backward()
        return out.detach(), g.detach(), [p.grad.clone() for p in m.parameters()]

    o1, g1, p1 = grads(m)
    o2, g2, p2 = grads(lambda z: _textbook_small_cnn(m, z))
    assert torch.allclose(o1, o2, rtol=1e-12, atol=1e-14)
    assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-13)
    assert g1.abs().max() > 0
    for a, b in zip(p1, p2):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)
