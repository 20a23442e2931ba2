"""The theory chapter's checks as data: ``check_table`` ends each notebook with a pass/fail table,
``findings()`` lists the chapter's verdicts (read by the book's dashboard)."""
from __future__ import annotations

import math
from numbers import Integral

import pandas as pd
from .definitions import total_variation, total_variation_by_events, trs_similarity_literal
from .exact import main_text_counterexample
from .validity import search_theorem1, search_theorem2, summarize

__all__ = ["check_table", "glue_check_counts", "findings", "CHECK_COLUMNS"]

CHECK_COLUMNS = ["name", "what is checked", "cases", "violations", "verdict"]


def check_table(rows) -> pd.DataFrame:
    """A pass/fail table: one row per check, columns ``name, what is checked, cases, violations,
    verdict``.

    ``rows``: dicts with keys ``name``, ``what`` (or ``"what is checked"``), ``cases`` (how many
    instances were checked, an int >= 0) and ``violations`` (how many failed, 0..cases), or
    tuples in that order. The verdict is ``"pass"`` (cases > 0, no violation), ``"fail"`` (a
    violation) or ``"no cases"`` (nothing was checked: not a pass).
    """
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            unknown = set(row) - {"name", "what", "what is checked", "cases", "violations"}
            if unknown:
                raise ValueError(f"row {i}: unknown keys {sorted(unknown)}; valid keys: "
                                 f"['name', 'what', 'cases', 'violations']")
            what = row.get("what", row.get("what is checked"))
            name, cases, violations = row.get("name"), row.get("cases"), row.get("violations")
        else:
            if len(row) != 4:
                raise ValueError(f"row {i}: expected (name, what, cases, violations), got {row!r}")
            name, what, cases, violations = row
        if not isinstance(name, str) or not name or not isinstance(what, str) or not what:
            raise ValueError(f"row {i}: name and what must be non-empty strings, got "
                             f"{name!r}, {what!r}")
        for key, value in (("cases", cases), ("violations", violations)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                raise ValueError(f"row {i} ({name}): {key} must be an integer >= 0, got {value!r}")
        if violations > cases:
            raise ValueError(f"row {i} ({name}): violations ({violations}) exceed cases ({cases})")
        verdict = "fail" if violations else ("pass" if cases else "no cases")
        out.append([name, what, int(cases), int(violations), verdict])
    return pd.DataFrame(out, columns=CHECK_COLUMNS)


def glue_check_counts(table: pd.DataFrame) -> dict:
    """Glue a check table's counts into the running notebook (MyST-NB ``glue``, no display) under
    the keys ``checks_total``, ``checks_pass``, ``checks_fail``, so that ``book/theory.md`` can
    paste them with ``{glue:text}`` from each chapter. Returns the counts."""
    from myst_nb import glue

    if list(table.columns) != CHECK_COLUMNS:
        raise ValueError(f"expected a check_table with columns {CHECK_COLUMNS}, got {list(table.columns)}")
    counts = {"checks_total": len(table), "checks_pass": int((table["verdict"] == "pass").sum()),
              "checks_fail": int((table["verdict"] == "fail").sum())}
    for key, value in counts.items():
        glue(key, value, display=False)
    return counts


def _fmt(v, digits=3):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def findings(size: str = "small") -> list[dict]:
    """The theory chapter's verdicts, each computed now (a few seconds at ``size="small"``).

    Returns dicts ``{id, statement, verdict, page, evidence}`` with ``verdict`` one of
    ``"holds"``, ``"refuted"``, ``"holds, never informative"``, ``"vacuous at this scale"``,
    ``"confirmed"``. ``size="full"`` runs the validity searches at the notebook's size.
    """
    from fractions import Fraction

    import torch


    sizes = {"tiny": (300, 3), "small": (1500, 12), "full": (6000, 160)}
    if size not in sizes:
        raise ValueError(f"unknown size {size!r}; valid: {sorted(sizes)}")
    n1, n2 = sizes[size]
    cx = main_text_counterexample()
    t, b = cx["terms"], cx["bounds"]
    s1 = summarize(search_theorem1(n1, seed=0))
    sB = search_theorem1(n1, seed=0, targeted=True)
    s2 = summarize(search_theorem2(n2, seed=0))
    sC = summarize(search_theorem2(n2, seed=0, targeted=True))
    p, q = [Fraction(1, 2), Fraction(1, 2), Fraction(0)], [Fraction(0), Fraction(1, 2), Fraction(1, 2)]
    lit = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    lit_val = trs_similarity_literal(lit, lit.flip(1) - 5).item()

    def search_text(s, name):
        return (f"{s['informative']} informative cases of {s['cases']} ({name}), "
                f"{s['violations']} violations, smallest slack {_fmt(s['min_slack'])}")

    return [
        {"id": "thm1-main-text", "verdict": "refuted", "page": "03_bounds",
         "statement": "Theorem 1 as printed in Sec. 2.2.2 (with the upper similarity) is a lower "
                      "bound on transferability.",
         "evidence": f"one-point distribution, two 3-class linear softmax models, exact attack and "
                     f"terms (beta = {_fmt(t['beta'], 4)}, c_F = {_fmt(t['c_F'])}, c_G = "
                     f"{_fmt(t['c_G'])}): printed bound {_fmt(b['lower_main_text'])} > true "
                     f"transferability {_fmt(t['transferability'])}; appendix form "
                     f"{_fmt(b['lower'])}"},
        {"id": "thm1-appendix", "verdict": "holds" if s1["violations"] == 0 else "refuted",
         "page": "03_bounds",
         "statement": "Theorem 1 in the appendix form (Eq. B.38, lower similarity, with "
                      "eps - c_G > 0) is a lower bound where it is informative.",
         "evidence": search_text(s1, "binary logistic, exact")},
        {"id": "thmB-targeted", "page": "03_bounds",
         "verdict": "holds, never informative" if (sB["bound"] <= 0).all() else "refuted",
         "statement": "The targeted lower bound (Theorem B, Eq. B.29) can be positive.",
         "evidence": f"proved never positive for beta-smooth models (chapter 03); in "
                     f"{len(sB)} exact cases its largest value is {_fmt(sB['bound'].max())}"},
        {"id": "thm2-upper", "verdict": "holds" if s2["violations"] == 0 else "refuted",
         "page": "03_bounds",
         "statement": "Theorem 2 (Eq. C.21) is an upper bound where it is informative.",
         "evidence": search_text(s2, "3-class linear, junction supports")},
        {"id": "thmC-targeted-upper", "verdict": "holds" if sC["violations"] == 0 else "refuted",
         "page": "03_bounds",
         "statement": "Theorem C (Eq. C.1, targeted upper bound) is an upper bound where it is "
                      "informative.",
         "evidence": search_text(sC, "3-class linear, junction supports")},
        {"id": "def7-tv-half", "verdict": "confirmed", "page": "01_definitions",
         "statement": "Definition 7's total variation is half the l1 distance, not the l1 "
                      "distance.",
         "evidence": f"p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): TV by events "
                     f"{total_variation_by_events(p, q)}, half l1 {total_variation(p, q)}, "
                     f"l1 {2 * total_variation(p, q)}"},
        {"id": "trs-literal-constant", "verdict": "confirmed", "page": "01_definitions",
         "statement": "The TRS similarity term of Sec. 3, read literally, is identically 1.",
         "evidence": f"value on a random pair: {lit_val!r} (sympy identity in chapter 01)"},
        {"id": "bounds-trained", "verdict": "vacuous at this scale", "page": "05_bounds_trained",
         "statement": "Theorems 1 and 2 say something about trained CNN members.",
         "evidence": "estimated terms of small trained CNNs (ReLU and GELU) give a lower "
                     "bound of -inf and an upper bound of +inf (chapter 05, every seed and radius)"},
    ]
