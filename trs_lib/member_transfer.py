"""Transfer between the members of one ensemble: the transfer matrices of Figures 2-4 (an
attack crafted on member j, evaluated on member i) and ILA crafted on one member (Table 6),
batched on the model's device."""
from __future__ import annotations

import torch

from .worst_case import _resolve, _takes, attack_batched, device_of, interval_fields, run_batched
from .attacks import ila as _ila

__all__ = ["member_correct", "transfer_matrix", "ila_table", "ila_layer_sweep"]


@torch.no_grad()
def member_correct(ensemble, x, y, batch_size):
    """(N+1, B) bool: every member's correctness, then the ensemble's (one member pass)."""
    dev = device_of(ensemble)

    def one(a, b):
        logits = ensemble.member_logits(x[a:b].to(dev))
        yy = y[a:b].to(dev)
        rows = [(logits.argmax(-1) == yy), (ensemble.combine_member_logits(logits).argmax(-1) == yy)[None]]
        return torch.cat(rows).cpu()

    outs, bs = run_batched(one, len(x), batch_size)
    return torch.cat(outs, dim=1), bs


def transfer_matrix(ensemble, x: torch.Tensor, y: torch.Tensor, attack="pgd", *, batch_size: int = 256,
                    progress: bool = True, seed: int = 0, **params) -> dict:
    """Member-to-member transferability (Figures 2-4 of the paper).

    ``matrix[i][j]`` is the accuracy of member ``i`` on adversarial examples crafted against
    member ``j`` alone (white-box on the diagonal). ``ensemble_row[j]``: accuracy of the whole
    ensemble on the examples crafted against member ``j``. Accuracies are fractions.
    """
    name, fn = _resolve(attack)
    n_members = ensemble.num_members
    mat, ens_row, bs = [], [], batch_size
    for j in range(n_members):
        kw = dict(params)
        if _takes(fn, "generator"):
            kw["generator"] = torch.Generator().manual_seed(seed + j)
        x_adv, bs = attack_batched(fn, ensemble.member(j), x, y, batch_size=bs, progress=progress,
                                   desc=f"{name} on member {j + 1}", **kw)
        correct, bs = member_correct(ensemble, x_adv, y, bs)
        acc = correct.float().mean(1).tolist()
        mat.append(acc[:n_members])
        ens_row.append(acc[n_members])
    matrix = [[mat[j][i] for j in range(n_members)] for i in range(n_members)]  # [evaluated][crafted]
    return {"attack": name, "params": dict(params), "matrix": matrix, "ensemble_row": ens_row,
            "n": len(x), "batch_size": bs}


def ila_table(ensemble, x: torch.Tensor, y: torch.Tensor, *, eps: float, source: int = 0,
              steps: int = 10, batch_size: int = 256, progress: bool = True, layer: str | None = None,
              guide_steps: int = 10, **params) -> dict:
    """Table 6: ILA crafted on member ``source`` (0 = the paper's sub-model 1), then the accuracy
    of every member and of the ensemble on it. ``accuracy_by_model`` keys: ``member1``..., ``ensemble``.

    ILA starts at ``x`` (Huang et al.); its guide is BIM(``eps``, ``guide_steps``) on the source.
    Also returned: ``layer`` (the layer used), ``accuracy_by_model_guide`` (on the BIM guide alone),
    ``accuracy_by_model_best`` ("ILA (best of)": a point counts as robust for a model only if it
    survives both ILA and its BIM source), and ``correct``/``ci95`` of the ensemble (C1)."""
    if not isinstance(source, int) or not 0 <= source < ensemble.num_members:
        raise ValueError(f"source must be a member index in [0, {ensemble.num_members - 1}], got {source!r}")
    src = ensemble.member(source)
    layer = layer or _ila.default_layer(src)
    x_guide, bs = attack_batched("bim", src, x, y, batch_size=batch_size, progress=progress,
                                 desc=f"bim guide on member {source + 1}", eps=eps, steps=guide_steps)
    dev = device_of(ensemble)

    def one(a, b):
        return _ila.ila(src, x[a:b].to(dev), y[a:b].to(dev), eps=eps, steps=steps, layer=layer,
                        x_guide=x_guide[a:b].to(dev), **params).to(x.device)

    outs, bs = run_batched(one, len(x), bs, progress=progress, desc=f"ila on member {source + 1}")
    x_adv = torch.cat(outs)
    correct, bs = member_correct(ensemble, x_adv, y, bs)
    guide_ok, bs = member_correct(ensemble, x_guide, y, bs)
    best = correct & guide_ok

    def by(c):
        acc = c.float().mean(1).tolist()
        d = {f"member{k + 1}": acc[k] for k in range(ensemble.num_members)}
        d["ensemble"] = acc[-1]
        return d

    fields = interval_fields(correct[-1])
    return {"attack": "ila", "eps": eps, "steps": steps, "source": source, "layer": layer,
            "accuracy_by_model": by(correct), "accuracy_by_model_guide": by(guide_ok),
            "accuracy_by_model_best": by(best), "correct": fields["correct"], "ci95": fields["ci95"],
            "best_of": interval_fields(best[-1]), "n": len(x), "batch_size": bs}


def ila_layer_sweep(ensemble, x: torch.Tensor, y: torch.Tensor, *, eps: float, layers=None,
                    source: int = 0, steps: int = 10, batch_size: int = 256, progress: bool = False) -> list:
    """ILA from member ``source`` at each of ``layers`` (default: every named child module with
    parameters of the source member); one row per layer with the ensemble's and the source's accuracy
    under ILA and under "ILA (best of)"."""
    src = ensemble.member(source)
    if layers is None:
        layers = [n for n, m in src.named_children() if any(True for _ in m.parameters())]
    names = dict(src.named_modules())
    bad = [l for l in layers if l not in names or not l]
    if bad:
        raise ValueError(f"unknown layers {bad}; valid layers: {[n for n in names if n]}")
    out = []
    for layer in layers:
        r = ila_table(ensemble, x, y, eps=eps, source=source, steps=steps, batch_size=batch_size,
                      progress=progress, layer=layer)
        out.append({"layer": layer, "ensemble": r["accuracy_by_model"]["ensemble"],
                    "ensemble_best_of": r["accuracy_by_model_best"]["ensemble"],
                    "ensemble_bim_guide": r["accuracy_by_model_guide"]["ensemble"],
                    f"member{source + 1}": r["accuracy_by_model"][f"member{source + 1}"],
                    "ci95": r["ci95"]})
    return out
