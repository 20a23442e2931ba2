"""What the page ``notebooks/evaluate.ipynb`` shows of an evaluation record: one function per
view (a table beside the paper's numbers, the worst case and which attack broke each point, the
transfer heatmaps, ILA, smoothness, the audit) and the facts checked on every run.

Each takes the :class:`~trs_lib.records.EvalRecord` of one suite (``trs_lib.evaluate.run``) and
returns a ``pandas.DataFrame`` or a matplotlib figure; nothing here computes a measurement.
"""
from __future__ import annotations

from .. import paper_numbers as P
from .. import plots
from ..attacks import presets

__all__ = ["percent", "whitebox_frame", "cw_check_frame", "worst_case_frame", "broken_by_figure",
           "transfer_figure", "off_diagonal_frame", "ila_frames", "smoothness_frame", "audit_frame",
           "blackbox_frame",
           "facts"]


def percent(row: dict) -> str:
    """``accuracy [low, high]`` in percent, one decimal."""
    return f"{100 * row['accuracy']:.1f} [{100 * row['ci95'][0]:.1f}, {100 * row['ci95'][1]:.1f}]"


def _paper_trs(key: str, dataset: str):
    """The paper's TRS number for a row key (Tables 3, 4, 1, 2 in that order), or None."""
    for tid in ("3", "4", "1", "2"):
        tab = P.table(tid)
        if tab.dataset == presets.paper_dataset(dataset) and key in [r.key for r in tab.rows]:
            return tab.value(key, "trs")
    return None


def whitebox_frame(rec, method: str):
    """The white-box rows in the paper's layout (attack, parameter) beside the paper's TRS column."""
    import pandas as pd
    ds = rec.config["spec"]["dataset"]
    return pd.DataFrame(
        [{"attack": ("PGD-%d" % r["steps"]) if r["attack"] == "pgd" else r["attack"].upper(),
          "para.": ("ε" if r["param"] == "eps" else r["param"]) + f" = {r['value']:g}",
          f"ours ({method}, {ds}), % [95%]": percent(r), "points": r.get("n_test", rec.metrics["n_test"]),
          "paper (TRS)": _paper_trs(r["key"], ds), "wall_s": r["wall_s"]} for r in rec.rows]
    ).set_index(["attack", "para."])


def cw_check_frame(rec):
    """The CW convergence check (steps doubled), or None when the suite ran none."""
    import pandas as pd
    check = rec.metrics.get("cw_convergence")
    return None if check is None else pd.DataFrame([check]).set_index("c")


def worst_case_frame(rec, whitebox=None):
    """Per budget: the paper's PGD-10 (from the white-box record, when given), the worst case and
    how many points each attack of the suite broke."""
    import pandas as pd
    pgd = {r["value"]: r for r in (whitebox.rows if whitebox else ()) if r["key"].startswith("pgd10/")}
    return pd.DataFrame([{"budget": r["key"].split("/")[-1],
                          "paper's attack (PGD-10)": percent(pgd[r["value"]]) if r["value"] in pgd else None,
                          "worst case": percent(r),
                          **{f"broken by {a}": r["broken_by"][a] for a in r["suite_attacks"]},
                          "wall_s": r["wall_s"]} for r in rec.rows]).set_index("budget")


def broken_by_figure(rec, whitebox=None):
    """Which attack broke each point at the largest budget (a strip), and the white-box rows at
    that budget beside the worst case with their 95% intervals."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    r = rec.rows[-1]
    names = ["clean"] + r["suite_attacks"] + ["robust"]
    code = [names.index(b) if b is not None else len(names) - 1 for b in r["broken_by_point"]]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 2.8), gridspec_kw={"width_ratios": [2, 1]})
    ax0.imshow([code], aspect="auto", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    ax0.set_yticks([])
    ax0.set_xlabel("test point")
    ax0.set_title(f"{r['key']}: which attack broke each point")
    ax0.legend(handles=[Patch(color=plt.cm.tab10(i), label=nm) for i, nm in enumerate(names)],
               ncol=len(names), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    shown = [w for w in (whitebox.rows if whitebox else ()) if w["attack"] in ("pgd", "fgsm", "bim", "mim")
             and w["value"] == r["value"]] + [r]
    ax1.errorbar(range(len(shown)), [100 * s["accuracy"] for s in shown],
                 yerr=[[100 * (s["accuracy"] - s["ci95"][0]) for s in shown],
                       [100 * (s["ci95"][1] - s["accuracy"]) for s in shown]], fmt="o", capsize=3)
    ax1.set_xticks(range(len(shown)), [s["key"].split("/")[0].replace("worst_case:", "worst ") for s in shown],
                   rotation=30, fontsize=8)
    ax1.set_ylabel("robust accuracy (%)")
    ax1.set_title("with 95% Wilson intervals", fontsize=9)
    fig.tight_layout()
    return fig


def transfer_figure(recs: dict):
    """Figures 2-4's heatmaps from ``{ensemble name: transfer record}``."""
    import pandas as pd
    frames = {}
    for name, rec in recs.items():
        for r in rec.rows:
            members = [f"member {i + 1}" for i in range(len(r["matrix"]))]
            frames[(name, r["attack"])] = pd.DataFrame([[100 * v for v in row] for row in r["matrix"]],
                                                       index=members, columns=members)
    first = next(iter(recs.values())).rows[0]
    return plots.transfer_heatmaps(frames, ensembles=tuple(recs), title=f"accuracy (%) of member i on "
                                   f"examples against member j, eps = {first['value']:g}")


def off_diagonal_frame(recs: dict):
    """Mean off-diagonal accuracy (%) per ensemble and attack: higher is less transfer."""
    import pandas as pd

    def off(m):
        k = len(m)
        return sum(m[i][j] for i in range(k) for j in range(k) if i != j) / (k * (k - 1))
    return pd.DataFrame({name: {r["key"]: round(100 * off(r["matrix"]), 1) for r in rec.rows}
                         for name, rec in recs.items()}).rename_axis("mean off-diagonal accuracy (%)")


def ila_frames(rec) -> tuple:
    """(ILA / BIM guide / best-of accuracies per model, the layer sweep or None)."""
    import pandas as pd
    parts = {label: pd.DataFrame({r["key"]: {k: round(100 * v, 1) for k, v in r[field].items()}
                                  for r in rec.rows}).T
             for label, field in (("ILA", "accuracy_by_model"), ("BIM guide", "accuracy_by_model_guide"),
                                  ("ILA (best of)", "accuracy_by_model_best"))}
    sweep = rec.metrics.get("ila_layer_sweep")
    sweep_df = None if sweep is None else (
        pd.DataFrame(sweep["rows"]).set_index("layer").drop(columns="ci95").mul(100).round(1)
        .rename_axis(f"ILA layer sweep, eps = {sweep['eps']:g} (accuracy %)"))
    return pd.concat(parts), sweep_df


def smoothness_frame(rec):
    """Mean local smoothness per radius, overall and per member (lower is smoother)."""
    import pandas as pd
    return pd.DataFrame([{"radius r": r["value"], "mean over members and points": round(r["mean"], 4),
                          **{f"member {i + 1}": round(v, 4) for i, v in enumerate(r["member_means"])}}
                         for r in rec.rows]).set_index("radius r")


def audit_frame(rec, whitebox=None):
    """APGD-CE and APGD-DLR beside the paper's PGD-10 per budget (accuracy %)."""
    import pandas as pd
    pgd = {r["value"]: r["accuracy"] for r in (whitebox.rows if whitebox else ()) if r["key"].startswith("pgd10/")}

    def acc(attack, e):
        return next((r["accuracy"] for r in rec.rows if r["attack"] == attack and r["value"] == e), None)
    return pd.DataFrame([{"eps": e, "PGD-10 (paper)": pgd.get(e), "APGD-CE": acc("apgd_ce", e),
                          "APGD-DLR": acc("apgd_dlr", e)}
                         for e in sorted({r["value"] for r in rec.rows if r["attack"] != "worst_case"})]
                        ).set_index("eps").mul(100).round(1)


def blackbox_frame(rec):
    """Per budget: robust accuracy under transfer (every pair) and how many points each
    (surrogate, attack) pair broke first."""
    import pandas as pd
    return pd.DataFrame([{"budget": r["key"].split("/")[-1], "transfer worst case, % [95%]": percent(r),
                          **{f"broken by {p}": n for p, n in r["broken_by"].items()}} for r in rec.rows]
                        ).set_index("budget")


def facts(recs: dict) -> dict:
    """Deterministic facts about a page's records ``{suite: EvalRecord}``, checked on every run:
    each would be False on a broken evaluation."""
    rows = [(s, r) for s, rec in recs.items() for r in rec.rows]
    clean = {s: rec.metrics["clean_accuracy"] for s, rec in recs.items()}
    pgd = {r["value"]: r["accuracy"] for s, r in rows
           if r.get("attack") == "pgd" and r.get("steps") == 10 and "accuracy" in r}
    return {
        "every accuracy is a fraction": all(0 <= r["accuracy"] <= 1 for _, r in rows if "accuracy" in r),
        "robust accuracy never above clean": all(r["accuracy"] <= clean[s] + 1e-9 for s, r in rows
                                                 if "accuracy" in r and r.get("attack") != "ila"),
        "every audit check has a verdict": all(c["status"] in ("pass", "FAIL", "skipped")
                                               for rec in recs.values() for c in rec.metrics.get("checks", [])),
        "every accuracy has an interval and its points": all(rec.complete() == [] for rec in recs.values()),
        "worst case never above the paper's attack at its budget": all(
            r["accuracy"] <= pgd[r["value"]] + 1e-9 for _, r in rows
            if r.get("attack") == "worst_case" and r.get("suite") == "linf" and r["value"] in pgd)}
