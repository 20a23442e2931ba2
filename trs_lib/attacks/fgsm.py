"""Fast gradient sign method (Goodfellow et al. 2015), Section 4.1 of the paper.

    x^A = clip_[0,1]( x + eps * sign(grad_x L(f(x), y)) )

``L`` is the cross-entropy of the model output (logits or log-probabilities alike). Targeted
mode steps *down* the cross-entropy of the target: ``x - eps * sign(grad_x L(f(x), t))``.
Putting the model in eval mode is the caller's job; gradients are w.r.t. the input only.
"""
from __future__ import annotations

import torch

from ._common import check_bool, check_inputs, check_real, input_grad

__all__ = ["fgsm"]


def fgsm(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, targeted: bool = False) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` (in [0, 1]); ``eps = 0`` returns ``x``."""
    check_inputs(x, y, "fgsm", "target" if targeted is True else "y")
    eps = check_real("eps", eps, 0.0, 1.0, attack="fgsm")
    check_bool("targeted", targeted, attack="fgsm")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    g, _, _ = input_grad(model, x, y.to(device=x.device, dtype=torch.long), targeted)
    return (x + eps * g.sign()).clamp_(0.0, 1.0).detach()
