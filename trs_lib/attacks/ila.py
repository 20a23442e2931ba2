"""Intermediate Level Attack, projection form ILAP (Huang et al. 2019), Appendix I of the paper.

Start from an adversarial example ``x'`` crafted on the source model (by default BIM with the
same ``eps``, 10 steps), take the guide direction at an intermediate layer ``l``,
``dy' = F_l(x') - F_l(x)``, then maximise the projection of the new feature change onto it,

    max_{x''}  (F_l(x'') - F_l(x)) . dy' / ||dy'||      s.t. ||x'' - x||_inf <= eps, x'' in [0, 1],

with ``steps`` signed-gradient steps of size ``step_size`` (default ``eps / 10``) starting at
``x`` itself, as in Huang et al.'s code (the guide only sets the direction; starting at ``x'``
would let ILA end weaker than its own starting point). ``start="guide"`` starts at ``x'``
instead. :func:`trs_lib.member_transfer.ila_table` also reports "ILA (best of)": per point the stronger
of ILA and its BIM source. The paper runs ILA on sub-model 1 for 10 iterations at eps 0.1/0.15 (MNIST) and
0.01/0.02 (CIFAR-10) and evaluates the result on every member and on the ensemble (Table 6).

``layer`` names a submodule of ``model`` (``model.get_submodule(layer)``); its output is read by
a forward hook. Default: ``"layer2"`` for ResNet-20, ``"conv2"`` for the small CNN, else the
first of those names the model has. ILA is untargeted. Eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import check_choice, input_grad, linf_common, project_linf
from .bim import bim

__all__ = ["ila", "default_layer"]

_DEFAULT_LAYERS = ("layer2", "conv2")


def default_layer(model) -> str:
    """The intermediate layer ILA uses when none is named."""
    names = dict(model.named_modules())
    for name in _DEFAULT_LAYERS:
        if name in names:
            return name
    raise ValueError(f"ila: no default layer for {type(model).__name__}; pass layer= one of "
                     f"{[n for n in names if n][:20]}")


def _features(model, module, x):
    store = {}
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("f", o))
    try:
        model(x)
    finally:
        h.remove()
    return store["f"].flatten(1)


def ila(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
        step_size: float | None = None, layer: str | None = None, x_guide: torch.Tensor | None = None,
        guide_steps: int = 10, start: str = "x") -> torch.Tensor:
    """ILAP adversarial examples for the source ``model`` (a single member, returning logits).

    ``x_guide``: the starting adversarial example (default: BIM(eps, ``guide_steps``) on ``model``).
    """
    eps, steps, step_size = linf_common("ila", x, y, eps, steps, step_size, False, steps_lo=0)
    if layer is None:
        layer = default_layer(model)
    names = dict(model.named_modules())
    check_choice("layer", layer, [n for n in names if n], attack="ila")
    check_choice("start", start, ("x", "guide"), attack="ila")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    if x_guide is None:
        x_guide = bim(model, x, y, eps=eps, steps=guide_steps)
    elif not isinstance(x_guide, torch.Tensor) or x_guide.shape != x.shape:
        raise ValueError(f"ila: x_guide must be a tensor of shape {tuple(x.shape)}, got "
                         f"{getattr(x_guide, 'shape', type(x_guide).__name__)}")
    x_guide = project_linf(x_guide.detach().to(x.device, x.dtype), x, eps)
    module = names[layer]
    with torch.no_grad():
        f0 = _features(model, module, x)
        guide = _features(model, module, x_guide) - f0
        guide = guide / guide.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def proj_loss(out, _y, _t):  # out is the hooked feature, see below
        return ((out - f0) * guide).sum(1)

    class _Feat(torch.nn.Module):
        def forward(self, inp):
            return _features(model, module, inp)

    feat = _Feat()
    x_adv = x.clone() if start == "x" else x_guide.clone()
    for _ in range(steps):
        g, _, _ = input_grad(feat, x_adv, y, False, loss=proj_loss)
        x_adv = project_linf(x_adv + step_size * g.sign(), x, eps)
    return x_adv.detach()
