"""Transfer attacks from ``torchattack`` (PyPI, pinned 1.7.2) behind the suite's conventions.

Each function is ``attack(model, x, y, *, eps, steps=10, seed=0, **params) -> x_adv``: inputs in
[0, 1], an L-inf ball of radius ``eps``, models returning logits or log-probabilities (the
ensembles of :mod:`trs_lib.ensemble`: torchattack's cross-entropy applies ``log_softmax``, which
is idempotent on log-probabilities; FIA's softmax of log-probabilities is the probabilities).
The adapter handles what torchattack does differently from the rest of the suite:

* it calls ``loss.backward()``, so the model's parameters are frozen for the call (their
  ``requires_grad`` restored afterwards): no parameter ``.grad`` is touched;
* its randomness (DI, VMI, Admix, ILPD, FIA) comes from torch's global generator, so each call
  runs inside ``torch.random.fork_rng`` seeded with ``seed``: reproducible, and the global
  stream is left as it was;
* no normalisation is passed (our models normalise inside); its output is projected once more on
  the ball and [0, 1] (float round-off of ``x + delta``).

Attacks (:data:`TRANSFER_ATTACKS`), torchattack's defaults unless stated: MI-FGSM, DI-FGSM
(resize 0.9, probability 1.0), TI-FGSM (kernel 5 instead of 15: 15 is for 299-pixel images, 5 is
our choice for 28-pixel digits; torchattack hard-codes 3 channels, so a 1-channel input is
attacked as 3 replicated channels of which the model reads the first: exactly TI-FGSM's update
on the 1 channel), NI-FGSM, SI-NI-FGSM (m = 3), VMI-FGSM (n = 5, beta = 1.5), Admix (portion 0.2,
size 3, ``num_classes`` from the model), ILPD (sigma 0.05, coef 0.1) and FIA (30 drop-out
copies, rate 0.3). SGM: torchattack's ``SGM`` finds the ReLUs to hook by module name (torchvision
ResNets); our ResNet-20 calls ``F.relu``, so its hooks would attach to nothing and SGM would be
MI-FGSM. ``sgm`` here is torchattack's ``MIFGSM`` on a copy of the surrogate whose residual
branches pass gradients scaled by ``gamma`` = 0.2 (Wu et al. 2020's definition); it needs a
surrogate with skip connections (``BasicBlock``). ILPD, FIA and the project's ILA
(:mod:`trs_lib.attacks.ila`) attack one member (``member``, default 0, as the paper runs ILA on
sub-model 1) at one layer (``layer``, default :func:`trs_lib.attacks.ila.default_layer`).
Missing from torchattack 1.7.2: nothing of the wanted list (torchattacks' TIFGSM has the same
3-channel limit, so the replication above is used rather than it).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..ensemble import Ensemble
from ..models import BasicBlock
from ._common import check_inputs, check_int, check_real, project_linf
from .ila import default_layer, ila as _ila

__all__ = ["TRANSFER_ATTACKS", "transfer_attack", "attack_settings", "applies_to", "TORCHATTACK_VERSION"]

TORCHATTACK_VERSION = "1.7.2"

#: name -> (torchattack class, default keyword arguments); ``ila`` is the project's own.
TRANSFER_ATTACKS: dict[str, tuple[str, dict]] = {
    "mi_fgsm": ("MIFGSM", {"decay": 1.0}),
    "di_fgsm": ("DIFGSM", {"decay": 1.0, "resize_rate": 0.9, "diversity_prob": 1.0}),
    "ti_fgsm": ("TIFGSM", {"decay": 1.0, "kern_len": 5, "n_sig": 3}),
    "ni_fgsm": ("NIFGSM", {"decay": 1.0}),
    "si_ni_fgsm": ("SINIFGSM", {"decay": 1.0, "m": 3}),
    "vmi_fgsm": ("VMIFGSM", {"decay": 1.0, "n": 5, "beta": 1.5}),
    "admix": ("Admix", {"decay": 1.0, "portion": 0.2, "size": 3}),
    "sgm": ("MIFGSM", {"decay": 1.0, "gamma": 0.2}),
    "ilpd": ("ILPD", {"decay": 1.0, "sigma": 0.05, "coef": 0.1, "member": 0, "layer": None}),
    "fia": ("FIA", {"decay": 1.0, "num_ens": 30, "drop_rate": 0.3, "member": 0, "layer": None}),
    "ila": ("ila", {"member": 0, "layer": None}),
}
_ONE_MEMBER = ("ilpd", "fia", "ila")


def attack_settings(name: str, **params) -> dict:
    """The full settings of attack ``name`` (its defaults, then ``params``); ValueError naming
    an unknown attack or parameter."""
    if name not in TRANSFER_ATTACKS:
        raise ValueError(f"unknown transfer attack {name!r}; valid names: {sorted(TRANSFER_ATTACKS)}")
    base = {"steps": 10, "seed": 0, **TRANSFER_ATTACKS[name][1]}
    bad = sorted(set(params) - set(base))
    if bad:
        raise ValueError(f"transfer attack {name!r}: unknown parameters {bad}; valid: {sorted(base)}")
    return {**base, **params}


def applies_to(name: str, model: nn.Module) -> bool:
    """Whether attack ``name`` can run on ``model``: SGM needs skip connections (``BasicBlock``)."""
    return name != "sgm" or any(isinstance(m, BasicBlock) for m in model.modules())


@contextmanager
def _frozen(model: nn.Module):
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma):
        ctx.gamma = gamma
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.gamma * g, None


def _sgm_copy(model: nn.Module, gamma: float) -> nn.Module:
    """A copy of ``model`` whose residual branches (each ``BasicBlock``'s ``conv1`` onwards) pass
    gradients scaled by ``gamma``; the skip paths are untouched (SGM)."""
    if not applies_to("sgm", model):
        raise ValueError(f"transfer attack 'sgm' needs a surrogate with skip connections (ResNet "
                         f"BasicBlocks); {type(model).__name__} has none")
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if isinstance(m, BasicBlock):
            m.conv1.register_forward_hook(lambda mod, inp, out: _ScaleGrad.apply(out, gamma))
    return clone


class _FirstChannel(nn.Module):
    """``model`` read from the first of 3 replicated channels (TI-FGSM on 1-channel inputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x3):
        return self.model(x3[:, :1])


def _one_member(model, member: int) -> nn.Module:
    if isinstance(model, Ensemble):
        check_int("member", member, 0, model.num_members - 1, attack="transfer")
        return model.member(member)
    return model


def transfer_attack(name: str, model, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                    **params) -> torch.Tensor:
    """Adversarial examples of attack ``name`` (:data:`TRANSFER_ATTACKS`) crafted on ``model``
    in the L-inf ball of radius ``eps``; ``steps`` (default 10) of size ``eps / steps``."""
    s = attack_settings(name, **params)
    check_inputs(x, y, name)
    eps = check_real("eps", eps, 0.0, 1.0, attack=name)
    steps = check_int("steps", s.pop("steps"), 1, attack=name)
    seed = check_int("seed", s.pop("seed"), 0, 2**63 - 1, attack=name)
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    if name == "ila":
        src = _one_member(model, s["member"])
        with _frozen(src):
            return _ila(src, x, y, eps=eps, steps=steps, layer=s["layer"])
    import torchattack  # optional heavy dependency: only the transfer attacks need it

    cls = getattr(torchattack, TRANSFER_ATTACKS[name][0])
    kw = {k: v for k, v in s.items() if k not in ("member", "layer", "gamma")}
    src, xin = model, x
    if name == "sgm":
        src = _sgm_copy(model, check_real("gamma", s["gamma"], 0.0, 1.0, attack=name))
    elif name in ("ilpd", "fia"):
        src = _one_member(model, s["member"])
        kw["feature_layer_cfg"] = s["layer"] or default_layer(src)
    elif name == "admix":
        with torch.no_grad():
            kw["num_classes"] = int(model(x[:1]).shape[-1])
    elif name == "ti_fgsm" and x.shape[1] != 3:
        if x.shape[1] != 1:
            raise ValueError(f"ti_fgsm: torchattack's kernel has 3 channels; inputs with "
                             f"{x.shape[1]} channels are not supported (valid: 1 or 3)")
        src, xin = _FirstChannel(model), x.repeat(1, 3, 1, 1)
    devices = [x.device] if x.device.type == "cuda" else []
    with _frozen(src), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        atk = cls(src, normalize=None, device=x.device, eps=eps, steps=steps, **kw)
        out = atk(xin, y).detach()
    if out.shape[1] != x.shape[1]:
        out = out[:, :x.shape[1]]
    return project_linf(out, x, eps)


def _registered(name: str):
    def attack(model, x, y, *, eps: float, **params):
        return transfer_attack(name, model, x, y, eps=eps, **params)
    attack.__name__ = attack.__qualname__ = name
    attack.__doc__ = f"torchattack's {TRANSFER_ATTACKS[name][0]} via :func:`transfer_attack`."
    return attack


# One registry function per attack (``trs_lib.attacks.get("mi_fgsm")``); ``ila`` is the suite's own.
mi_fgsm, di_fgsm, ti_fgsm, ni_fgsm, si_ni_fgsm, vmi_fgsm, admix, sgm, ilpd, fia = (
    _registered(n) for n in ("mi_fgsm", "di_fgsm", "ti_fgsm", "ni_fgsm", "si_ni_fgsm", "vmi_fgsm",
                             "admix", "sgm", "ilpd", "fia"))
