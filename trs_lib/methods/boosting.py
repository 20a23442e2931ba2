"""Boosted ensembles (paper Sec. 4.2, App. D): AdaBoost (SAMME) and GradientBoost.

Both are sequential: the trainer fits one member per stage (``epochs`` epochs each, earlier
members frozen) and calls ``begin_stage`` / ``end_stage`` around it. Their state lives in
tensors (``state`` dict, the ``Ensemble.weights`` buffer), so a checkpoint holds it and a
resumed run continues exactly. A member not trained yet has weight 0: after stage ``k`` the
ensemble is members ``0..k``, and every epoch's test metrics describe the ensemble built so far.
Both expose the common interface, ``Ensemble(x)`` = log-probabilities, so every attack and
table treats them like the averaged ensembles.

**AdaBoost** (SAMME, Hastie et al. 2009, Algorithm 2), ``K`` classes, ``n`` training points with
weights ``w`` (``1/n`` at the start). Stage ``m``:

1. fit member ``m`` to the weighted training set: minibatch estimate of
   ``sum_i w_i CE(f_m(x_i), y_i)``, i.e. ``mean_b n w_b CE_b`` (uniform weights give plain CE);
2. ``err_m = sum_i w_i 1[f_m(x_i) != y_i] / sum_i w_i`` on the whole training set (eval mode);
3. ``alpha_m = log((1 - err_m) / err_m) + log(K - 1)``;
4. ``w_i <- w_i exp(alpha_m 1[f_m(x_i) != y_i])``, renormalised (steps 2(d)-(e)).

SAMME's classifier is the weighted vote ``argmax_c sum_m alpha_m 1[f_m(x) = c]``; here it is the
soft vote ``log(sum_m alpha_m softmax(f_m(x)) / sum_m alpha_m)`` (``combine="weighted_softmax"``),
which the attacks can differentiate ("a weighted average of all the weak learners", App. D).
``err_m`` is clipped to ``[1e-10, 1 - 1e-10]``, so a member with no training error gets a large
finite weight (about 23 + log(K - 1)). A member no better than chance (``err_m >= 1 - 1/K``, so
``alpha_m <= 0``) gets weight 0 and leaves the sample weights unchanged, as scikit-learn
discards it; if that happens to the first member, training stops with an error.

**GradientBoost** (Friedman 2001; the paper cites its multi-class use by Jiao et al. 2006). The
ensemble is the additive model ``F_m(x) = f_0(x) + nu * sum_{1<=j<=m} f_j(x)`` of logit vectors
(``combine="sum_logits"``: ``log_softmax(F)``), with shrinkage ``nu = boost_shrinkage``. Member
``m`` minimises the ensemble's loss with the earlier members frozen (in eval mode):

    min_{f_m} mean_i CE(F_{m-1}(x_i) + nu f_m(x_i), y_i),

Friedman's greedy stagewise step, which gradient boosting approximates for trees by a
least-squares fit to the pseudo-residuals ``r_i = onehot(y_i) - softmax(F_{m-1}(x_i))``. A
network can minimise the stagewise loss itself, and every SGD step on it moves ``f_m`` along
``nu r`` (the gradient w.r.t. ``f_m``'s output at ``f_m = 0`` is ``-nu r``): each member is
trained on the negative functional gradient of the ensemble's loss so far, with the line search
absorbed into the member's own scale. ``f_0`` (weight 1) is a plain classifier.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Method, eval_mode

__all__ = ["samme_alpha", "samme_update", "weighted_error", "adaboost_loss", "adaboost_begin_stage",
           "adaboost_end_stage", "gradientboost_loss", "gradientboost_begin_stage", "ADABOOST",
           "GRADIENTBOOST", "SAMPLE_WEIGHTS", "ERRORS", "ERR_CLIP"]

SAMPLE_WEIGHTS = "adaboost_sample_weights"   # state key: (n,) weights over the training set
ERRORS = "adaboost_errors"                   # state key: (N,) weighted training error per member
ERR_CLIP = 1e-10


def weighted_error(sample_weights: torch.Tensor, miss: torch.Tensor) -> float:
    """``sum_i w_i miss_i / sum_i w_i`` (SAMME step 2(b))."""
    w = sample_weights.double()
    return float((w * miss.double()).sum() / w.sum())


def samme_alpha(err: float, num_classes: int, clip: float = ERR_CLIP) -> float:
    """``log((1 - err) / err) + log(K - 1)`` with ``err`` clipped to ``[clip, 1 - clip]`` (SAMME 2(c))."""
    if num_classes < 2:
        raise ValueError(f"SAMME needs at least 2 classes, got {num_classes}")
    err = min(max(float(err), clip), 1 - clip)
    return math.log((1 - err) / err) + math.log(num_classes - 1)


def samme_update(sample_weights: torch.Tensor, miss: torch.Tensor, alpha: float) -> torch.Tensor:
    """``w_i exp(alpha miss_i)``, renormalised to sum 1 (SAMME 2(d)-(e)); computed in float64."""
    w = sample_weights.double() * torch.exp(alpha * miss.double())
    return (w / w.sum()).to(sample_weights.dtype)


@torch.no_grad()
def _predict(member, x, batch_size=500) -> tuple[torch.Tensor, int]:
    """Predicted classes of ``member`` (eval mode) on ``x``, and its number of classes."""
    with eval_mode(member):
        logits = [member(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat([z.argmax(-1) for z in logits]), logits[0].shape[-1]


def _zero_untrained(ensemble, k: int, weight_k: float) -> None:
    with torch.no_grad():
        ensemble.weights[k:] = 0.0
        ensemble.weights[k] = weight_k


def adaboost_begin_stage(ensemble, k, x_train, y_train, cfg, state) -> None:
    """SAMME step 1 (uniform sample weights) at stage 0; members ``>= k`` weigh 0 until fitted.

    Member 0 weighs 1 while it trains (the ensemble is then that member alone, whatever its
    weight); ``end_stage`` replaces it by ``alpha_0``.
    """
    if k == 0 or SAMPLE_WEIGHTS not in state:
        n = len(x_train)
        state[SAMPLE_WEIGHTS] = torch.full((n,), 1.0 / n, device=x_train.device)
        state[ERRORS] = torch.full((ensemble.num_members,), float("nan"), device=x_train.device)
    _zero_untrained(ensemble, k, 1.0 if k == 0 else 0.0)


def adaboost_loss(ensemble, x, y, cfg, ctx):
    """Member ``ctx.stage``'s cross-entropy weighted by the SAMME sample weights of the batch."""
    if ctx.index is None:
        raise ValueError("adaboost needs ctx.index (the batch's indices into the training set)")
    weights = ctx.state[SAMPLE_WEIGHTS]
    ce = F.cross_entropy(ensemble.member(ctx.stage)(x), y, reduction="none")
    loss = (weights.numel() * weights[ctx.index] * ce).mean()
    return loss, {"weighted_ce": loss}


def adaboost_end_stage(ensemble, k, x_train, y_train, cfg, state) -> None:
    """SAMME steps 2(b)-(d): error, member weight ``alpha_k`` (into ``ensemble.weights[k]``), reweighting."""
    pred, num_classes = _predict(ensemble.member(k), x_train)
    miss = (pred != y_train).to(state[SAMPLE_WEIGHTS].dtype)
    err = weighted_error(state[SAMPLE_WEIGHTS], miss)
    alpha = samme_alpha(err, num_classes)
    state[ERRORS][k] = err
    if alpha <= 0:
        if k == 0:
            raise ValueError(f"adaboost: member 0 is no better than chance on the training set "
                             f"(weighted error {err:.4f} >= 1 - 1/K = {1 - 1 / num_classes:.4f}); "
                             f"train it longer (epochs) or with another lr")
        alpha = 0.0  # discarded, as scikit-learn's SAMME does
    with torch.no_grad():
        ensemble.weights[k] = alpha
    if alpha > 0:
        state[SAMPLE_WEIGHTS] = samme_update(state[SAMPLE_WEIGHTS], miss, alpha)


def _shrunk_weight(k: int, cfg) -> float:
    return 1.0 if k == 0 else float(cfg.boost_shrinkage)


def gradientboost_begin_stage(ensemble, k, x_train, y_train, cfg, state) -> None:
    """Member ``k`` enters the additive model with weight 1 (``k = 0``) or ``nu``; later ones 0."""
    _zero_untrained(ensemble, k, _shrunk_weight(k, cfg))


def gradientboost_loss(ensemble, x, y, cfg, ctx):
    """``CE(F_{k-1}(x) + w_k f_k(x), y)``, ``F_{k-1}`` from the frozen earlier members (eval mode)."""
    k = ctx.stage
    w = ensemble.weights
    prior = 0.0
    if k > 0:
        with torch.no_grad():
            for j in range(k):
                member = ensemble.member(j)
                with eval_mode(member):
                    prior = prior + w[j] * member(x)
    logits = prior + w[k] * ensemble.member(k)(x)
    ce = F.cross_entropy(logits, y)
    return ce, {"ensemble_ce": ce}


ADABOOST = Method("adaboost", adaboost_loss, sequential=True, combine="weighted_softmax",
                  begin_stage=adaboost_begin_stage, end_stage=adaboost_end_stage,
                  doc="multi-class AdaBoost, SAMME (Hastie et al. 2009)")
GRADIENTBOOST = Method("gradientboost", gradientboost_loss, sequential=True, combine="sum_logits",
                       begin_stage=gradientboost_begin_stage,
                       doc="stagewise additive logits with shrinkage (Friedman 2001)")
