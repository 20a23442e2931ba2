"""How a reader names a column: the paper's labels without TeX, the grid's extra columns, and
a rung's tag (``TRS (ResNet-20)``). Below both the pages and the dashboard."""
from __future__ import annotations

import re

from . import grid

__all__ = ["EXTRA_LABELS", "label", "readable", "column_label"]

# Columns the grid adds beyond the paper's, as a reader would name them.
EXTRA_LABELS = {"trs_published": "TRS (as published)", "gal": "GAL", "dverge": "DVERGE",
                "vanilla": "vanilla", "lotos": "LOTOS", "trs_lotos": "TRS + LOTOS"}

_SUB = re.compile(r"^(?P<name>\w+) ?_\{(?P<a>[^,}]+),(?P<b>[^}]+)\}$")


def label(text: str) -> str:
    """A column label as the paper means it, without TeX: ``ADP_{2,0.5}`` (the paper's
    ADP with alpha = 2, beta = 0.5, Sec. 4.1) becomes ``ADP (α = 2, β = 0.5)``."""
    m = _SUB.match(str(text).strip())
    if m and m["name"] == "ADP":
        return f"ADP (α = {m['a'].strip()}, β = {m['b'].strip()})"
    if m:
        return f"{m['name']} ({m['a'].strip()}, {m['b'].strip()})"
    return str(text)


_SUB_ANY = re.compile(r"\b(?P<name>[A-Za-z]+) ?_\{(?P<a>[^,}]+),(?P<b>[^}]+)\}")


def readable(text: str) -> str:
    """``text`` with every ``NAME_{a,b}`` label replaced by :func:`label`'s form."""
    return _SUB_ANY.sub(lambda m: label(m.group(0).replace(" _{", "_{")), str(text))


def column_label(column: str, table_labels: dict, rung=None) -> str:
    """How a reader names ``column``: the paper's label in its table (``table_labels``, column ->
    label as printed), else :data:`EXTRA_LABELS`, made readable by :func:`label`; a column of
    a rung with a ``label`` carries it (``TRS (ResNet-20)``)."""
    name = label(table_labels.get(column, EXTRA_LABELS.get(column, column)))
    tag = "" if rung is None else grid.rung(rung).label
    return f"{name} ({tag})" if tag else name
