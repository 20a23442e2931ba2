"""The table pages of the book, one call per page section: records -> frame -> plot + tables.

Each table page (Tables 1-6, Figures 2-4) shows the same sections, built here so that the
notebooks stay thin and every page reads its numbers the same way:

* :func:`cells` the long frame of a table (``trs_lib.companion.tables.cells_frame``:
  one row per row key, column and evaluation, with ``ours``, ``lo``, ``hi`` in percent);
* :func:`robustness_plot` robust accuracy against the budget, per method, with interval bars,
  the paper's numbers as hollow markers and the strong worst case beside the paper's attack;
* :func:`tables` the same numbers as narrow tables (rows: attack and budget; columns: the
  paper's columns), one per quantity, so that no table is wider than the book's text;
* :func:`scale_table`, :func:`audit_tables`, :func:`claims_table`, :func:`transfer_section`.

Nothing here computes an accuracy: every number comes from a record under ``results/`` (through
``trs_lib.companion.tables``) or from the paper's tables (``trs_lib.paper_numbers``).
"""
from __future__ import annotations


from . import claims as C
from . import dashboard, grid, zoo
from .labels import column_label, label, readable
from .. import plots
from ..stats import wilson_interval
from ..worst_case import worst_case
from .. import paper_numbers as P
from ..records import cell_record, load_records
from . import tables as R

__all__ = ["label", "column_label", "readable", "cells", "robustness_plot", "tables", "scale_table",
           "audit_tables", "claims_table", "transfer_section", "headline_table",
           "cw_convergence_table", "rung_table", "record_counts", "load_ensemble", "attack_report",
           "records_links", "zoo_links", "EVALUATIONS"]

# The two evaluations of a cell: the paper's attack at its setting, and the
# strong suite's worst case at the same budget.
EVALUATIONS = {"paper": "the paper's attack", "worst_case": "strong attack (worst case)"}

def _records(records, root=None):
    return load_records(root) if records is None else records


def cells(table_id, rung="cpu", records=None, root=None):
    """The cells of Table ``table_id`` in the long layout of ``cells_frame``, plus ``label``
    (the column as the paper prints it, readable), ``attack_label`` and ``para``; the cells
    are :func:`trs_lib.companion.tables.cells_frame`'s.
    """
    tab = P.table(table_id)
    frame = R.cells_frame(tab.id, rung=rung, records=_records(records, root))
    rows = {r.key: r for r in tab.rows}
    labels = dict(zip(tab.columns, tab.column_labels))
    frame = frame.copy()
    frame["label"] = [column_label(c, labels) for c in frame["column"]]
    frame["attack_label"] = [rows[k].label if k in rows else k for k in frame["row"]]
    frame["para"] = [rows[k].para if k in rows else "" for k in frame["row"]]
    if tab.id == "6":
        frame["attack_label"] = [f"{rows[k].dataset}: ILA" if k in rows else k for k in frame["row"]]
    return frame.reset_index(drop=True)


def _fmt(v, digits=1):
    return "not run" if v is None or v != v else f"{v:.{digits}f}"


def _grid(frame, evaluation, fmt):
    """Rows (attack, budget) x columns (labels) of one evaluation, each entry ``fmt(record)``."""
    import pandas as pd
    sub = frame[frame["evaluation"] == evaluation]
    rows = list(dict.fromkeys(zip(frame["attack_label"], frame["para"])))
    cols = list(dict.fromkeys(frame["label"]))
    out = pd.DataFrame("n/a", index=pd.MultiIndex.from_tuples(rows, names=["attack", "budget"]),
                       columns=cols, dtype=object)
    for rec in sub.to_dict("records"):
        out.loc[(rec["attack_label"], rec["para"]), rec["label"]] = fmt(rec)
    out.columns.name = None
    return out


def _ours(rec):
    if rec["ours"] is None or rec["ours"] != rec["ours"]:
        return "not run"
    if rec.get("lo") is None or rec["lo"] != rec["lo"]:
        return _fmt(rec["ours"])
    return f"{rec['ours']:.1f} [{rec['lo']:.0f}, {rec['hi']:.0f}]"


def _diff(rec):
    if rec["ours"] is None or rec["ours"] != rec["ours"] or rec["paper"] is None:
        return "not run"
    return f"{rec['ours'] - rec['paper']:+.1f}"


def _paper(rec):
    v = rec["paper"]
    if v is None or v != v:
        return "not printed"
    return f"{v:.1f}" if round(v, 1) == v else f"{v:.2f}"


def tables(table_id, rung="cpu", records=None, root=None, frame=None, show=True):
    """The numbers of a table as narrow tables (rows: attack and budget; columns: the
    paper's columns): ours with its 95% interval, the paper's, ours minus the paper's, and
    the strong worst case at the same budget. With ``show`` (default) displays each under its
    title and returns None; else returns ``{title: DataFrame}``. Tables whose every cell is missing are not shown: one line
    says so instead."""
    frame = cells(table_id, rung, records, root) if frame is None else frame
    parts = {
        "Ours: accuracy % under the paper's attack [95% interval]": _grid(frame, "paper", _ours),
        "The paper's numbers (accuracy %)": _grid(frame, "paper", _paper),
        "Ours minus the paper's (points)": _grid(frame, "paper", _diff),
    }
    if (frame["evaluation"] == "worst_case").any():
        parts["Ours under the strong attack at the same budget (worst case) [95% interval]"] = \
            _grid(frame, "worst_case", _ours)
    if show:
        return _show(parts)
    return parts


def _empty(df) -> bool:
    return df.size == 0 or df.isin(["not run", "n/a"]).all().all()


def _show(parts: dict):
    from IPython.display import Markdown, display
    missing = [t for t, df in parts.items() if _empty(df)]
    for title, df in parts.items():
        if title in missing:
            continue
        display(Markdown(f"**{title}**"))
        display(df)
    if missing:
        display(Markdown("Not shown because no cell of theirs has run at this scale: "
                         + "; ".join(f"*{t}*" for t in missing) + "."))


def robustness_plot(table_id, rung="cpu", records=None, root=None, frame=None, title=None):
    """Robust accuracy against the budget, one panel per attack, one colour per column (see
    ``trs_lib.plots.robustness_plot``). Returns the figure, or None when nothing has run."""
    frame = cells(table_id, rung, records, root) if frame is None else frame
    if frame["ours"].isna().all():
        from IPython.display import Markdown, display
        display(Markdown(f"No run at rung `{rung}` yet: the plot shows only the paper's "
                         "numbers."))
    tab = P.table(table_id)
    return plots.robustness_plot(frame, title=title or f"{tab.source} (rung {rung})")


def scale_table(table_id, rung="cpu", records=None, root=None):
    """Per column: the scale its numbers were measured at and its clean accuracy, both read
    from the records (:func:`trs_lib.companion.tables.column_scales`)."""
    out = R.column_scales(table_id, rung, _records(records, root))
    if (out["cells run"].str.startswith("0 of")).all():
        from IPython.display import Markdown
        return Markdown(f"No column of {P.table(table_id).source} has run at rung `{rung}`: "
                        f"{grid_scale_text(P.table(table_id), rung)}.")
    out.index = [label(i) for i in out.index]
    out.index.name = "column"
    return out


def grid_scale_text(tab, rung) -> str:
    datasets = {r.dataset for r in tab.rows if r.dataset} or {tab.dataset}
    return "; ".join(grid.rung(rung).describe(d) for d in sorted(datasets))


def headline_table(rung="cpu", records=None, root=None):
    """Table 1's headline differences under both evaluations (:func:`trs_lib.companion.claims.headline_differences`):
    per row, TRS's mean over seeds, the best other column's (by mean; the paper's best beside
    it), TRS minus it with its 95% interval (seed-and-point bootstrap), the interval's
    half-width against the target, the half-widths of seeds alone and points alone, the seeds,
    the row's verdict and, where the target is missed, why."""
    import pandas as pd
    tab = P.table(1)
    labels = dict(zip(tab.columns, tab.column_labels))
    paper_best = {r.key: column_label(tab.columns[max(range(len(tab.columns)), key=lambda j: tab.values[i][j])], labels)
                  for i, r in enumerate(tab.rows)}
    records = _records(records, root)
    out = []
    for evaluation, name in (("paper", "the paper's attack"), ("worst_case", "worst case")):
        frame = C.headline_differences(rung, evaluation, records)
        for r in frame.to_dict("records"):
            other = column_label(r["best_other"], labels) if r["best_other"] else "not run"
            out.append({
                "evaluation": name, "row": r["label"],
                "best in the paper": paper_best.get(r["row"], "") if evaluation == "paper" else "",
                "TRS": _fmt(r["ours"]), "best other (ours)": other, "its accuracy": _fmt(r["other"]),
                "TRS − best other [95%]": "not run" if r["estimate"] is None else
                f"{r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]",
                f"± (target ≤ {C.HALF_WIDTH_TARGET:g})": _fmt(r["half_width"]),
                "± seeds alone / points alone": "" if r["seed_half_width"] is None else
                f"{r['seed_half_width']:.1f} / {r['point_half_width']:.1f}",
                "seeds": r["n_seeds"], "verdict": r["verdict"] + (" (provisional numbers)" if r["provisional"] else ""),
                "why wider than the target": r["why"]})
    return pd.DataFrame(out).set_index(["evaluation", "row"])


def rung_table(rung="cpu-r20-2ep", target="1", records=None, root=None):
    """The columns of ``target`` on one rung (e.g. the ResNet-20 pilot) on its rows, under the
    paper's attacks and the worst case: per cell the mean over the rung's seeds with its 95%
    interval (:meth:`trs_lib.companion.tables.RowResults.interval`), "not run" without a record."""
    import pandas as pd
    records = _records(records, root)
    cells = R.seed_cells(target, rung)
    out = {}
    for text, part, key in C.rows_of(target, "paper", rung) + C.rows_of(target, "worst_case", rung):
        entry = {}
        for col in grid.table_columns(target, rung):
            mean, lo, hi, _ = R.row_results(target, col, part, key, rung, records, cells=cells).interval()
            entry[column_label(col, {}, rung)] = "not run" if mean is None else f"{mean:.1f} [{lo:.1f}, {hi:.1f}]"
        out[text] = entry
    frame = pd.DataFrame(out).T
    frame.index.name = "attack"
    return frame


def cw_convergence_table(targets=("1",), rung="cpu", records=None, root=None):
    """Per white-box cell of ``targets`` (every column and seed; a target may be a pair
    ``(target, rung)`` for another rung than ``rung``): CW at its row's ``c`` with the
    scale's iterations and with twice as many on the same points
    (:func:`trs_lib.suites.cw_convergence`, recorded by every white-box cell with CW rows), and whether the
    accuracy moved by less than one point (converged). A cell that did not converge reads as an
    upper bound on CW's accuracy."""
    import pandas as pd
    records = _records(records, root)
    out = []
    for target in targets:
        target, rung_ = (target, rung) if isinstance(target, str) else target
        tab = P.table(target)
        tab_labels = dict(zip(tab.columns, tab.column_labels))
        for seed in grid.seeds_for(str(target), rung_):
            for (col, part), cell in grid.table_cells(str(target), rung_, seed)["eval"].items():
                if part != "whitebox":
                    continue
                rec = cell_record(cell, records)
                chk = (rec or {}).get("metrics", {}).get("cw_convergence")
                if not chk:
                    continue
                out.append({"column": column_label(col, tab_labels, rung_), "seed": seed,
                            "c": chk["c"], "points": chk["n"],
                            f"accuracy, {chk['steps']:,} iterations (%)": round(100 * chk["accuracy"], 1),
                            "twice the iterations (%)": round(100 * chk["doubled_accuracy"], 1),
                            "converged": "yes" if chk["converged"] else "no: an upper bound"})
    if not out:
        from IPython.display import Markdown
        return Markdown("No white-box record with a CW convergence check yet.")
    return pd.DataFrame(out).drop_duplicates().set_index(["column", "seed"])


def audit_tables(table_id, rung="cpu", records=None, root=None, show=True):
    """The adaptive audit's checks per column and, when any ran, one line per check (displayed
    with ``show``, else returned as ``{title: DataFrame}``)."""
    records = _records(records, root)
    checks = R.audit_checks_frame(table_id, rung, records)
    checks.index = [label(i) for i in checks.index]
    checks.index.name = "column"
    details = R.audit_details(table_id, rung, records)
    if len(details):
        details["column"] = [label(c) for c in details["column"]]
    parts = {"The audit's checks per column": checks,
             "What each check measured": details.set_index(["column", "check"]) if len(details)
             else details}
    if show:
        return _show(parts)
    return parts


def claims_table(ids=None, rung="cpu", records=None, root=None, page=None):
    """The verdicts of ``trs_lib.companion.claims``, one row per claim and evaluation: the claims ``ids``,
    or every claim whose page is ``page`` (a notebook name), or all of them."""
    import pandas as pd
    rows = [c for c in dashboard.claims(rung, _records(records, root))
            if (ids is None or c["id"] in ids) and (page is None or c["page"] == page)]
    out = pd.DataFrame([{"claim": c["text"], "judged under": c["under"], "verdict": c["verdict"],
                         "difference, points [95% interval]": c["interval"],
                         "evidence": readable(c["evidence"])} for c in rows],
                       index=[c["id"] for c in rows])
    out.index.name = "claim id"
    return out


# Where the built site serves the records (``make book`` exports them there), from a notebook page.
RECORDS_URL = "../_static/records"


def records_links(target, rung="cpu", records=None, root=None):
    """Download links to the records behind Table or Figure ``target`` at ``scale`` (every seed
    of the rung), as Markdown; one sentence when none has run."""
    from IPython.display import Markdown
    records = _records(records, root)
    keys = []
    for seed in grid.seeds_for(str(target), rung):
        cells = grid.table_cells(str(target), rung, seed)
        for cell in list(cells["train"].values()) + list(cells["eval"].values()):
            key = f"{cell.kind}/{cell.name}"
            if key in records and key not in keys:
                keys.append(key)
    if not keys:
        return Markdown(f"No record behind this page at rung `{rung}` yet.")
    items = "\n".join(f"* [{k}.json]({RECORDS_URL}/{k}.json)" for k in keys)
    return Markdown(f"The {len(keys)} run records behind this page (JSON: config, metrics, git "
                    f"commit, hardware, wall time):\n\n{items}")


def zoo_links(root=None):
    """Download links to the zoo's weights (``trs_lib.companion.zoo``), with their SHA-256, as Markdown;
    one sentence while the zoo is empty."""
    from IPython.display import Markdown
    entries = zoo.entries(root)
    if not entries:
        return Markdown("The zoo is empty at this commit: no weights to download yet "
                        "(`python -m trs_lib.companion.zoo build` fills it after a regrid).")
    lines = []
    for e in entries:
        stem = e["weights"].removesuffix(".safetensors")
        sha = e.get("sha256") or ""
        lines.append(f"* {stem}: [weights]({RECORDS_URL}/zoo/{e['weights']}), "
                     f"[sidecar]({RECORDS_URL}/zoo/{e['sidecar']}), "
                     f"[model card]({RECORDS_URL}/zoo/{stem}.card.json)"
                     + (f", SHA-256 `{sha[:16]}…`" if sha else ""))
    return Markdown(f"[The zoo's index]({RECORDS_URL}/zoo/index.json) and its "
                    f"{len(entries)} ensembles (load one with `ensemble, record, card = "
                    f"trs_lib.companion.zoo.load(\"trs\", seed=0)`; the card holds RobustBench's "
                    f"fields):\n\n" + "\n".join(lines))


def record_counts(records):
    """How many records of each kind (``train``, ``eval``) there are."""
    import pandas as pd
    out = pd.Series([k.split("/")[0] for k in records], dtype=object).value_counts().sort_index()
    out.index.name, out.name = "kind", "records"
    return out.to_frame()


def transfer_section(figure_id, rung="cpu", records=None, root=None, show=True, plot=True):
    """Figures 2-4: the annotated heatmaps (vanilla, TRS and TRS minus vanilla) and the matrices
    as numbers. With ``show`` (default) displays the matrices and returns None; else returns
    ``(figure or None, {title: DataFrame})``."""
    import pandas as pd
    frames = R.transfer_frames(figure_id, rung, _records(records, root))
    ran = {k: v for k, v in frames.items() if v is not None}
    fig = plots.transfer_heatmaps(frames, title=f"{P.figure(figure_id).source} (rung {rung})") \
        if ran and plot else None
    parts = {}
    for (ens, attack), mat in frames.items():
        parts[f"{ens}, {attack.upper()}: accuracy % of member i on examples crafted on member j"] = \
            mat if mat is not None else pd.DataFrame()
    if show:
        from IPython.display import Markdown, display
        if not ran:
            display(Markdown(f"No transfer matrix of {P.figure(figure_id).source} has run at "
                             f"rung `{rung}`."))
        for t, df in parts.items():
            if len(df):
                display(Markdown(f"**{t}**"))
                display(df)
        return None
    return fig, parts


# ------------------------------------------------------------------ attack our ensembles
def load_ensemble(column="trs", seed=0, fallback=None, log=print):
    """An ensemble of the CPU-scale zoo (``trs_lib.companion.zoo.load``) and a sentence saying
    where it came from. While the zoo is empty (or lacks ``column``), ``fallback()`` is called
    instead (e.g. a small fresh training) and the sentence says so."""
    have = list(zoo.available())
    if (column, seed) in [tuple(a) for a in have]:
        ensemble, _, _ = zoo.load(column, seed=seed)
        return ensemble, f"zoo: column {column!r}, seed {seed} (checksum verified)"
    if fallback is None:
        raise ValueError(f"the zoo has no ({column!r}, {seed}); available: {have}; "
                         "pass fallback= to train one instead")
    why = "the zoo is empty" if not have else f"the zoo has no ({column!r}, {seed}) (it has {have})"
    log(f"{why}: using a freshly trained ensemble instead")
    return fallback(), f"fresh training ({why})"


def attack_report(model, attack, x, y, budgets, suite="linf", overrides=None, seed=0):
    """Your attack beside the strong worst-case suite, per budget (accuracy % with 95% interval).

    ``attack(model, x, y, eps) -> x_adv``: any function of yours; its examples are checked to lie
    in the L-infinity ball and in [0, 1] (else a ``ValueError`` names the budget). Columns: your
    attack, the suite's worst case (``trs_lib.worst_case``), and both together (a point counts as robust only if it
    survives every attack), plus which attack broke the most points.
    """
    import pandas as pd
    import torch
    if not callable(attack):
        raise ValueError(f"attack must be a function (model, x, y, eps) -> x_adv, got {attack!r}")
    budgets = [float(b) for b in budgets]
    if not budgets or any(not b >= 0 for b in budgets):
        raise ValueError(f"budgets must be non-negative numbers, got {budgets!r}")
    model.eval()

    def correct(xa):
        with torch.no_grad():
            return (model(xa).argmax(1) == y).cpu()

    def fmt(ok):
        n, k = len(ok), int(ok.sum())
        lo, hi = wilson_interval(k, n)
        return f"{100 * k / n:.1f} [{100 * lo:.0f}, {100 * hi:.0f}]"

    rows = []
    for eps in budgets:
        xa = attack(model, x, y, eps).detach()
        if xa.shape != x.shape or (xa - x).abs().max() > eps * (1 + 1e-5) + 1e-6 \
                or xa.min() < -1e-6 or xa.max() > 1 + 1e-6:
            raise ValueError(f"your attack at eps={eps:g} returned examples outside the "
                             "L-infinity ball or [0, 1]")
        mine = correct(xa)
        wc = worst_case(model, x, y, eps=eps, suite=suite, overrides=overrides, seed=seed)
        strong = torch.tensor([c == "1" for c in wc["correct"]])
        broken = max(wc["broken_by"].items(), key=lambda kv: kv[1])[0] if wc["broken_by"] else "-"
        name = f"worst case ({suite} suite)"
        rows.append({"eps": f"{eps:g}", "your attack": fmt(mine), name: fmt(strong),
                     "both (per point)": fmt(mine & strong),
                     "your attack finds points the suite misses": int((~mine & strong).sum()),
                     "suite attack that broke most points": broken})
    out = pd.DataFrame(rows).set_index("eps")
    return out
