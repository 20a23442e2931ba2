"""Shared helpers of the attacks: input checks, loss/gradient w.r.t. the input, projections.

Every attack validates its inputs with :func:`check_inputs` and the ``check_*`` helpers, so a
bad call fails with a ``ValueError`` that names the value and the allowed range instead of
silently producing a weak attack. Gradients are taken with ``torch.autograd.grad`` with respect
to the input only: no parameter ``.grad`` is touched, so attacks are safe inside a training loop
(PGD adversarial training). Putting the model in eval mode is the caller's job.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F

__all__ = ["check_inputs", "check_real", "check_int", "check_bool", "check_choice",
           "input_grad", "loss_fn", "project_linf", "project_l2", "project", "check_norm", "check_budget",
           "model_device", "NORMS", "MAX_STEPS", "MAX_RESTARTS"]

#: the perturbation norms of the bounded attacks (L2 budgets are Euclidean norms of the whole input).
NORMS = ("Linf", "L2")

MAX_STEPS = 100_000
MAX_RESTARTS = 1_000


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU when it has neither)."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


def check_inputs(x, y, name: str = "attack", y_name: str = "y", num_classes: int | None = None):
    """Validate ``x`` (float tensor (B, ...) in [0, 1], at least 2-D) and labels ``y`` ((B,) int64).

    Returns ``(x, y)`` unchanged. Raises ``ValueError`` naming the bad value and what is allowed.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: x must be a floating-point tensor (float32/float64/float16/bfloat16), got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name}: x must have shape (B, ...) with at least 2 dims, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: x is an empty batch (shape {tuple(x.shape)}); need at least 1 example")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: x contains NaN or inf; inputs must be finite and in [0, 1]")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: x must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name}: {y_name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name}: {y_name} must be an integer tensor of class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name}: {y_name} must have shape (B,), got shape {tuple(y.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: len({y_name})={y.shape[0]} does not match the batch size of x={x.shape[0]}")
    if (y < 0).any():
        raise ValueError(f"{name}: {y_name} must be non-negative class indices, got min {int(y.min())}")
    if num_classes is not None and (y >= num_classes).any():
        raise ValueError(f"{name}: {y_name} must be < num_classes={num_classes}, got max {int(y.max())}")
    return x, y


def check_real(name: str, value, lo: float = 0.0, hi: float = math.inf, lo_open=False, hi_open=False,
               attack: str = "attack") -> float:
    """``value`` as a finite float inside [lo, hi] (open ends with ``lo_open``/``hi_open``), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{attack}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        raise ValueError(f"{attack}: {name}={value!r} is outside the allowed range {lb}{lo}, {hi}{rb}")
    return v


def check_int(name: str, value, lo: int = 0, hi: int = MAX_STEPS, attack: str = "attack") -> int:
    """``value`` as an int in [lo, hi], else ValueError (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{attack}: {name} must be an integer in [{lo}, {hi}], got {value!r} ({type(value).__name__})")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{attack}: {name}={value!r} is outside the allowed range [{lo}, {hi}]")
    return int(value)


def check_bool(name: str, value, attack: str = "attack") -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{attack}: {name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices, attack: str = "attack"):
    if value not in choices:
        raise ValueError(f"{attack}: unknown {name} {value!r}; valid values: {list(choices)}")
    return value


def loss_fn(out: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-example cross-entropy of ``out`` (logits or log-probs: log_softmax is idempotent on
    log-probabilities) that the attack *ascends*: CE(y) untargeted, -CE(target) targeted."""
    ce = F.cross_entropy(out, y, reduction="none")
    return -ce if targeted else ce


def input_grad(model, x: torch.Tensor, y: torch.Tensor, targeted: bool = False, loss=None):
    """Gradient of the summed per-example loss w.r.t. ``x`` only, and the loss values (detached).

    Uses ``torch.autograd.grad`` so parameters' ``.grad`` stay untouched; works under an outer
    ``torch.no_grad`` because it enables grad locally.
    """
    loss = loss or loss_fn
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        out = model(xr)
        lv = loss(out, y, targeted)
        if lv.requires_grad:
            (g,) = torch.autograd.grad(lv.sum(), xr, allow_unused=True)
        else:  # the model cut the graph (a non-differentiable preprocessing): no gradient at all
            g = None
    g = torch.zeros_like(xr) if g is None else g
    return g.detach(), lv.detach(), out.detach()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps) -> torch.Tensor:
    """Project onto the L-inf ball of radius ``eps`` around ``x`` intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps) -> torch.Tensor:
    """Scale ``x_adv - x`` into the L2 ball of radius ``eps`` (per example), then clip to [0, 1].

    Clipping to the box moves every coordinate towards ``x``, so the result stays in the ball.
    """
    d = x_adv - x
    n = d.flatten(1).norm(dim=1).clamp_min(1e-12).view((-1,) + (1,) * (x.dim() - 1))
    return (x + d * torch.clamp(eps / n, max=1.0)).clamp_(0.0, 1.0)


def project(x_adv, x, eps, norm: str):
    """:func:`project_linf` or :func:`project_l2`."""
    return project_linf(x_adv, x, eps) if norm == "Linf" else project_l2(x_adv, x, eps)


def check_norm(norm, attack: str = "attack") -> str:
    """``norm`` if it is one of :data:`NORMS` ("Linf", "L2"), else ValueError."""
    if norm not in NORMS:
        raise ValueError(f"{attack}: unknown norm {norm!r}; valid norms: {list(NORMS)}")
    return norm


def check_budget(eps, norm: str, attack: str = "attack") -> float:
    """An L-inf budget in [0, 1] or an L2 budget in [0, 1e3] (finite, non-negative), else ValueError."""
    return check_real("eps", eps, 0.0, 1.0 if norm == "Linf" else 1e3, attack=attack)


def linf_common(attack: str, x, y, eps, steps, step_size, targeted, steps_lo=1, default_div=10.0):
    """Checks shared by the iterative L-inf attacks; returns (eps, steps, step_size)."""
    check_inputs(x, y, attack, "target" if targeted else "y")
    eps = check_real("eps", eps, 0.0, 1.0, attack=attack)
    steps = check_int("steps", steps, steps_lo, MAX_STEPS, attack=attack)
    check_bool("targeted", targeted, attack=attack)
    if step_size is None:
        step_size = eps / default_div
    step_size = check_real("step_size", step_size, 0.0, 1.0, attack=attack)
    return eps, steps, step_size


def rand_uniform(shape, generator, device, dtype, lo=-1.0, hi=1.0):
    """Uniform noise in [lo, hi) drawn with ``generator`` (on its own device) and moved to ``device``."""
    gdev = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gdev, dtype=torch.float32)
    return (lo + (hi - lo) * u).to(device=device, dtype=dtype)


@torch.no_grad()
def pick_restarts(model, x_adv: torch.Tensor, y: torch.Tensor, restarts: int, targeted: bool) -> torch.Tensor:
    """Per example, the restart that succeeds (or, if none does, the one of highest attack loss).

    ``x_adv`` is (R*B, ...) with the R restarts stacked along the batch (restart-major), ``y`` is (B,).
    """
    b = y.shape[0]
    if restarts == 1:
        return x_adv
    out = model(x_adv)
    yr = y.repeat(restarts)
    lv = loss_fn(out, yr, targeted)
    pred = out.argmax(-1)
    success = (pred == yr) if targeted else (pred != yr)
    score = lv.float() + 1e6 * success.float()  # success first, then the higher loss
    best = score.view(restarts, b).argmax(0)  # (B,)
    idx = best * b + torch.arange(b, device=best.device)
    return x_adv[idx]
