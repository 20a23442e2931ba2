"""Attack suite: one pure function per file, ``attack(model, x, y, **params) -> x_adv``.

Every attack takes inputs in [0, 1], returns a detached tensor clipped to [0, 1], runs batched
on the model's device, and works for models that return logits or log-probabilities (the
ensemble). Putting the model in eval mode is the caller's job. ``get(name)`` is the registry.
"""
from __future__ import annotations

import importlib

__all__ = ["ATTACKS", "get"]

#: attack name -> (module, function); imported lazily so a broken attack never blocks the others.
ATTACKS = {
    "fgsm": ("fgsm", "fgsm"),
    "bim": ("bim", "bim"),
    "pgd": ("pgd", "pgd"),
    "mim": ("mim", "mim"),
    "cw": ("cw", "cw"),
    "ead": ("ead", "ead"),
    "jsma": ("jsma", "jsma"),
    "ila": ("ila", "ila"),
    "apgd_ce": ("apgd", "apgd_ce"),
    "apgd_dlr": ("apgd", "apgd_dlr"),
    "apgd_t": ("apgd_t", "apgd_t"),
    "pgd_l2": ("pgd_l2", "pgd_l2"),
    "square": ("square", "square"),
    "ddn": ("ddn", "ddn"),
    "reweigh": ("reweigh", "reweigh"),
    # transfer attacks from torchattack (trs_lib.attacks.transfer_attacks)
    **{n: ("transfer_attacks", n) for n in ("mi_fgsm", "di_fgsm", "ti_fgsm", "ni_fgsm", "si_ni_fgsm",
                                            "vmi_fgsm", "admix", "sgm", "ilpd", "fia")},
}


def get(name: str):
    """The attack function registered as ``name`` (see ``ATTACKS``)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid names: {sorted(ATTACKS)}")
    mod, fn = ATTACKS[name]
    return getattr(importlib.import_module(f"{__name__}.{mod}"), fn)
