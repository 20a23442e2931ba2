"""Evaluation of ensembles: clean accuracy and input-gradient alignment of members.

Everything is batched on the ensemble's device; ``batch_size`` bounds the memory.
"""
from __future__ import annotations

import torch

from . import trs as T

__all__ = ["predict_logits", "clean_accuracy", "member_accuracies", "gradient_cosine",
           "device_of"]


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predict_logits(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``model(x)`` in batches, on the model's device; returns a tensor on that device."""
    dev = device_of(model)
    return torch.cat([model(x[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def clean_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (argmax of logits or log-probs)."""
    pred = predict_logits(model, x, batch_size).argmax(-1)
    return (pred == y.to(pred.device)).float().mean().item()


@torch.no_grad()
def member_accuracies(ensemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> dict:
    """Clean accuracy of every member and of the ensemble, from one pass of member logits."""
    dev = device_of(ensemble)
    logits = torch.cat([ensemble.member_logits(x[i:i + batch_size].to(dev))
                        for i in range(0, len(x), batch_size)], dim=1)  # (N, B, C)
    y = y.to(dev)
    members = (logits.argmax(-1) == y).float().mean(1).tolist()
    ens = (ensemble.combine_member_logits(logits).argmax(-1) == y).float().mean().item()
    return {"members": members, "ensemble": ens}


def gradient_cosine(ensemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict:
    """Cosine of the members' input-loss gradients over ``x``, per pair and overall.

    Returns ``mean_abs_cos`` (mean over pairs and points of |cos|), ``mean_cos`` and the
    per-pair means ``pairs`` (list of ``[j, k, mean cos]``). Needs at least 2 members.
    """
    dev = device_of(ensemble)
    was_training = ensemble.training
    ensemble.eval()
    cos = []
    try:
        for i in range(0, len(x), batch_size):
            _, g = T.input_gradients(ensemble.member_logits, x[i:i + batch_size].to(dev),
                                     y[i:i + batch_size].to(dev), create_graph=False)
            cos.append(T.pairwise_cosine(g).detach())
    finally:
        ensemble.train(was_training)
    cos = torch.cat(cos, dim=1)  # (P, B)
    j, k = T.pair_indices(ensemble.num_members)
    pairs = [[int(a), int(b), float(c)] for a, b, c in zip(j, k, cos.mean(1))]
    return {"mean_abs_cos": cos.abs().mean().item(), "mean_cos": cos.mean().item(), "pairs": pairs}
