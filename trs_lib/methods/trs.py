"""TRS (Sec. 3, Algorithm 1) and its ablation CosSim (App. D) as losses over (ensemble, x, y)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import models
from .. import trs as T
from ..double_backward import recorded_batch_norm_stats, replay_running_stats
from .base import Method, eval_mode

# Layers whose output for one example depends on that example alone (BatchNorm only in eval
# mode), and the models of trs_lib.models built only from them plus per-example code.
_PER_EXAMPLE_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Identity, nn.Flatten, nn.MaxPool2d,
                       nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Sequential, nn.ModuleList,
                       models.Normalize, models.SmallCNN, models.ResNet20, models.BasicBlock)


def smooth_radius(cfg, ctx) -> float:
    """Published TRS's smoothness radius at this epoch, the authors' ``cureps``: ramped linearly
    from ``init_eps`` at epoch 0 towards ``adv_eps`` (written as their expression)."""
    return (cfg.adv_eps - cfg.init_eps) * ctx.epoch / max(ctx.epochs, 1) + cfg.init_eps


def updates_batchnorm_stats(module: nn.Module) -> bool:
    """True when a forward pass of ``module`` updates BatchNorm running statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               and m.track_running_stats and m.running_mean is not None for m in module.modules())


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


def _published_smooth_grads(ensemble, x, y, grads, cfg, ctx):
    """Input gradients at the published variant's smoothness inputs (the authors' ``adv_x``)."""
    half = len(x) // 2
    eps = smooth_radius(cfg, ctx)
    stats = updates_batchnorm_stats(ensemble)
    x_s = None
    if cfg.faithful:
        if cfg.plus_adv or stats:
            # the authors' PGD: members in training mode, sign of the running gradient sum. With
            # plus_adv off its result is unused, but its forwards move BatchNorm statistics.
            x_s = T.smoothness_inputs(ensemble.member_logits, x, y, eps, cfg.smooth_steps,
                                      ctx.generator, running_sum=True)
        elif len(x) - half > 0:   # skipped: it changes no number; keep the generator's stream
            T.pgd_start_noise(x[half:].shape, eps, ctx.generator, like=x)
    elif cfg.plus_adv:
        with eval_mode(ensemble):
            x_s = T.smoothness_inputs(ensemble.member_logits, x, y, eps, cfg.smooth_steps,
                                      ctx.generator)
    if not cfg.plus_adv:
        # at the clean batch: the similarity term's gradients (same parameters, same batch);
        # the authors' second forward there moves BatchNorm statistics once more
        if cfg.faithful and stats:
            with torch.no_grad():
                ensemble.member_logits(x)
        return grads
    if per_example(ensemble.members):
        _, adv_grads = T.input_gradients(ensemble.member_logits, x_s[half:], y[half:],
                                         create_graph=True)
        return torch.cat([grads[:, :half], adv_grads], dim=1)
    return T.input_gradients(ensemble.member_logits, x_s, y, create_graph=True)[1]


def _stat_layers(module: nn.Module) -> list:
    """The BatchNorm layers whose forward updates running statistics."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training and m.track_running_stats and m.running_mean is not None]


def _logging_forward(ensemble, x, clean_stats) -> None:
    """The running-statistics effect of the authors' ``Ensemble(models)(inputs)`` (the forward
    they log accuracy with: same weights and batch as the step's first forward). With every
    layer's batch statistics of that first forward recorded (``clean_stats``) the update is
    applied directly, as that forward would (``double_backward.replay_running_stats``);
    otherwise (a layer not recorded, or a cumulative-average BatchNorm, ``momentum=None``) the
    forward itself runs without autograd."""
    layers = _stat_layers(ensemble)
    if (clean_stats is not None and len(clean_stats) == len(layers)
            and all(m.momentum is not None for m in layers)):
        replay_running_stats(clean_stats)
        for m in layers:
            m.num_batches_tracked.add_(1)
        return
    with torch.no_grad():
        ensemble.member_logits(x)


def trs_loss(ensemble, x, y, cfg, ctx, *, similarity_only: bool = False):
    """ECE + TRS regulariser; the member input gradients are computed once and reused.

    Seed variant: ``sum_k CE_k + c * sum_{j<k} mean_b [cos + lam (|g_j| + |g_k|)]``.

    Published variant, the authors' ``TRS_Trainer`` loss with their names:
    ``sum_k CE_k + scale * (coeff * cos_loss + lamda * smooth_loss)``
    (``trs_lib.trs.published_regularizer``), ``smooth_loss`` at the clean half plus a PGD-moved
    half of the batch (``plus_adv``; else at the clean batch), PGD radius ramped from
    ``init_eps`` to ``adv_eps``. Two modes:

    * ``faithful=True``: the authors' computation exactly: the inner PGD with the members in
      training mode and the sign of the running input-gradient sum, BatchNorm statistics updated
      by every forward theirs runs (including the ensemble forward they log accuracy with), minus
      the work that changes no number (parameter gradients inside the PGD, the PGD itself when
      ``plus_adv`` is off and no BatchNorm statistic would move).
    * ``faithful=False`` (fast): the PGD runs the members in eval mode (BatchNorm statistics
      untouched by it) and each step takes the sign of its own gradient.

    For members without BatchNorm in training mode (:func:`per_example`, e.g. the small CNN) the
    smoothness gradients of the clean half are those already computed for the similarity term,
    so only the perturbed half is differentiated again.
    """
    log_forward = (cfg.variant == "published" and cfg.faithful and not similarity_only
                   and updates_batchnorm_stats(ensemble))
    clean_stats = None
    if log_forward:
        with recorded_batch_norm_stats() as clean_stats:
            ce, grads = T.input_gradients(ensemble.member_logits, x, y, create_graph=True)
    else:
        ce, grads = T.input_gradients(ensemble.member_logits, x, y, create_graph=True)
    smooth_grads = None
    if cfg.variant == "published" and not similarity_only:
        smooth_grads = _published_smooth_grads(ensemble, x, y, grads, cfg, ctx)
    terms = T.trs_regularizer(grads, cfg.variant, lam=cfg.lam, c=cfg.c, smooth_grads=smooth_grads,
                              coeff=cfg.coeff, lamda=cfg.lamda, scale=cfg.scale)
    if similarity_only:
        terms.pop("smoothness")
    ece = ce.sum()
    loss = ece + sum(terms.values())
    if log_forward:   # the authors' Ensemble(models)(inputs), logged for accuracy
        _logging_forward(ensemble, x, clean_stats)
    with torch.no_grad():
        cos = T.pairwise_cosine(grads).abs().mean()
    return loss, {"ce": ece, **terms, "abs_cos": cos}


def cossim_loss(ensemble, x, y, cfg, ctx):
    """CosSim (App. D): ECE plus only TRS's gradient-similarity term, no smoothness term."""
    return trs_loss(ensemble, x, y, cfg, ctx, similarity_only=True)


TRS = Method("trs", trs_loss, doc="ECE + gradient cosine + smoothness (Sec. 3)")
COSSIM = Method("cossim", cossim_loss, doc="ECE + gradient cosine only (App. D)")
