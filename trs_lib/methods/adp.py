"""ADP, Adaptive Diversity Promoting (Pang et al. 2019), the paper's ADP_{2,0.5} baseline.

Pang et al. (2019, Sec. 3) train all members jointly on

    L_ADP = sum_k CE(F^k(x), y) - alpha * H(F) - beta * log(ED),

* ``F = 1/K sum_k F^k`` the ensemble's mean prediction (softmax outputs) and
  ``H(F) = -sum_i F_i log F_i`` its Shannon entropy (the ensemble entropy);
* ``ED = det(M^T M)`` the ensemble diversity, ``M = (F~^1_\\y, ..., F~^K_\\y)`` of shape
  (L-1, K), whose column ``k`` is member ``k``'s *non-maximal* prediction: ``F^k`` with the
  true class ``y`` removed, scaled to unit L2 norm. ``ED`` is the squared volume spanned by the
  members' predictions on the wrong classes; maximising it makes the members disagree there
  while all of them keep the true class.

Both terms are computed per example and averaged over the batch. As in the authors' code,
``log(p + 1e-20)`` keeps the entropy finite and ``det_offset * I`` (1e-6) is added to ``M^T M``
before the log-determinant, so it stays finite when two members agree exactly. The normalised
non-maximal predictions are computed from the logits (the same numbers, without the 0/0 that the
probabilities give once a confident member's wrong-class probabilities underflow). The paper uses
``alpha = 2``, ``beta = 0.5`` (its "ADP_{2,0.5}", Tables 1-4, as in Pang et al.'s experiments).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method

__all__ = ["ensemble_entropy", "non_maximal_predictions", "log_ensemble_diversity", "adp_loss",
           "ADP", "LOG_OFFSET", "DET_OFFSET"]

LOG_OFFSET = 1e-20   # Pang et al.'s code: log(p + 1e-20)
DET_OFFSET = 1e-6    # Pang et al.'s code: logdet(M^T M + 1e-6 I)


def ensemble_entropy(probs: torch.Tensor, log_offset: float = LOG_OFFSET) -> torch.Tensor:
    """``H(1/K sum_k p_k)`` per example, (B,), from member probabilities (K, B, L)."""
    mean = probs.mean(0)
    return -(mean * torch.log(mean + log_offset)).sum(-1)


def non_maximal_predictions(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Member predictions with the true class removed, unit L2 norm: (B, K, L-1), from logits (K, B, L).

    ``p_\\y / ||p_\\y||`` does not depend on the softmax's denominator, so it is computed from
    the logits as ``exp(z_j - logsumexp(2 z_\\y) / 2)``: exact, and finite even where a confident
    member's probabilities of the wrong classes underflow to 0 (the probability form gives 0/0).
    """
    k, b, c = logits.shape
    keep = torch.ones(b, c, dtype=torch.bool, device=logits.device)
    keep[torch.arange(b, device=logits.device), y] = False
    z = logits.permute(1, 0, 2)[keep.unsqueeze(1).expand(b, k, c)].view(b, k, c - 1)
    return torch.exp(z - 0.5 * torch.logsumexp(2 * z, dim=-1, keepdim=True))


def log_ensemble_diversity(logits: torch.Tensor, y: torch.Tensor,
                           det_offset: float = DET_OFFSET) -> torch.Tensor:
    """``log det(M^T M + det_offset I)`` per example, (B,), from member logits (K, B, L)."""
    m = non_maximal_predictions(logits, y)             # (B, K, L-1): rows are M's columns
    gram = m @ m.transpose(1, 2)                        # (B, K, K) = M^T M
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.logdet(gram + det_offset * eye)


def adp_loss(ensemble, x, y, cfg, ctx):
    """``sum_k CE_k - adp_alpha * mean_b H - adp_beta * mean_b log ED`` (Pang et al. 2019)."""
    logits = ensemble.member_logits(x)                  # (K, B, L)
    n = logits.shape[0]
    ece = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").view(n, -1).mean(1).sum()
    probs = torch.softmax(logits, dim=-1)
    entropy = ensemble_entropy(probs).mean()
    log_ed = log_ensemble_diversity(logits, y).mean()
    loss = ece - cfg.adp_alpha * entropy - cfg.adp_beta * log_ed
    return loss, {"ce": ece, "entropy_term": -cfg.adp_alpha * entropy,
                  "diversity_term": -cfg.adp_beta * log_ed}


ADP = Method("adp", adp_loss, doc="ECE - alpha * ensemble entropy - beta * log det of normalised "
                                  "non-maximal predictions (Pang et al. 2019)")
