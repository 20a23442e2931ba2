"""Tables built from the records: every number of a page read from ``results/``.

:func:`cells_frame` gives every cell of a table over the seeds of a rung with its 95%
interval and the paper's number beside it (Tables 1-6); :func:`transfer_frames` the transfer
matrices of Figures 2-4; :func:`column_scales` what each column was measured at. Nothing here computes a number from a model: every "ours"
comes from a record, and a cell without a record says ``not run``.
"""
from __future__ import annotations

from . import grid
from .labels import column_label
from .. import paper_numbers as P
from .. import plots
from .. import stats
from ..provenance import is_dirty
from ..records import cell_record, load_records

__all__ = ["cells_frame", "row_results", "RowResults", "EVALUATIONS", "seed_cells",
           "recorded_accuracy", "column_scales", "transfer_frames", "threat_models_frame", "scale_of",
           "audit_checks_frame", "audit_details", "NOT_RUN"]

NOT_RUN = "not run"


def _as_percent(v):
    return None if v is None else round(100.0 * float(v), 2)


def recorded_accuracy(record: dict | None, row) -> float | None:
    """Robust accuracy (percent) of ``row`` (a ``paper_numbers.Row`` or its key) in an
    evaluation record, or None when the record lacks it.

    An evaluation record lists ``metrics["rows"]``: one entry per attack setting with its
    ``key`` (``Row.key``) and ``accuracy`` (a fraction in [0, 1]).
    """
    if record is None:
        return None
    key = row if isinstance(row, str) else row.key
    for entry in record.get("metrics", {}).get("rows", []):
        if entry.get("key") == key:
            return _as_percent(entry.get("accuracy"))
    return None


def scale_of(train_record: dict | None, eval_record: dict | None = None) -> str:
    """The scale a number was measured at, read from its records: data set, members, epochs,
    test points (e.g. ``mnist5k, 3 members, 8 epochs, 500 test points``)."""
    if train_record is None:
        return NOT_RUN
    cfg = train_record["config"]
    text = f"{cfg['dataset']}, {cfg['arch']}, {cfg['num_models']} members, {cfg['epochs']} epochs"
    if eval_record is not None:
        n = eval_record.get("metrics", {}).get("n_test") or eval_record.get("config", {}).get("n_test")
        text += f", {n} test points" if n else ""
        cw = eval_record.get("config", {}).get("eval", {}).get("cw_steps")
        text += f", CW {cw} iterations" if cw else ""
    return text


def audit_checks_frame(table_id, rung="cpu", records: dict | None = None, root=None):
    """The audit's sanity checks per column of Table ``table_id`` (1-5): status of each check
    (``pass``, ``FAIL``, ``skipped``) with its eps, or ``not run``."""
    import pandas as pd
    tab = P.table(table_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(tab.id, rung)
    out = {}
    for col, label in zip(tab.columns, tab.column_labels):
        ec = cells["eval"].get((col, "audit"))
        rec = cell_record(ec, records) if ec else None
        checks = (rec or {}).get("metrics", {}).get("checks")
        if not checks:
            out[label] = {"audit eps": NOT_RUN}
            continue
        row = {"audit eps": f"{rec['metrics'].get('audit_eps', float('nan')):g}"}
        row.update({c["check"]: c["status"] for c in checks})
        out[label] = row
    frame = pd.DataFrame(out).T.fillna(NOT_RUN)
    frame.index.name = "column"
    return frame


def audit_details(table_id, rung="cpu", records: dict | None = None, root=None):
    """One sentence per (column, check) from the audit records: what was measured."""
    import pandas as pd
    tab = P.table(table_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(tab.id, rung)
    out = []
    for col, label in zip(tab.columns, tab.column_labels):
        ec = cells["eval"].get((col, "audit"))
        rec = cell_record(ec, records) if ec else None
        for c in (rec or {}).get("metrics", {}).get("checks") or []:
            out.append({"column": label, "check": c["check"], "status": c["status"],
                        "detail": c.get("detail", "")})
    return pd.DataFrame(out, columns=["column", "check", "status", "detail"])


def column_scales(table_id, rung="cpu", records: dict | None = None, root=None):
    """Per column of a table (1-6): the scale its numbers were measured at (data set,
    architecture, members, epochs, test points, CW iterations, read from the seed-0 records) and
    the ensemble's clean accuracy, with how many of the table's rows have a recorded number
    (``not run`` where none has)."""
    import pandas as pd
    target = grid.normalise_target(table_id)
    tab = P.table(target)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(target, rung)
    out = {}
    for j, col in enumerate(tab.columns):
        found = []  # (train record, eval record) of each row that has a number
        for row in tab.rows:
            if target == "6":
                ec = cells["eval"].get(("trs", f"ila:{row.dataset}"))
                erec = cell_record(ec, records) if ec else None
                entry = _ila_entry(erec, row)
                ok = entry is not None and entry.get(col) is not None
            else:
                ec = cells["eval"].get((col, "pgd110" if row.steps == 110 else "whitebox"))
                erec = cell_record(ec, records) if ec else None
                ok = recorded_accuracy(erec, row) is not None
            if ok:
                found.append((cell_record(ec.train, records), erec))
        trec, erec = found[0] if found else (None, None)
        out[tab.column_labels[j]] = {
            "scale (data set, arch, members, epochs, test points)": scale_of(trec, erec) if found else NOT_RUN,
            "clean accuracy": plots.fmt_number(_clean(erec, trec) if found else None),
            "cells run": f"{len(found)} of {len(tab.rows)}"}
    return pd.DataFrame(out).T


def _clean(erec, trec) -> float | None:
    if erec is not None and erec.get("metrics", {}).get("clean_accuracy") is not None:
        return _as_percent(erec["metrics"]["clean_accuracy"])
    if trec is not None:
        return _as_percent(trec["metrics"].get("final", {}).get("test_acc_ensemble"))
    return None


def _ila_entry(record, row) -> dict | None:
    """The ILA entry of a row: ``{"member1": acc, ..., "ensemble": acc}`` (fractions)."""
    if record is None:
        return None
    for entry in record.get("metrics", {}).get("rows", []):
        if entry.get("key") == row.key:
            return entry.get("accuracy_by_model") or entry
    return None


def transfer_frames(figure_id, rung="cpu", records: dict | None = None, root=None) -> dict:
    """The transfer matrices of a figure: ``{(ensemble column, attack): DataFrame or None}``.

    Cell (i, j) of a matrix is the accuracy (percent) of member i on adversarial examples
    crafted against member j, as in Figures 2-4; None where the cell has not run.
    """
    import pandas as pd
    fig = P.figure(figure_id)
    records = load_records(root) if records is None else records
    cells = grid.table_cells(fig.id, rung)
    out = {}
    for col in fig.ensembles:
        ec = cells["eval"].get((col, "transfer"))
        erec = cell_record(ec, records) if ec else None
        for attack in grid.TRANSFER_ATTACKS:
            mat = None
            if erec is not None:
                for entry in erec["metrics"].get("rows", []):
                    if entry.get("attack") == attack and entry.get("matrix") is not None:
                        m = entry["matrix"]
                        names = [f"member {k + 1}" for k in range(len(m))]
                        mat = pd.DataFrame([[_as_percent(v) for v in r] for r in m],
                                           index=names, columns=names)
                        mat.index.name = "evaluated on"
                        mat.columns.name = "crafted on"
            out[(col, attack)] = mat
    return out


# ------------------------------------------------------------ seeds and intervals
EVALUATIONS = ("paper", "worst_case")


class RowResults:
    """One row of one column over the seeds of a scale: per seed, the accuracy (fraction), the
    per-point results (``correct`` strings; None in older records), the number of
    points, and whether its records are dirty. ``seeds`` lists the seeds that have a number."""

    def __init__(self):
        self.seeds, self.accuracy, self.correct, self.n, self.dirty = [], [], [], [], False

    def add(self, seed, entry, n, dirty):
        acc = entry.get("accuracy")
        if acc is None:
            return
        self.seeds.append(seed)
        self.accuracy.append(float(acc))
        c = entry.get("correct")
        self.correct.append(c if isinstance(c, str) and c else None)
        self.n.append(int(n) if n else (len(c) if isinstance(c, str) and c else None))
        self.dirty |= dirty

    @property
    def paired(self) -> bool:
        """Every seed has its per-point results, all on the same number of points."""
        return bool(self.seeds) and all(c is not None for c in self.correct) and \
            len({len(c) for c in self.correct}) == 1

    def array(self, seeds=None):
        """``(seeds, points)`` array of the per-point results of ``seeds`` (default: all)."""
        seeds = self.seeds if seeds is None else seeds
        return stats.as_array([self.correct[self.seeds.index(s)] for s in seeds])

    def interval(self):
        """``(mean, lo, hi, method)`` in percent, or ``(None, None, None, "not run")``."""
        if not self.seeds:
            return None, None, None, NOT_RUN
        if self.paired:
            m, lo, hi = stats.accuracy_interval(self.array())
            how = ("seed-and-point bootstrap" if len(self.seeds) > 1 else "point bootstrap") + \
                " (at least Wilson's width)"
        elif all(self.n):
            m, lo, hi = stats.unpaired_mean(self.accuracy, min(self.n))
            how = ("Wilson (no per-point results)" if len(self.seeds) == 1
                   else "normal over seeds and points (no per-point results)")
        else:
            return round(100 * sum(self.accuracy) / len(self.accuracy), 2), None, None, \
                "no interval (no point count)"
        return round(100 * m, 2), round(100 * lo, 2), round(100 * hi, 2), how


def _entry(record, key) -> dict | None:
    for entry in (record or {}).get("metrics", {}).get("rows", []):
        if entry.get("key") == key:
            return entry
    return None


def _n_points(record, entry) -> int | None:
    c = entry.get("correct")
    if isinstance(c, str) and c:
        return len(c)
    m = record.get("metrics", {})
    return m.get("n_test") or record.get("config", {}).get("n_test")


def seed_cells(target, rung="cpu") -> dict:
    """``{seed: grid.table_cells(target, rung, seed)}`` for every seed the scale trains."""
    return {seed: grid.table_cells(target, rung, seed) for seed in grid.seeds_for(target, rung)}


def row_results(target, column, part, key, rung="cpu", records=None, root=None,
                cells: dict | None = None) -> RowResults:
    """The results of row ``key`` (an entry key of the evaluation records, e.g.
    ``pgd10/eps=0.1`` or ``worst_case:linf/eps=0.1``) for ``column`` of ``target``'s grid in
    the evaluation cell ``part`` (``whitebox``, ``worst_case``, ``pgd110``, ...), over every
    seed the scale trains (``cells``: :func:`seed_cells`, computed when not given)."""
    records = load_records(root) if records is None else records
    cells = seed_cells(target, rung) if cells is None else cells
    out = RowResults()
    for seed, by_seed in cells.items():
        ec = by_seed["eval"].get((column, part))
        erec = cell_record(ec, records) if ec else None
        entry = _entry(erec, key)
        if entry is None:
            continue
        trec = cell_record(ec.train, records)
        out.add(seed, entry, _n_points(erec, entry), is_dirty(erec) or is_dirty(trec))
    return out


def _row_spec(row, evaluation, rung="cpu"):
    """(eval part, entry key) of a table row under an evaluation; key None: no such number (a
    CW row has no L-infinity budget; a budget the scale's worst case leaves out)."""
    if evaluation == "paper":
        return ("pgd110" if row.steps == 110 else "whitebox"), row.key
    if row.param != "eps" or not grid.worst_case_rows([row], rung_=rung):
        return "worst_case", None
    return "worst_case", grid.WorstCaseRow(row.value).key


def cells_frame(table_id, rung="cpu", records: dict | None = None, root=None):
    """Every cell of a table, over seeds, with its 95% interval.

    One row per (row key, column, evaluation): ``table``, ``row``, ``attack``, ``param``,
    ``value``, ``column``, ``label``, ``evaluation`` (``paper``: the paper's attack at its
    setting; ``worst_case``: the strong suite at the same budget), ``ours`` (mean accuracy in %
    over seeds), ``lo``, ``hi`` (95% interval in %, ``trs_lib.stats``), ``interval`` (how it
    was computed; records without per-point results get a flagged fallback), ``n_seeds``,
    ``n_points``, ``paper`` (the paper's number in %, or None), ``dirty`` (a record of the cell
    was written from a dirty tree). Missing cells have ``ours`` None. ``table_id``: 1-6; the
    columns are the rung's (:func:`trs_lib.companion.grid.table_columns`).
    """
    import pandas as pd
    target = grid.normalise_target(table_id)
    records = load_records(root) if records is None else records
    if target == "6":
        return _ila_cells_frame(rung, records)
    tab = P.table(target)
    rows = tab.rows
    columns = grid.table_columns(target, rung)
    labels = dict(zip(tab.columns, tab.column_labels))
    cells = seed_cells(target, rung)
    out = []
    for row in rows:
        for col in columns:
            paper = tab.value(row, col) if col in tab.columns else None
            label = labels.get(col, col)
            for ev in EVALUATIONS:
                part, key = _row_spec(row, ev, rung)
                res = RowResults() if key is None else row_results(target, col, part, key, rung,
                                                                    records, cells=cells)
                ours, lo, hi, how = res.interval()
                if key is None:
                    how = ("no worst case at a CW setting" if row.param != "eps" else
                           f"worst case not run at this budget on rung {grid.rung(rung).name!r} "
                           f"(the budget's cut: eps {', '.join(f'{e:g}' for e in grid.rung(rung).worst_case_eps)} only)")
                out.append(dict(table=target, row=row.key, attack=row.label, param=row.param,
                                value=row.value, column=col, label=label, evaluation=ev,
                                ours=ours, lo=lo, hi=hi, interval=how, n_seeds=len(res.seeds),
                                n_points=min(res.n) if res.seeds and all(res.n) else None,
                                paper=paper, dirty=res.dirty))
    return pd.DataFrame(out)


def _ila_cells_frame(rung, records):
    """Table 6 in the layout of :func:`cells_frame`: columns are the members and the
    ensemble, the evaluation is the paper's (ILA on member 1)."""
    import pandas as pd
    tab = P.table(6)
    out = []
    for i, row in enumerate(tab.rows):
        per_col = {c: [] for c in tab.columns}
        n, dirty = None, False
        for seed in grid.seeds_for("6", rung):
            ec = grid.table_cells("6", rung, seed)["eval"].get(("trs", f"ila:{row.dataset}"))
            erec = cell_record(ec, records) if ec else None
            entry = _ila_entry(erec, row)
            if entry is None:
                continue
            n = n or erec.get("metrics", {}).get("n_test")
            dirty |= is_dirty(erec) or is_dirty(cell_record(ec.train, records))
            for c in tab.columns:
                if entry.get(c) is not None:
                    per_col[c].append(float(entry[c]))
        for j, col in enumerate(tab.columns):
            accs = per_col[col]
            ours = lo = hi = None
            how = NOT_RUN
            if accs and n:
                m, lo, hi = stats.unpaired_mean(accs, n)
                ours, lo, hi = round(100 * m, 2), round(100 * lo, 2), round(100 * hi, 2)
                how = "normal over seeds and points (no per-point results)" if len(accs) > 1 \
                    else "Wilson (no per-point results)"
            out.append(dict(table="6", row=row.key, attack=f"{row.dataset}: ILA", param=row.param,
                            value=row.value, column=col, label=tab.column_labels[j],
                            evaluation="paper", ours=ours, lo=lo, hi=hi, interval=how,
                            n_seeds=len(accs), n_points=n if accs else None,
                            paper=tab.values[i][j], dirty=dirty))
    return pd.DataFrame(out)


def threat_models_frame(rung="cpu", records: dict | None = None, root=None, target="1"):
    """Table 1's columns under both threat models, over seeds with 95% intervals: one row per
    (column, budget) with ``column``, ``label``, ``eps``, ``evaluation`` (``worst_case``: the
    white-box per-sample worst case; ``blackbox``: transfer from unseen surrogates), ``ours``,
    ``lo``, ``hi`` (percent), ``n_seeds`` and ``n_points``; ``ours`` None where not run."""
    import pandas as pd
    records = load_records(root) if records is None else records
    tab = P.table(target)
    labels = dict(zip(tab.columns, tab.column_labels))
    cells = seed_cells(target, rung)
    out = []
    for col in grid.table_columns(target, rung):
        for b in grid.blackbox_rows(tab.rows):  # labels as a reader names them (ADP (α = 2, β = 0.5))
            for ev, part, key in (("worst_case", "worst_case", grid.WorstCaseRow(b.value).key),
                                  ("blackbox", "blackbox", b.key)):
                res = row_results(target, col, part, key, rung, records, cells=cells)
                ours, lo, hi, how = res.interval()
                out.append(dict(column=col, label=column_label(col, labels), eps=b.value, evaluation=ev,
                                ours=ours, lo=lo, hi=hi, n_seeds=len(res.seeds),
                                n_points=min(res.n) if res.seeds and all(res.n) else None))
    return pd.DataFrame(out)
