"""Published TRS against the authors' own step (issue 11).

``official_pgd`` and ``official_trs_step`` are transcriptions of ``PGD`` and of one iteration of
``TRS_Trainer``'s loop in the authors' ``train/Empirical/trainer.py``, with ``Cosine`` and
``Magnitude`` of ``utils/Empirical/utils_ensemble.py`` and ``Ensemble`` of
``models/ensemble.py`` (AI-secure/Transferability-Reduced-Smooth-Ensemble), written here line by
line from their code. Changes, none of which touches a number: the PGD's random start is passed
in (``noise``, theirs ``torch.FloatTensor(inputs.shape).uniform_(-eps, eps)`` moved to the GPU), so both
sides start from the same point; the meters, logging and device moves are left out; the optimiser
step is left to the caller, so the parameter gradients can be compared.

Checked, float64, batch 16, 3 members: our ``faithful=True`` step (``trs_lib.methods.get("trs")``)
gives the same loss (1e-10 relative), the same parameter gradients (1e-9) and the same BatchNorm
running statistics after the step (1e-10); the fast published loss equals theirs on the same
smoothness inputs.
"""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.autograd as autograd
import torch.nn as nn
import torch.nn.functional as F

from trs_lib import models, trs as T
from trs_lib.ensemble import Ensemble
from trs_lib.methods import StepContext, get
from trs_lib.recipes import make_config

F64 = torch.float64
BATCH = 16


# ------------------------------------------------------------------ the authors' code, transcribed
def Cosine(g1, g2):
    return torch.abs(F.cosine_similarity(g1, g2)).mean()


def Magnitude(g1):
    return (torch.sum(g1 ** 2, 1)).mean() * 2


class OfficialEnsemble(nn.Module):
    def __init__(self, models):
        super().__init__()
        self.models = models

    def forward(self, x):
        if len(self.models) > 1:
            outputs = 0
            for model in self.models:
                outputs += F.softmax(model(x), dim=-1)
            output = outputs / len(self.models)
            output = torch.clamp(output, min=1e-40)
            return torch.log(output)
        return self.models[0](x)


def official_pgd(models, inputs, labels, eps, noise):
    steps = 6
    alpha = eps / 3.

    adv = inputs.detach() + noise          # theirs: + torch.FloatTensor(...).uniform_(-eps, eps)
    adv = torch.clamp(adv, 0, 1)
    criterion = nn.CrossEntropyLoss()

    adv.requires_grad = True
    for _ in range(steps):
        grad_loss = 0
        for i, m in enumerate(models):
            loss = criterion(m(adv), labels)
            grad = autograd.grad(loss, adv, create_graph=True)[0]
            grad = grad.flatten(start_dim=1)
            grad_loss += Magnitude(grad)

        grad_loss /= 3
        grad_loss.backward()
        sign_grad = adv.grad.data.sign()
        with torch.no_grad():
            adv.data = adv.data + alpha * sign_grad
            adv.data = torch.max(torch.min(adv.data, inputs + eps), inputs - eps)
            adv.data = torch.clamp(adv.data, 0., 1.)

    adv.grad = None
    return adv.detach()


def official_trs_step(args, models, inputs, targets, epoch, optimizer, noise, adv_inputs=None):
    """One iteration of ``TRS_Trainer``'s loop up to ``loss.backward()``; returns the loss.
    ``adv_inputs`` (tests only) replaces the PGD's result, to compare losses at given inputs."""
    criterion = nn.CrossEntropyLoss()
    for i in range(args.num_models):
        models[i].train()

    inputs = inputs.clone()
    inputs.requires_grad = True
    grads = []
    loss_std = 0
    for j in range(args.num_models):
        logits = models[j](inputs)
        loss = criterion(logits, targets)
        grad = autograd.grad(loss, inputs, create_graph=True)[0]
        grad = grad.flatten(start_dim=1)
        grads.append(grad)
        loss_std += loss

    cos_loss, smooth_loss = 0, 0

    cos01 = Cosine(grads[0], grads[1])
    cos02 = Cosine(grads[0], grads[2])
    cos12 = Cosine(grads[1], grads[2])

    cos_loss = (cos01 + cos02 + cos12) / 3.

    N = inputs.shape[0] // 2
    cureps = (args.adv_eps - args.init_eps) * epoch / args.epochs + args.init_eps
    clean_inputs = inputs[:N].detach()
    adv_inputs_ = official_pgd(models, inputs[N:], targets[N:], cureps, noise).detach()
    if adv_inputs is not None:
        adv_inputs_ = adv_inputs

    adv_x = torch.cat([clean_inputs, adv_inputs_])

    adv_x.requires_grad = True

    if (args.plus_adv):
        for j in range(args.num_models):
            outputs = models[j](adv_x)
            loss = criterion(outputs, targets)
            grad = autograd.grad(loss, adv_x, create_graph=True)[0]
            grad = grad.flatten(start_dim=1)
            smooth_loss += Magnitude(grad)

    else:
        for j in range(args.num_models):
            outputs = models[j](inputs)
            loss = criterion(outputs, targets)
            grad = autograd.grad(loss, inputs, create_graph=True)[0]
            grad = grad.flatten(start_dim=1)
            smooth_loss += Magnitude(grad)

    smooth_loss /= 3

    loss = loss_std + args.scale * (args.coeff * cos_loss + args.lamda * smooth_loss)

    ensemble = OfficialEnsemble(models)
    logits = ensemble(inputs)          # theirs: for the logged accuracy

    optimizer.zero_grad()
    loss.backward()
    return loss.detach()


class EmulatedDataParallel(nn.Module):
    """``nn.DataParallel(module)`` over ``devices`` GPUs, as its forward computes, on one device:
    ``scatter`` (``torch.chunk`` along the batch), a replica per chunk (the first shares the
    module's parameters and buffers; the others share its parameters, as autograd-connected
    broadcasts, and get copies of its buffers, dropped after the forward), ``gather`` (cat)."""

    def __init__(self, module, devices):
        super().__init__()
        self.module, self.devices = module, devices

    def forward(self, x):
        first, *rest = x.chunk(self.devices, 0)
        params = dict(self.module.named_parameters())
        out = [self.module(first)]
        for c in rest:
            buffers = {n: b.clone() for n, b in self.module.named_buffers()}
            out.append(torch.func.functional_call(self.module, {**params, **buffers}, (c,)))
        return torch.cat(out, 0)


# ------------------------------------------------------------------ the comparison
def _members(arch, seed=0):
    out = []
    for k in range(3):
        torch.manual_seed(seed * 1000 + k)
        if arch == "resnet20":        # BatchNorm; global pooling, so 8x8 inputs keep it fast
            out.append(models.build("resnet20", "mnist").to(F64))
        else:                         # no BatchNorm: the per-example path of trs_loss
            out.append(models.SmallCNN(1, 10, size=8, width=4).to(F64))
    return out


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, 1, 8, 8, generator=g, dtype=F64)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    return x, y


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _assert_same_step(ours, theirs, loss_ours, loss_theirs, buffers=True):
    """Our step equals theirs: the loss within 1e-10 relative, every parameter gradient within
    1e-9, and (``buffers``) every BatchNorm running statistic within 1e-10 and the same number
    of updates."""
    assert abs(loss_ours.item() - loss_theirs.item()) <= 1e-10 * abs(loss_theirs.item()), \
        (loss_ours.item(), loss_theirs.item())
    p_theirs = [p for m in theirs for p in m.parameters()]
    worst = max(_rel(a.grad, b.grad) for a, b in zip(ours.parameters(), p_theirs))
    assert worst <= 1e-9, f"parameter gradients differ by {worst:.2e} relative"
    if not buffers:
        return
    b_theirs = dict((f"{k}.{n}", b) for k, m in enumerate(theirs) for n, b in m.named_buffers())
    b_ours = dict((n.removeprefix("members."), b) for n, b in ours.named_buffers()
                  if n.startswith("members."))
    assert b_ours.keys() == b_theirs.keys()
    for name, b in b_theirs.items():
        if b.is_floating_point():
            assert _rel(b_ours[name], b) <= 1e-10, f"BatchNorm buffer {name} differs"
        else:                         # num_batches_tracked: the same number of updates
            assert torch.equal(b_ours[name], b), (name, b_ours[name], b)


def _setup(arch, plus_adv, faithful, epoch=3, epochs=10):
    theirs = _members(arch)
    ours = Ensemble(copy.deepcopy(theirs))
    cfg = make_config("mnist", "trs", variant="published", faithful=faithful, plus_adv=plus_adv,
                      epochs=epochs)
    args = SimpleNamespace(num_models=3, coeff=cfg.coeff, lamda=cfg.lamda, scale=cfg.scale,
                           init_eps=cfg.init_eps, adv_eps=cfg.adv_eps, plus_adv=cfg.plus_adv,
                           epochs=epochs)
    x, y = _batch()
    eps = (args.adv_eps - args.init_eps) * epoch / args.epochs + args.init_eps
    noise = T.pgd_start_noise((BATCH - BATCH // 2, 1, 8, 8), eps,
                              torch.Generator().manual_seed(7), like=x)
    ctx = StepContext(epoch=epoch, epochs=epochs, generator=torch.Generator().manual_seed(7))
    opt = torch.optim.SGD([p for m in theirs for p in m.parameters()], lr=0.1)
    return theirs, ours, cfg, args, x, y, noise, ctx, opt


@pytest.mark.parametrize("arch,plus_adv", [("resnet20", True), ("resnet20", False),
                                           ("small_cnn", True), ("small_cnn", False)])
def test_faithful_step_equals_the_authors(arch, plus_adv):
    theirs, ours, cfg, args, x, y, noise, ctx, opt = _setup(arch, plus_adv, faithful=True)
    loss_theirs = official_trs_step(args, theirs, x, y, ctx.epoch, opt, noise)
    ours.train()
    loss_ours, _ = get("trs").loss(ours, x, y, cfg, ctx)
    loss_ours.backward()
    _assert_same_step(ours, theirs, loss_ours, loss_theirs)


@pytest.mark.parametrize("arch", ["resnet20", "small_cnn"])
def test_fast_published_loss_equals_the_authors_at_the_same_smoothness_inputs(arch, monkeypatch):
    theirs, ours, cfg, args, x, y, noise, ctx, opt = _setup(arch, True, faithful=False)
    g = torch.Generator().manual_seed(3)
    adv = (x[BATCH // 2:] + 0.1 * (2 * torch.rand(x[BATCH // 2:].shape, generator=g, dtype=F64) - 1)).clamp(0, 1)
    loss_theirs = official_trs_step(args, theirs, x, y, ctx.epoch, opt, noise, adv_inputs=adv)
    monkeypatch.setattr(T, "smoothness_inputs", lambda *a, **k: torch.cat([x[:BATCH // 2], adv]))
    ours.train()
    loss_ours, _ = get("trs").loss(ours, x, y, cfg, ctx)
    loss_ours.backward()
    _assert_same_step(ours, theirs, loss_ours, loss_theirs, buffers=False)


def test_fast_mode_departs_from_the_authors_pgd():
    """The fast mode is a different computation (eval-mode PGD, own-step sign): its smoothness
    inputs differ from the authors' on a BatchNorm model, which is why both modes exist."""
    theirs, ours, cfg, args, x, y, noise, ctx, opt = _setup("resnet20", True, faithful=False)
    eps = (args.adv_eps - args.init_eps) * ctx.epoch / args.epochs + args.init_eps
    adv_theirs = official_pgd(theirs, x[BATCH // 2:], y[BATCH // 2:], eps, noise)
    from trs_lib.methods import eval_mode
    ours.train()
    with eval_mode(ours):
        x_s = T.smoothness_inputs(ours.member_logits, x, y, eps, 6, noise=noise)
    assert (x_s[BATCH // 2:] - adv_theirs).abs().max() > 1e-3
    x_f = T.smoothness_inputs(ours.member_logits, x, y, eps, 6, noise=noise, running_sum=True)
    assert (x_f[BATCH // 2:] - adv_theirs).abs().max() < 1e-12


def test_skipped_pgd_still_draws_its_random_start():
    """faithful, plus_adv off, no BatchNorm: the authors' PGD changes no number and is skipped,
    but its random start is still drawn, so the trainer's generator (batch order, later random
    starts) runs on exactly as in the authors' computation."""
    states = []
    for plus_adv in (True, False):
        _, ours, cfg, _, x, y, _, ctx, _ = _setup("small_cnn", plus_adv, faithful=True)
        get("trs").loss(ours, x, y, cfg, ctx)
        states.append(ctx.generator.get_state())
    assert torch.equal(states[0], states[1])
    untouched = torch.Generator().manual_seed(7).get_state()
    assert not torch.equal(states[0], untouched)


# ---------------------------------------------------------------- the authors' optimiser
def _authors_optimiser(param, lr=0.001, weight_decay=1e-4, lr_step_size=40, gamma=0.1):
    """train/Empirical/train_trs.py, transcribed: the Adam call and the scheduler."""
    import torch.optim as optim
    optimizer = optim.Adam(param, lr=lr, weight_decay=weight_decay, eps=1e-7)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=lr_step_size, gamma=gamma)
    return optimizer, scheduler


def test_authors_optimiser_rates_and_settings_equal_their_script():
    """Epoch by epoch, the rate trs_lib.optimiser sets equals the one their loop trains with
    (``scheduler.step(epoch)`` after each epoch, StepLR's closed form), over CIFAR-10's 180
    epochs; their Adam's settings are ours; the paper's optimiser keeps the rate constant."""
    import warnings
    from trs_lib import optimiser as O
    p = [nn.Parameter(torch.zeros(3))]
    theirs, scheduler = _authors_optimiser(p)
    cfg = make_config("cifar10", "trs", optimiser="authors")
    ours = O.build([nn.Parameter(torch.zeros(3))], cfg, "cpu")
    for k in ("weight_decay", "eps", "betas", "amsgrad", "lr"):
        assert ours.param_groups[0][k] == theirs.param_groups[0][k], k
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # StepLR.step(epoch) is deprecated, but theirs
        for epoch in range(180):
            rates.append(theirs.param_groups[0]["lr"])   # the rate this epoch trains with
            theirs.step()
            scheduler.step(epoch)
    mine = [O.learning_rate("authors", 0.001, e) for e in range(180)]
    assert mine == pytest.approx(rates, rel=1e-12)
    assert rates[40] == 0.001 and rates[41] == pytest.approx(1e-4)  # the first decay: epoch 41
    assert [O.learning_rate("paper", 0.001, e) for e in (0, 41, 179)] == [0.001] * 3
    with pytest.raises(ValueError, match="unknown optimiser 'sgd'"):
        make_config("mnist5k", "trs", optimiser="sgd")
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        O.learning_rate("authors", 0.001, -1)


def test_authors_optimiser_trains_with_weight_decay_and_names_its_own_run(tmp_path, monkeypatch):
    """A run with the authors' optimiser equals, parameter by parameter, the same run stepped
    by their transcribed Adam, and differs from the paper's optimiser (weight decay changes the
    weights); its name differs from the paper's run, whose name the field leaves unchanged."""
    from trs_lib import optimiser as O
    from trs_lib.recipes import config_hash
    from trs_lib.train import train
    kw = dict(method="vanilla", num_models=1, epochs=2, train_subset=64, batch_size=32, seed=3,
              progress=False)

    def flat(run):
        return torch.cat([q.detach().flatten() for q in run.ensemble.parameters()])
    a = flat(train("mnist5k", optimiser="authors", out_dir=tmp_path / "a", **kw))
    b = flat(train("mnist5k", out_dir=tmp_path / "b", **kw))
    assert not torch.allclose(a, b)
    monkeypatch.setattr(O, "build", lambda params, cfg, device: _authors_optimiser(params, lr=cfg.lr)[0])
    theirs = flat(train("mnist5k", optimiser="authors", out_dir=tmp_path / "c", **kw))
    assert torch.equal(a, theirs)
    paper = make_config("mnist5k", "trs")
    assert "optimiser" not in paper.identity()
    assert config_hash(make_config("mnist5k", "trs", optimiser="authors")) != config_hash(paper)


# ---------------------------------------------------------------- the authors' nn.DataParallel
@pytest.mark.parametrize("plus_adv", [True, False])
def test_data_parallel_batchnorm_step_equals_the_authors_on_three_gpus(plus_adv):
    """Their script wraps each member in ``nn.DataParallel`` over 3 GPUs: BatchNorm then
    normalises each third of a batch (and of the PGD's half batch) with its own statistics, and
    only the first third's reach the running averages. Our ``data_parallel=3`` faithful step on
    ResNet-20 equals their step on emulated DataParallel members (loss, every parameter
    gradient, running statistics), and differs from the one-device step."""
    from trs_lib.models import set_data_parallel
    theirs, ours, cfg, args, x, y, noise, ctx, opt = _setup("resnet20", plus_adv, faithful=True)
    one_device = copy.deepcopy(ours)
    wrapped = [EmulatedDataParallel(m, 3) for m in theirs]
    loss_theirs = official_trs_step(args, wrapped, x, y, ctx.epoch, opt, noise)
    cfg3 = make_config("mnist", "trs", variant="published", faithful=True, plus_adv=plus_adv,
                       epochs=cfg.epochs, data_parallel=3)
    set_data_parallel(ours, 3)
    ours.train()
    loss_ours, _ = get("trs").loss(ours, x, y, cfg3, ctx)
    loss_ours.backward()
    _assert_same_step(ours, theirs, loss_ours, loss_theirs)
    # on one device the numbers are not these
    ctx1 = StepContext(epoch=ctx.epoch, epochs=ctx.epochs, generator=torch.Generator().manual_seed(7))
    one_device.train()
    loss_one, _ = get("trs").loss(one_device, x, y, cfg, ctx1)
    assert abs(loss_one.item() - loss_theirs.item()) > 1e-6 * abs(loss_theirs.item())


def test_data_parallel_changes_nothing_without_batchnorm(tmp_path):
    """On the small CNN (no BatchNorm) ``data_parallel=3`` trains the same weights bit for bit,
    which is why it is not part of the run's name there; on ResNet-20 it is."""
    from trs_lib.recipes import config_hash
    from trs_lib.train import train
    kw = dict(method="trs", variant="published", faithful=True, num_models=2, epochs=1,
              train_subset=48, batch_size=24, seed=5, progress=False)
    a = train("mnist5k", data_parallel=3, out_dir=tmp_path / "a", **kw)
    b = train("mnist5k", out_dir=tmp_path / "b", **kw)
    for pa, pb in zip(a.ensemble.parameters(), b.ensemble.parameters()):
        assert torch.equal(pa, pb)
    small = make_config("mnist5k", "trs", data_parallel=3)
    assert config_hash(small) == config_hash(make_config("mnist5k", "trs"))
    r20 = make_config("mnist5k", "trs", arch="resnet20", data_parallel=3)
    assert config_hash(r20) != config_hash(make_config("mnist5k", "trs", arch="resnet20"))
    with pytest.raises(ValueError, match=r"data_parallel must be an integer in \[1, 64\], got 0"):
        make_config("mnist5k", "trs", data_parallel=0)
