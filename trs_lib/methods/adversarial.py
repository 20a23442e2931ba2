"""TRS + AT (paper App. H, Tables 3-4): the TRS loss plus PGD adversarial training (Madry et al.).

"AT means adding adversarial training loss" (Table 3), PGD adversarial training [24]; the paper
does not write the loss out, and its released code has the flag but never uses it. This
companion uses

    L = L_TRS(x, y) + sum_k CE(f_k(x_adv), y),   x_adv = PGD_{at_eps, at_steps, at_step_size}(ensemble, x, y),

i.e. the clean TRS objective (ECE + TRS regulariser, ``trs_lib.methods.trs``) plus each
member's cross-entropy on L-inf PGD examples crafted against the whole ensemble (its
``log mean softmax`` output), with a random start (Madry et al. 2018) and the members in eval
mode, so the attack leaves BatchNorm statistics alone. Summing member losses (rather than the
ensemble's) keeps the adversarial term on the scale of the ECE and makes every member robust on
its own, as in the adversarial variant of ADP in the DVERGE authors' code. The paper does not
give the PGD settings of its adversarial training; the data-set recipes set them (MNIST
``eps = 0.1``, 10 steps of 0.01; CIFAR-10 ``eps = 0.02``, 10 steps of 0.002), budgets among those
the paper attacks with (Tables 3-4).
"""
from __future__ import annotations

import torch.nn.functional as F

from ..attacks.pgd import pgd
from .base import Method, eval_mode
from .trs import trs_loss

__all__ = ["adversarial_examples", "trs_at_loss", "TRS_AT"]


def adversarial_examples(ensemble, x, y, cfg, ctx):
    """PGD examples against the ensemble (eval mode, random start), detached."""
    with eval_mode(ensemble):
        return pgd(ensemble, x, y, eps=cfg.at_eps, steps=cfg.at_steps, step_size=cfg.at_step_size,
                   random_start=True, generator=ctx.generator)


def trs_at_loss(ensemble, x, y, cfg, ctx):
    """``L_TRS(x, y) + sum_k CE(f_k(x_adv), y)`` (see module doc)."""
    x_adv = adversarial_examples(ensemble, x, y, cfg, ctx)
    loss, terms = trs_loss(ensemble, x, y, cfg, ctx)
    logits = ensemble.member_logits(x_adv)
    n = logits.shape[0]
    adv = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").view(n, -1).mean(1).sum()
    return loss + adv, {**terms, "adv_ce": adv}


TRS_AT = Method("trs_at", trs_at_loss, doc="TRS + PGD adversarial training (paper App. H)")
