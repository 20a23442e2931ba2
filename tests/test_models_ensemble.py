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


# --- the TRS authors' ResNet-20 ------------------------------------------------------------------

class _AuthorsBlock(torch.nn.Module):
    """Their BasicBlock, transcribed in plain torch: conv-BN-ReLU-conv-BN, plus the shortcut
    (``downsample``: 1x1 conv + BN where given, else the identity), then ReLU."""

    def __init__(self, cin, cout, stride, padded_shortcut=False):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        self.padded = padded_shortcut and (stride != 1 or cin != cout)
        self.pad = cout - cin
        if (stride != 1 or cin != cout) and not padded_shortcut:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        F = torch.nn.functional
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            x = self.downsample(x)
        elif self.padded:   # the mutation: option A's zero-padded, subsampled identity
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + x)


class _AuthorsResNet20(torch.nn.Module):
    """Their ``Sequential(NormalizeLayer(mean, std), ResNet(depth=20))``, transcribed. Their
    NormalizeLayer holds the constants as float32 tensors (``torch.tensor(list)``), so they are
    rounded to float32 here too, then computed with in float64."""

    def __init__(self, in_channels, mean, std, padded_shortcut=False):
        super().__init__()
        self.mean = torch.tensor(mean, dtype=torch.float32).double().view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).double().view(1, -1, 1, 1)
        self.conv1 = torch.nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        cin, layers = 16, []
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(torch.nn.Sequential(*[
                _AuthorsBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, padded_shortcut)
                for i in range(3)]))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        F = torch.nn.functional
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.avg_pool2d(x, x.shape[-1])    # their AvgPool2d(8) on 32x32, AvgPool2d(7) on 28x28
        return self.fc(x.flatten(1))


_THEIR_NORM = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
               "mnist5k": ((0.5,), (0.5,))}
_OUR_NORM = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
             "mnist5k": ((0.1307,), (0.3081,))}


def _authors_pair(dataset, **mutation):
    """Our registry's model with random weights and BN statistics, and the transcription loaded
    with the same state dict (names equal; our normalisation buffers dropped), both float64 eval."""
    torch.manual_seed(3)
    ours = models.build("resnet20_authors", dataset).double()
    for m in ours.modules():   # non-trivial BN affine and running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    channels = models.info(dataset).channels
    mean, std = mutation.pop("norm", _THEIR_NORM)[dataset]
    theirs = _AuthorsResNet20(channels, mean, std, **mutation).double()
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith("normalize.")}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    return ours.eval(), theirs.eval(), missing, unexpected


@pytest.mark.parametrize("dataset,shape", [("cifar10", (3, 32, 32)), ("mnist5k", (1, 28, 28))])
def test_resnet20_authors_equals_transcription_of_their_network(dataset, shape):
    ours, theirs, missing, unexpected = _authors_pair(dataset)
    assert not missing and not unexpected                     # same module structure, same names
    x = torch.rand(5, *shape, dtype=torch.float64)
    a, b = ours(x), theirs(x)
    assert a.abs().max() > 0.1
    assert torch.allclose(a, b, rtol=0, atol=1e-10)
    # the option B shortcuts are where the shape changes, nowhere else
    assert sorted({k.rsplit(".downsample", 1)[0] for k in ours.state_dict() if "downsample" in k}) \
        == ["layer2.0", "layer3.0"]


@pytest.mark.parametrize("dataset,shape", [("cifar10", (3, 32, 32)), ("mnist5k", (1, 28, 28))])
@pytest.mark.parametrize("mutation", ["padded_shortcut", "our_std"])
def test_resnet20_authors_transcription_detects_mutations(dataset, shape, mutation):
    """The comparison can fail: the transcription with option A's padded identity shortcut, or
    with our data set normalisation, differs from the registry's model by far more than 1e-10."""
    kw = {"padded_shortcut": True} if mutation == "padded_shortcut" else {"norm": _OUR_NORM}
    ours, theirs, missing, unexpected = _authors_pair(dataset, **kw)
    if mutation == "padded_shortcut":
        assert {k.split(".downsample")[0] for k in unexpected} == {"layer2.0", "layer3.0"}
    x = torch.rand(5, *shape, dtype=torch.float64)
    assert (ours(x) - theirs(x)).abs().max() > 0.1


def test_resnet20_authors_in_registry_and_ensemble():
    from trs_lib.recipes import make_config
    assert "resnet20_authors" in models.ARCHS and "resnet20_authors" in models.BATCHNORM_ARCHS
    make_config("mnist5k", "trs", arch="resnet20_authors", variant="published")
    m = models.build("resnet20_authors", "cifar10")
    assert models.count_parameters(m) == models.count_parameters(models.build("resnet20", "cifar10")) \
        + (16 * 32 + 32 * 64) + 2 * (32 + 64)                # the 1x1 convs and their BN affines
    assert isinstance(m.layer2[0].downsample[1], models.BatchNorm2d)  # emulated DataParallel too
    w = m.layer2[0].conv1.weight                            # 16 -> 32 channels: He fan-out (their
    assert abs(float(w.detach().std()) / math.sqrt(2 / (9 * 32)) - 1) < 0.1   # init), not fan-in's sqrt(2/144)
    ens = build_ensemble("resnet20_authors", "mnist5k", 3, seed=0).eval()
    assert all(isinstance(mem, models.ResNet20Authors) for mem in ens.members)
    x = torch.rand(4, 1, 28, 28)
    assert ens.member_logits(x).shape == (3, 4, 10)
    assert torch.allclose(ens(x).exp().sum(-1), torch.ones(4), atol=1e-5)
    ens.train()(x)                                            # BatchNorm training mode runs too
