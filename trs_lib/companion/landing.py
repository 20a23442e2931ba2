"""The landing page's first screen: what we found (sentences generated from the claims), a forest
plot of every claim's deciding statistic against its margin, and a compact verdict table.

Everything is computed from :func:`trs_lib.companion.claims.check_claims` and the ladder
(:mod:`trs_lib.companion.ladder`); no number is typed. A finding is a sentence with its number
and 95% interval, or is left out when its records are missing.
"""
from __future__ import annotations

from pathlib import Path

from . import ladder as L
from . import tables as R
from .. import theory
from ..stats import NOT_REPRODUCED, REPRODUCED

__all__ = ["findings", "forest_figure", "forest_alt_text", "verdict_rows", "GROUPS"]

#: the forest plot's groups: the evaluation each claim is judged under
GROUPS = {"paper": "under the paper's attacks", "worst_case": "under the strong worst case",
          "n/a": "measured on the members (no attack setting)", "blackbox": "under transfer from unseen models"}
_COLOURS = {REPRODUCED: "tab:green", NOT_REPRODUCED: "tab:red"}


def _span(c: dict) -> str:
    return f"{c['estimate']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}]"


def _by(claims: list, cid: str, evaluation: str) -> dict | None:
    c = next((c for c in claims if c["id"] == cid and c["evaluation"] == evaluation), None)
    return c if c is not None and c.get("estimate") is not None and c.get("lo") is not None else None


def _rows_won(c: dict) -> str:
    rows = c.get("rows") or []
    won = sum(1 for r in rows if r.get("lo") is not None and r["lo"] > 0)
    return f"is best, with an interval above 0, in {won} of Table 1's {len(rows)} rows"


def findings(claims: list, records: dict, rung: str = "cpu") -> list[str]:
    """Three to six sentences, each with its number and 95% interval, from the claims at
    ``rung`` (``check_claims`` output), the records and the scale ladder."""
    out = []
    paper, worst = _by(claims, "mnist-most", "paper"), _by(claims, "mnist-most", "worst_case")
    if paper and worst:
        out.append(f"At the CPU proxy TRS {_rows_won(paper)}: TRS minus the best other column is "
                   f"{_span(paper)} points under the paper's attacks (row vote) and {_span(worst)} under "
                   f"the strong worst case ({paper['verdict']}).")
    pgd = R.row_results("1", "trs", "whitebox", "pgd10/eps=0.15", rung, records)
    wc = R.row_results("1", "trs", "worst_case", "worst_case:linf/eps=0.15", rung, records)
    if pgd.seeds and wc.seeds:
        (m1, lo1, hi1, _), (m2, lo2, hi2, _) = pgd.interval(), wc.interval()
        out.append(f"The paper's attacks overstate robustness: TRS at ε = 0.15 keeps {m1:.1f}% "
                   f"[{lo1:.1f}, {hi1:.1f}] under PGD-10 but {m2:.1f}% [{lo2:.1f}, {hi2:.1f}] under "
                   "the per-sample worst case.")
    p110 = _by(claims, "pgd110", "paper")
    if p110:
        out.append(f"PGD with 110 iterations does not collapse ADP as the paper reports: TRS minus "
                   f"ADP is {_span(p110)} points in the worst row ({p110['verdict']}).")
    tr, mem, sm = (_by(claims, i, "n/a") for i in ("transfer", "members-robust", "smoothness"))
    if tr and mem and sm:
        out.append(f"The paper's effect holds while its mechanism fails: TRS members transfer less "
                   f"({_span(tr)} points of off-diagonal accuracy), yet are rougher (smoothness "
                   f"difference {sm['estimate']:+.3f} [{sm['lo']:+.3f}, {sm['hi']:+.3f}]) and less "
                   f"robust alone ({_span(mem)} points) than vanilla members.")
    dep = L.scale_dependent(L.ladder(records))
    high = L.highest(L.ladder(records), "worst_case")
    if dep and high is not None:
        out.append(f"The headline verdict depends on scale: at rung `{high['rung']}` TRS minus the "
                   f"best other column is {_span(high)} points under the worst case "
                   f"({high['verdict']}), against the proxy's verdict.")
    refuted = [f for f in theory.findings() if f.get("verdict") == "refuted"]
    if refuted:
        out.append(f"{len(refuted)} of the paper's theoretical statements "
                   f"{'is' if len(refuted) == 1 else 'are'} refuted by a counterexample: "
                   + "; ".join(str(f["statement"]).split(" is ")[0] for f in refuted) + " (see the errata).")
    return out[:6]


def verdict_rows(claims: list) -> list[dict]:
    """The compact table: one row per (claim, evaluation) with its one-line text, verdict,
    difference [95%] in its unit, the rung it is judged at and its page."""
    out = []
    for c in claims:
        num = "—" if c.get("estimate") is None or c.get("lo") is None else (
            _span(c) if c.get("unit") in (None, "points") else
            f"{c['estimate']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]")
        out.append(dict(id=c["id"], text=c["text"].split(":")[0].rstrip("."), evaluation=c["evaluation"],
                        verdict=c["verdict"], difference=num, unit=c.get("unit") or "points",
                        rung=c.get("rung_judged") or "", page=c.get("page", "")))
    return out


def _plottable(claims: list) -> list:
    return [c for c in claims if c.get("estimate") is not None and c.get("lo") is not None
            and c.get("unit") in (None, "points")]


def forest_figure(claims: list, path=None):
    """One row per claim in points, its deciding statistic with the 95% interval, its margin
    (a tick), colour by verdict, grouped by evaluation; written to ``path`` (PNG) when given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = _plottable(claims)
    groups = [g for g in GROUPS if any(c["evaluation"] == g for c in rows)]
    order = [c for g in groups for c in rows if c["evaluation"] == g]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(order) + 1.2))
    for i, c in enumerate(order):
        y = len(order) - 1 - i
        colour = _COLOURS.get(c["verdict"], "tab:orange")
        ax.errorbar([c["estimate"]], [y], xerr=[[c["estimate"] - c["lo"]], [c["hi"] - c["estimate"]]],
                    fmt="o", color=colour, capsize=3)
        ax.plot([c.get("margin") or 0.0] * 2, [y - 0.35, y + 0.35], color="k", lw=1)
    ax.set_yticks(range(len(order)), [f"{c['id']} ({GROUPS[c['evaluation']].split(' ', 1)[1]})"
                                      for c in reversed(order)], fontsize=8)
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("deciding statistic, points (95% interval); black tick: the claim's margin")
    from matplotlib.lines import Line2D
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in
                       ((REPRODUCED, "tab:green"), (NOT_REPRODUCED, "tab:red"),
                        ("inconclusive / provisional", "tab:orange"))], fontsize=7, loc="lower right")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def forest_alt_text(claims: list) -> str:
    """The forest plot's numbers as text (its alt text: the plot reads without the image)."""
    return "; ".join(f"{c['id']} ({c['evaluation']}): {_span(c)} points, {c['verdict']}"
                     for c in _plottable(claims))
