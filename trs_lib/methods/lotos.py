"""LOTOS, Layer-wise Orthogonalization for Training Robust Ensembles (Ebrahimpour-Boroojeny et
al., ICLR 2025, arXiv:2410.05136; code ``github:Ali-E/LOTOS``), alone and combined with TRS.

For every ordered pair of members ``j != k`` and every convolutional layer ``l``, LOTOS shrinks
what member ``j``'s layer does to member ``k``'s top right singular vector of the same layer:

    L = sum_j CE_j + lambda * sum_{j != k} sum_l sum_{i <= r}
                               w_i max(0, ||W_l^j v_{l,i}^k|| / ||v_{l,i}^k|| - mal)

(the paper's Sec. 4 LOTOS loss; its equation number could not be checked offline, so the
code is the reference: ``train/Empirical/trainer.py`` lines 186-210, where ``bad_vector`` is
``v^k``, ``m(bad_vector) - m(0)`` is ``W_l^j v``, ``bottom_clip`` is ``mal``, ``conv_factor``
is ``lambda`` and the weights are ``w_i = 1 - decrement * i``). The paper normalises by layers
times pairs; the released code sets both normalisers to 1 (trainer.py lines 290-291), and so do
we. ``W_l^j v`` is the layer's linear part: the convolution without its bias. Member ``k``'s
vectors are detached (their ``requires_grad=False``) and kept warm by power iteration on
``W^T W`` through autograd: 100 iterations from a random start on the first step
(``init_pqr_iter=100``), then :data:`POWER_ITERS` = 1 per step (``pqr_iter=1``;
``spectral_normalization_deflate_complex_both_bn.py``), top-1 only (``k=1``, so ``w_1 = 1``).

Stated departures for the small CNN: (1) their FastClip spectral-norm clipping of every layer
(``--convsn 1.0``) is not applied; LOTOS is the orthogonalisation term here, on top of the plain
members; (2) only ``nn.Conv2d`` layers are penalised, as their ``condition_conv``; (3) their
skipping of the first batch and of every 200th batch is not reproduced; the penalty is added every
:data:`FREQUENCY`-th step (their ``conv_freq``: 1 alone, 5 with TRS, main.py lines 82-90). The
vectors and the step counter live in the method state (``ctx.state``), so checkpoints hold them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Method
from .trs import trs_loss
from .vanilla import ece_loss

__all__ = ["conv_layers", "conv_linear", "power_iteration", "lotos_penalty", "lotos_vectors",
           "lotos_loss", "trs_lotos_loss", "LOTOS", "TRS_LOTOS", "INIT_POWER_ITERS", "POWER_ITERS",
           "FREQUENCY"]

INIT_POWER_ITERS = 100   # their init_pqr_iter
POWER_ITERS = 1          # their pqr_iter: power iterations per training step
FREQUENCY = {"lotos": 1, "trs_lotos": 5}   # their conv_freq (main.py: 5 when --tech trs)
_STEP = "lotos.step"


def conv_layers(member: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The member's convolutional layers, in module order (their ``condition_conv``)."""
    return [(n, m) for n, m in member.named_modules() if isinstance(m, nn.Conv2d)]


def conv_linear(conv: nn.Conv2d, v: torch.Tensor, detach_weight: bool = False) -> torch.Tensor:
    """``W v``: the convolution without its bias (their ``m(v) - m(0)``)."""
    w = conv.weight.detach() if detach_weight else conv.weight
    return F.conv2d(v, w.to(v.dtype), None, conv.stride, conv.padding, conv.dilation, conv.groups)


def _normalise(v: torch.Tensor) -> torch.Tensor:
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def power_iteration(conv: nn.Conv2d, v: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` steps of ``v <- W^T W v / ||W^T W v||`` (``W^T`` by autograd); unit-norm, detached."""
    v = _normalise(v.detach())
    for _ in range(iters):
        with torch.enable_grad():
            vr = v.requires_grad_(True)
            out = conv_linear(conv, vr, detach_weight=True)
            (g,) = torch.autograd.grad(out, vr, grad_outputs=out.detach())
        v = _normalise(g.detach())
    return v


def _input_shapes(member: nn.Module, x: torch.Tensor) -> dict:
    """Each conv layer's input shape (C, H, W) at one example of ``x``."""
    shapes, hooks = {}, []
    for name, m in conv_layers(member):
        hooks.append(m.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(inp[0].shape[1:]))))
    try:
        with torch.no_grad():
            member(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return shapes


def lotos_vectors(ensemble, x: torch.Tensor, state: dict, iters: int, generator=None) -> dict:
    """Every member's top right singular vector per conv layer, ``{(k, layer): (1, C, H, W)}``,
    updated in ``state`` (``lotos.v.<k>.<layer>``): first created at random and iterated
    :data:`INIT_POWER_ITERS` times, then ``iters`` power iterations per call."""
    out = {}
    for k, member in enumerate(ensemble.members):
        shapes = None
        for name, conv in conv_layers(member):
            key = f"lotos.v.{k}.{name}"
            if key not in state:
                shapes = shapes or _input_shapes(member, x)
                gdev = generator.device if generator is not None else x.device
                v0 = torch.randn((1, *shapes[name]), generator=generator, device=gdev)
                v = power_iteration(conv, v0.to(x.device, conv.weight.dtype), INIT_POWER_ITERS)
            else:
                v = power_iteration(conv, state[key], iters)
            state[key] = v
            out[(k, name)] = v
    return out


def lotos_penalty(ensemble, vectors: dict, mal: float) -> torch.Tensor:
    """``sum_{j != k} sum_l max(0, ||W_l^j v_l^k|| / ||v_l^k|| - mal)`` (top-1, ``w_1 = 1``)."""
    total = None
    for j, member in enumerate(ensemble.members):
        for name, conv in conv_layers(member):
            for k in range(ensemble.num_members):
                if k == j:
                    continue
                v = vectors[(k, name)]
                ratio = conv_linear(conv, v).flatten(1).norm(dim=1) / v.flatten(1).norm(dim=1)
                term = F.relu(ratio - mal).mean()
                total = term if total is None else total + term
    if total is None:
        raise ValueError(f"LOTOS needs members with nn.Conv2d layers; "
                         f"{type(ensemble.members[0]).__name__} has none")
    return total


def _add_lotos(ensemble, x, cfg, ctx, loss, terms, freq: int):
    state = ctx.state
    step = state.get(_STEP)
    if step is None:
        step = torch.zeros((), dtype=torch.int64, device=x.device)
    vectors = lotos_vectors(ensemble, x, state, POWER_ITERS, ctx.generator)
    active = (step % freq == 0).to(loss.dtype)   # no host sync: a 0/1 factor
    ortho = cfg.lotos_weight * lotos_penalty(ensemble, vectors, cfg.lotos_mal) * active
    state[_STEP] = step + 1
    return loss + ortho, {**terms, "lotos": ortho}


def lotos_loss(ensemble, x, y, cfg, ctx):
    """ECE + ``lotos_weight`` * the LOTOS penalty (at every step)."""
    loss, terms = ece_loss(ensemble, x, y, cfg, ctx)
    return _add_lotos(ensemble, x, cfg, ctx, loss, terms, FREQUENCY["lotos"])


def trs_lotos_loss(ensemble, x, y, cfg, ctx):
    """TRS's loss (:func:`trs_lib.methods.trs.trs_loss`) + the LOTOS penalty, as their
    ``--tech trs`` runs (the penalty every 5th step, lambda = 0.01)."""
    loss, terms = trs_loss(ensemble, x, y, cfg, ctx)
    return _add_lotos(ensemble, x, cfg, ctx, loss, terms, FREQUENCY["trs_lotos"])


LOTOS = Method("lotos", lotos_loss, doc="ECE + layer-wise orthogonalisation of the members' top "
                                        "singular directions (LOTOS, ICLR 2025)")
TRS_LOTOS = Method("trs_lotos", trs_lotos_loss, doc="TRS + LOTOS (LOTOS's --tech trs)")
