"""TRS (Sec. 3, Algorithm 1) and its ablation CosSim (App. D) as losses over (ensemble, x, y)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import models
from .. import trs as T
from .base import Method, eval_mode

# Layers whose output for one example depends on that example alone (BatchNorm only in eval
# mode), and the models of trs_lib.models built only from them plus per-example code.
_PER_EXAMPLE_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Identity, nn.Flatten, nn.MaxPool2d,
                       nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Sequential, nn.ModuleList,
                       models.Normalize, models.SmallCNN, models.ResNet20, models.BasicBlock)


def smooth_radius(cfg, ctx) -> float:
    """Published TRS's smoothness radius, ramped linearly from ``smooth_eps_init`` to ``smooth_eps``."""
    return cfg.smooth_eps_init + (cfg.smooth_eps - cfg.smooth_eps_init) * ctx.progress


def per_example(module: nn.Module) -> bool:
    """True when every example's output depends on that example alone: ``module`` is built from
    the known per-example layers and models above, with any BatchNorm in eval mode."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training or m.running_mean is None:
                return False
        elif type(m) not in _PER_EXAMPLE_LAYERS and not isinstance(m, (nn.Conv2d, nn.Linear)):
            return False
    return True


def trs_loss(ensemble, x, y, cfg, ctx, *, similarity_only: bool = False):
    """ECE + TRS regulariser; the member input gradients are computed once and reused.

    Seed variant: ``sum_k CE_k + c * sum_{j<k} mean_b [cos + lam (|g_j| + |g_k|)]``.
    Published variant: ``sum_k CE_k + lambda_a mean|cos| + lambda_b mean |g~_k|^2`` with ``g~``
    at inputs found by PGD (``trs_lib.trs.smoothness_inputs``) with the members in eval mode:
    BatchNorm statistics untouched by the PGD, no parameter gradients in it. The smoothness
    inputs' first half is the clean half of the batch; for members without BatchNorm in
    training mode (:func:`per_example`, e.g. the small CNN) its input gradients are those already
    computed for the similarity term, so only the perturbed half is differentiated again.
    """
    ce, grads = T.input_gradients(ensemble.member_logits, x, y, create_graph=True)
    smooth_grads = None
    if cfg.variant == "published" and not similarity_only:
        with eval_mode(ensemble):
            x_s = T.smoothness_inputs(ensemble.member_logits, x, y, smooth_radius(cfg, ctx),
                                      cfg.smooth_steps, ctx.generator)
        half = len(x) // 2
        if per_example(ensemble.members):
            _, adv_grads = T.input_gradients(ensemble.member_logits, x_s[half:], y[half:],
                                             create_graph=True)
            smooth_grads = torch.cat([grads[:, :half], adv_grads], dim=1)
        else:
            _, smooth_grads = T.input_gradients(ensemble.member_logits, x_s, y, create_graph=True)
    terms = T.trs_regularizer(grads, cfg.variant, lam=cfg.lam, c=cfg.c, smooth_grads=smooth_grads,
                              lambda_a=cfg.lambda_a, lambda_b=cfg.lambda_b)
    if similarity_only:
        terms.pop("smoothness")
    ece = ce.sum()
    loss = ece + sum(terms.values())
    with torch.no_grad():
        cos = T.pairwise_cosine(grads).abs().mean()
    return loss, {"ce": ece, **terms, "abs_cos": cos}


def cossim_loss(ensemble, x, y, cfg, ctx):
    """CosSim (App. D): ECE plus only TRS's gradient-similarity term, no smoothness term."""
    return trs_loss(ensemble, x, y, cfg, ctx, similarity_only=True)


TRS = Method("trs", trs_loss, doc="ECE + gradient cosine + smoothness (Sec. 3)")
COSSIM = Method("cossim", cossim_loss, doc="ECE + gradient cosine only (App. D)")
