"""The TRS regulariser as pure functions of tensors (paper Sec. 3, Algorithm 1, App. E).

The seed paper writes ``L_TRS(x, y) = (x (x) y) / sqrt((x (x) x)(y (x) y)) + lam1 ||x|| + lam2 ||y||``
with ``(x)`` "the Frobenius norm of the outer product". Read literally that ratio is
``|x||y| / sqrt(|x|^2 |y|^2) = 1`` for every pair (the theory chapter shows it with sympy), so
its gradient is zero. What the paper evidently means, and what its later published version and
its released code compute, is the cosine similarity of the two input gradients. This module
implements that cosine (see ``book/errata.md``).

Two variants, one function (:func:`trs_regularizer`):

* ``seed``: ``sum_{j<k} mean_b [cos(g_j, g_k) + lam (||g_j|| + ||g_k||)]``, all at the clean batch
  (Sec. 3; lam = lambda_1 = lambda_2).
* ``published``: the authors' released loss (``train/Empirical/trainer.py``, ``TRS_Trainer``;
  ``utils/Empirical/utils_ensemble.py``, ``Cosine`` and ``Magnitude``), at their scale and with
  their names: ``scale * (coeff * cos_loss + lamda * smooth_loss)`` with ``cos_loss`` the mean
  over pairs of ``mean_b |cos(g_j, g_k)|`` and ``smooth_loss`` the mean over members of
  ``Magnitude(h_k) = 2 mean_b ||h_kb||^2``, where ``h_k`` are the input gradients of the
  *batch-mean* cross-entropy at the smoothness inputs (clean half + a PGD-perturbed half).
  Their code divides by 3 (three members); here the means run over the pairs and the members,
  which equals theirs at k = 3.

Gradients ``g_k`` passed around here are per-example input gradients of the cross-entropy, i.e.
the rows of ``d/dx sum_b CE(f_k(x_b), y_b)`` (the batch size does not scale them); the published
terms divide by the batch size themselves, since the authors' ``h = g / B``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .double_backward import cheap_double_backward

__all__ = ["input_gradients", "safe_norm", "pairwise_cosine", "seed_regularizer",
           "published_regularizer", "trs_regularizer", "pair_indices", "VARIANTS",
           "smoothness_inputs", "pgd_start_noise", "magnitude"]

VARIANTS = ("seed", "published")
_EPS = 1e-12


def _each_input_fn(member_logits_fn):
    """``(owner.member_logits_each, owner.num_members)`` when ``member_logits_fn`` is
    ``owner.member_logits`` of an object that also takes per-member inputs
    (:class:`trs_lib.ensemble.Ensemble`), else ``(None, 0)``."""
    owner = getattr(member_logits_fn, "__self__", None)
    each = getattr(owner, "member_logits_each", None)
    if each is None or getattr(owner, "member_logits", None) != member_logits_fn:
        return None, 0
    return each, owner.num_members


def _grads_and_leaves(member_logits_fn, x, y, create_graph):
    """``(ce (N, B), grads (N, B, D), leaves)``: ``leaves`` are the tensors the gradients are
    taken at (N leaves for an ``Ensemble``, else one), for a further derivative in x.

    The forward runs in ``double_backward.cheap_double_backward`` (PyTorch's kernels, cheaper
    second derivatives); differentiating with respect to the inputs only, its convolutions build
    no weight-gradient terms (``double_backward._wanted``).
    """
    each, n = _each_input_fn(member_logits_fn)
    if each is not None:
        leaves = [x.detach().requires_grad_(True) for _ in range(n)]
        with cheap_double_backward():
            logits = each(leaves)
        ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").view(n, -1)
        grads = torch.autograd.grad(ce.sum(), leaves, create_graph=create_graph)
        return ce, torch.stack([g.flatten(1) for g in grads]), leaves
    leaf = x.detach().requires_grad_(True)
    with cheap_double_backward():
        logits = member_logits_fn(leaf)
    n = logits.shape[0]
    ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").view(n, -1)
    grads = []
    for k in range(n):
        (g,) = torch.autograd.grad(ce[k].sum(), leaf, create_graph=create_graph, retain_graph=True)
        grads.append(g.flatten(1))
    return ce, torch.stack(grads), [leaf]


def input_gradients(member_logits_fn, x: torch.Tensor, y: torch.Tensor,
                    create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member cross-entropy (N,) and per-example input gradients (N, B, D).

    ``member_logits_fn(x)`` returns logits of shape (N, B, C) (``Ensemble.member_logits``).
    With ``create_graph=True`` the gradients are differentiable (double backprop), so a loss
    built from them trains the parameters; they are computed once and serve every term.

    For an ``Ensemble``'s ``member_logits`` each member gets its own autograd leaf (a view of
    ``x``, ``Ensemble.member_logits_each``), so one backward pass yields all N gradients and each
    member's graph is walked once. Any other callable takes N backward passes, each of which also
    walks the other members' graphs with zero gradients (N times the work, same values).
    """
    ce, grads, _ = _grads_and_leaves(member_logits_fn, x, y, create_graph)
    return ce.mean(1), grads


def safe_norm(g: torch.Tensor, dim: int = -1, eps: float = _EPS) -> torch.Tensor:
    """``sqrt(sum g^2 + eps)``: the L2 norm with a finite gradient at g = 0."""
    return torch.sqrt((g * g).sum(dim) + eps)


def pair_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors (j, k) of all pairs j < k of n members."""
    if n < 2:
        raise ValueError(f"pairwise terms need at least 2 members, got {n}")
    j, k = torch.triu_indices(n, n, offset=1)
    return j, k


def pairwise_cosine(grads: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Cosine similarity of every pair j<k of member gradients: (P, B) from grads (N, B, D).

    A zero gradient gives cosine 0 (not NaN), with finite derivatives.
    """
    j, k = pair_indices(grads.shape[0])
    unit = grads / safe_norm(grads, eps=eps).unsqueeze(-1)
    return (unit[j] * unit[k]).sum(-1)


def seed_regularizer(grads: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
    """Seed TRS (Sec. 3): per pair, mean over the batch of cos + lam (||g_j|| + ||g_k||), summed.

    Returns the two terms: ``similarity`` = sum_{j<k} mean_b cos, ``smoothness`` =
    lam * sum_{j<k} mean_b (||g_j|| + ||g_k||).
    """
    j, k = pair_indices(grads.shape[0])
    norms = safe_norm(grads)  # (N, B)
    similarity = pairwise_cosine(grads).mean(1).sum()
    smoothness = lam * (norms[j] + norms[k]).mean(1).sum()
    return {"similarity": similarity, "smoothness": smoothness}


def magnitude(h: torch.Tensor) -> torch.Tensor:
    """The authors' ``Magnitude``: ``2 mean_b ||h_b||^2`` of gradients h (..., B, D), per leading index."""
    return 2 * (h * h).sum(-1).mean(-1)


def published_regularizer(grads: torch.Tensor, smooth_grads: torch.Tensor, coeff: float,
                          lamda: float, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Published TRS at the authors' scale (``TRS_Trainer``): ``scale * coeff * cos_loss`` and
    ``scale * lamda * smooth_loss``.

    ``grads`` (N, B, D) and ``smooth_grads`` (N, B', D) are per-example input gradients (rows of
    the gradient of the summed cross-entropy); the authors differentiate the batch mean, so their
    gradients are these divided by the batch size, and so they are here. ``cos_loss`` = mean over
    pairs j < k of ``mean_b |cos(g_j, g_k)|`` (their ``Cosine``: ``F.cosine_similarity``, eps
    1e-8, on their scaled gradients); ``smooth_loss`` = mean over members of ``Magnitude``.
    """
    h = grads / grads.shape[1]
    j, k = pair_indices(grads.shape[0])
    cos_loss = F.cosine_similarity(h[j], h[k], dim=-1).abs().mean()
    smooth_loss = magnitude(smooth_grads / smooth_grads.shape[1]).mean()
    return {"similarity": scale * coeff * cos_loss, "smoothness": scale * lamda * smooth_loss}


def trs_regularizer(grads: torch.Tensor, variant: str = "seed", *, lam: float = 0.1,
                    c: float = 1.0, smooth_grads: torch.Tensor | None = None,
                    coeff: float = 2.0, lamda: float = 2.0,
                    scale: float = 5.0) -> dict[str, torch.Tensor]:
    """The TRS terms, weighted and ready to add to the ensemble cross-entropy.

    ``seed``: ``c * (similarity + smoothness)`` with ``lam`` the seed's lambda_1 = lambda_2.
    ``published``: :func:`published_regularizer` with the authors' ``coeff``, ``lamda``,
    ``scale`` (defaults: their MNIST values); ``smooth_grads`` are the input gradients at the
    smoothness inputs (default: ``grads``).
    """
    if variant == "seed":
        terms = seed_regularizer(grads, lam)
        return {name: c * v for name, v in terms.items()}
    if variant == "published":
        return published_regularizer(grads, grads if smooth_grads is None else smooth_grads,
                                     coeff, lamda, scale)
    raise ValueError(f"unknown TRS variant {variant!r}; valid names: {list(VARIANTS)}")


def pgd_start_noise(shape, eps: float, generator: torch.Generator | None = None,
                    like: torch.Tensor | None = None) -> torch.Tensor:
    """The smoothness PGD's random start: uniform on [-eps, eps] (the authors'
    ``uniform_(-eps, eps)``), drawn from ``generator`` on ``like``'s device and dtype."""
    kw = {} if like is None else dict(device=like.device, dtype=like.dtype)
    return (2 * torch.rand(shape, generator=generator, **kw) - 1) * eps


def smoothness_inputs(member_logits_fn, x: torch.Tensor, y: torch.Tensor, eps: float,
                      steps: int = 6, generator: torch.Generator | None = None, *,
                      running_sum: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Published TRS's smoothness inputs: half of the batch moved by L-inf PGD (random start,
    ``steps`` steps of ``eps/3``) to maximise ``sum_k ||grad_x CE_k||^2`` of all members at once
    (the authors' ``PGD``; their objective ``sum_k Magnitude / 3`` is this one times a positive
    constant, so every sign is the same).

    The first half of the batch is returned clean. Each step is one forward, one backward with
    graph and one double backward of all members, taken with respect to the inputs only: no
    parameter gradient is computed (the authors' ``backward()`` accumulates parameter gradients
    that their ``zero_grad`` then discards).

    * ``running_sum=False`` (fast): each step takes the sign of its own gradient. Call it with
      the members in eval mode (``trs_lib.methods.eval_mode``), so BatchNorm is a fixed affine
      map and its running statistics do not absorb the perturbed inputs.
    * ``running_sum=True`` (the authors'): each step takes the sign of the sum of all the steps'
      input gradients so far (their ``adv.grad`` is never zeroed). Called with the members in
      training mode, each step updates each member's BatchNorm statistics once, as theirs does.

    ``noise`` (optional): the random start, shape of the perturbed half (default:
    :func:`pgd_start_noise` from ``generator``).
    """
    half = x.shape[0] // 2
    clean, start = x[:half], x[half:].detach()
    adv = start
    if adv.shape[0] > 0 and (eps > 0 or running_sum):   # the authors' runs even at eps = 0
        if noise is None:
            noise = pgd_start_noise(adv.shape, eps, generator, like=adv)
        adv = (adv + noise).clamp(0, 1)
        low, high = (start - eps).clamp(min=0), (start + eps).clamp(max=1)
        total = None
        for _ in range(steps):
            _, g, leaves = _grads_and_leaves(member_logits_fn, adv, y[half:], create_graph=True)
            step = sum(torch.autograd.grad((g * g).sum(), leaves))
            if running_sum:
                total = step if total is None else total + step
                step = total
            adv = torch.min(torch.max(adv + eps / 3 * step.sign(), low), high)
    return torch.cat([clean, adv.detach()])
