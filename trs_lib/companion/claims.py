"""The paper's claims, each checked against the run records of this companion.

Every claim is decided by a **paired difference** between columns: the same test points, the
same seeds (a column trained with seed s is compared with the other column trained with seed s),
so that what the two share (hard points, a lucky seed) cancels. ``trs_lib.stats`` gives the
difference's mean over seeds and points and its 95% interval by the seed-and-point bootstrap
(records written before per-point results existed get a wider, flagged normal interval).

The margin and the verdict (one definition, used by every claim and by the book's prose)
------------------------------------------------------------------------------------------

A claim's **margin** m is the difference, in points of accuracy, that its words require:

* m = 0 for a claim that one column is better, more robust or more accurate than another
  ("TRS outperforms ...", "more members help", "members transfer less"): any positive
  difference counts, provided the data show it;
* for a claim that something changes little ("about as accurate", "c need not be tuned"), m is
  the size the paper gives or prints: 1 point of clean accuracy for "about as accurate"
  (:data:`BENIGN_MARGIN`), the largest spread over c that the paper's Table 5 prints for
  Table 5.

With d the paired difference the claim speaks of (e.g. TRS minus the best other column) and
[lo, hi] its 95% interval, a claim "d > m" is

* **reproduced** when lo > m (the whole interval is on the claim's side of the margin),
* **not reproduced** when hi < m (the whole interval is on the other side),
* **inconclusive** when lo <= m <= hi (the interval straddles the margin);

and a claim "d < m" is the mirror image. A claim over several rows (attack settings) decides
each row so, then combines them (``trs_lib.stats.combine_verdicts``): "in most cases" is
reproduced when more than half the rows are, not reproduced when fewer than half could be even
if every inconclusive row turned out reproduced, else inconclusive; "in every row" is
reproduced when every row is and not reproduced when any row is not. The estimate, lo and hi
reported for such a claim are those of the difference averaged over its rows. A claim some of
whose numbers have no record is **not yet run at this scale**.

Each claim about robustness is judged twice, separately: under the paper's attack at
the paper's setting (evaluation ``paper``) and under the strong ``worst_case`` suite at the same
L-infinity budget (evaluation ``worst_case``; CW rows have no budget and drop out).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import grid as G
from ..attacks import presets as _presets
from .. import paper_numbers as P
from ..records import cell_record, load_records
from . import tables as R
from .. import stats as S
from .differences import (BENIGN_MARGIN, HALF_WIDTH_TARGET, INCONCLUSIVE, MARGIN, NOT_REPRODUCED,
                          NOT_YET_RUN, REPRODUCED, common_seeds, compare_frame, paired_difference,
                          rows_of)

__all__ = ["Claim", "CLAIMS", "check_claims", "compare_frame", "headline_differences", "width_reason",
           "rows_of", "MARGIN", "BENIGN_MARGIN", "HALF_WIDTH_TARGET", "REPRODUCED", "NOT_REPRODUCED",
           "INCONCLUSIVE", "NOT_YET_RUN"]

@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    page: str                 # the notebook of the book that shows the numbers
    check: object             # (scale, records, evaluation) -> dict(verdict, estimate, ...)
    evaluations: tuple = ("paper", "worst_case")


def _result(verdict, evidence, estimate=None, lo=None, hi=None, margin=MARGIN) -> dict:
    rnd = (lambda v: None if v is None else round(float(v), 2))
    return dict(verdict=verdict, estimate=rnd(estimate), lo=rnd(lo), hi=rnd(hi), margin=margin,
                evidence=evidence)


def headline_differences(scale="cpu", evaluation="paper", records=None, root=None):
    """Table 1's headline differences (TRS minus the best other column of the paper's Table 1,
    per row) with their intervals: the half-width target is a half-width of at most
    :data:`HALF_WIDTH_TARGET` points. ``meets_target`` says whether a row meets it and ``why``
    what makes a wider interval wide (:func:`width_reason`)."""
    others = tuple(c for c in P.table(1).columns if c != "trs")
    frame = compare_frame("1", "trs", others, evaluation, scale, records, root)
    frame["meets_target"] = [None if h is None or h != h else bool(h <= HALF_WIDTH_TARGET)
                             for h in frame["half_width"]]
    frame["why"] = [width_reason(r) for r in frame.to_dict("records")]
    return frame


def width_reason(row: dict) -> str:
    """Why a row of :func:`compare_frame` misses the half-width target ('' when it meets it or
    has no interval): the source whose bootstrap alone is wider (seeds: the training runs
    disagree, so more seeds would narrow it; points: more test points would)."""
    h = row.get("half_width")
    if h is None or h != h or h <= HALF_WIDTH_TARGET:
        return ""
    hs, hp = row.get("seed_half_width"), row.get("point_half_width")
    if hs is None or hp is None or hs != hs or hp != hp:
        return "unpaired records (no per-point results): the interval is a normal approximation"
    n = row.get("n_seeds")
    if hs >= hp:
        return (f"the seeds disagree: seeds alone give ±{hs:.1f}, points alone ±{hp:.1f}; "
                f"with {n} seeds the training run, not the test set, sets the width")
    return (f"the test points: points alone give ±{hp:.1f}, seeds alone ±{hs:.1f}; "
            "more test points would narrow it")


def _mean_over_rows(target, column, frame, scale, records):
    """The difference averaged over the rows, with its interval (one bootstrap over the
    stacked rows when every row is paired on the same seeds, else the average of the rows'
    bounds, which is conservative)."""
    cells = R.seed_cells(target, scale)
    arrays = []
    for rec in frame.to_dict("records"):
        if not rec["paired"]:
            arrays = None
            break
        part = "pgd110" if rec["row"].startswith("pgd110") else (
            "worst_case" if rec["row"].startswith("worst_case") else "whitebox")
        a = R.row_results(target, column, part, rec["row"], scale, records, cells)
        b = R.row_results(target, rec["best_other"], part, rec["row"], scale, records, cells)
        seeds = common_seeds(a, b)
        arrays.append((tuple(seeds), a.array(seeds) - b.array(seeds)))
    if arrays and len({s for s, _ in arrays}) == 1 and len({x.shape for _, x in arrays}) == 1:
        d, lo, hi = S.bootstrap_mean(np.mean([x for _, x in arrays], axis=0))
        return 100 * d, 100 * lo, 100 * hi
    return frame["estimate"].mean(), frame["lo"].mean(), frame["hi"].mean()


def _compare(target, column, others, label, rule, what="", target_width=False, parts=None,
             rung=None):
    """A claim that ``column`` beats the best of ``others`` (margin 0), row by row; judged on
    ``rung`` when given (else on the rung the claims are checked at)."""
    def check(scale, records, evaluation):
        scale = rung or scale
        target_ = G.normalise_target(target)
        if not G.table_cells(target_, scale)["train"]:
            return _result(NOT_YET_RUN, f"no cells for this table on rung {G.rung(scale).name!r}")
        frame = compare_frame(target_, column, others, evaluation, scale, records, parts=parts)
        done = frame[frame["verdict"] != NOT_YET_RUN]
        if len(done) < len(frame) or frame.empty:
            text = (f"{len(done)} of {len(frame)} rows have a number for {label} and every other "
                    f"column ({what or ', '.join(others)}) at every seed the scale trains it with")
            prov = frame[frame["provisional"]] if "provisional" in frame else frame.iloc[:0]
            if len(prov):
                text += ("; provisional, on the seeds recorded so far (no verdict): " + "; ".join(
                    f"{r['label']}: {r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}] vs "
                    f"{r['best_other']} ({r['n_seeds']} seed{'s' if r['n_seeds'] > 1 else ''})"
                    for r in prov.to_dict("records")))
            return _result(NOT_YET_RUN, text)
        verdict = S.combine_verdicts(done["verdict"], rule)
        d, lo, hi = _mean_over_rows(target_, column, frame, scale, records)
        counts = {v: int((done["verdict"] == v).sum()) for v in (REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED)}
        need = "more than half the rows" if rule == "most" else "every row"
        text = (f"{label} minus the best other column, per row: {counts[REPRODUCED]} reproduced, "
                f"{counts[INCONCLUSIVE]} inconclusive, {counts[NOT_REPRODUCED]} not reproduced of "
                f"{len(done)} (needs {need}); mean over rows {d:+.1f} [{lo:+.1f}, {hi:+.1f}] points")
        if not done["paired"].all():
            text += "; some rows lack per-point results (unpaired normal intervals)"
        if target_width:
            wide = done[done["half_width"] > HALF_WIDTH_TARGET]
            text += (f"; largest half-width {done['half_width'].max():.1f} points (target <= "
                     f"{HALF_WIDTH_TARGET:g}: " + ("met" if wide.empty else
                     "not met at " + "; ".join(f"{r['label']}, {width_reason(r)}"
                                               for r in wide.to_dict("records"))) + ")")
        rows = "; ".join(f"{r['label']}: {r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}] "
                         f"vs {r['best_other']}" for r in done.to_dict("records"))
        return _result(verdict, f"{text}. Rows: {rows}", d, lo, hi)
    return check


# ------------------------------------------------------------------------ claims of other shapes
def _transfer_matrices(scale, records):
    """``{(ensemble, attack): [matrix per seed]}`` (fractions) and the points per matrix."""
    out, n = {}, None
    for seed in G.seeds_for("fig2", scale):
        cells = G.table_cells("fig2", scale, seed)
        for col in ("vanilla", "trs"):
            ec = cells["eval"].get((col, "transfer"))
            rec = cell_record(ec, records) if ec else None
            for entry in (rec or {}).get("metrics", {}).get("rows", []):
                if entry.get("matrix") is not None:
                    out.setdefault((col, entry.get("attack")), []).append(np.asarray(entry["matrix"], float))
                    n = n or rec["metrics"].get("n_test")
    return out, n


def _matrix_claim(diagonal: bool):
    """TRS vs vanilla members: off the diagonal (transfer) or on it (each member attacked on
    itself, App. G). Matrices carry accuracies only, so the interval is the unpaired one."""
    def check(scale, records, evaluation):
        mats, n = _transfer_matrices(scale, records)
        attacks = list(G.TRANSFER_ATTACKS)
        if not n or any(not mats.get((c, a)) for c in ("vanilla", "trs") for a in attacks):
            return _result(NOT_YET_RUN, "transfer matrices of Figure 2 not run for both ensembles")
        verdicts, parts, ds = [], [], []
        for a in attacks:
            vals = {}
            for col in ("vanilla", "trs"):
                ms = mats[(col, a)]
                mask = np.eye(len(ms[0]), dtype=bool)
                vals[col] = [float(m[mask if diagonal else ~mask].mean()) for m in ms]
            d, lo, hi = S.unpaired_difference(vals["trs"], vals["vanilla"], n)
            d, lo, hi = 100 * d, 100 * lo, 100 * hi
            verdicts.append(S.verdict(lo, hi, MARGIN))
            ds.append((d, lo, hi))
            parts.append(f"{a.upper()}: TRS {100 * np.mean(vals['trs']):.1f} vs vanilla "
                         f"{100 * np.mean(vals['vanilla']):.1f}, difference {d:+.1f} [{lo:+.1f}, "
                         f"{hi:+.1f}] ({len(vals['trs'])} seed(s))")
        what = ("accuracy of each member on examples crafted against itself (diagonal)" if diagonal
                else "accuracy on examples transferred from another member (off the diagonal)")
        d, lo, hi = (float(np.mean([x[i] for x in ds])) for i in range(3))
        return _result(S.combine_verdicts(verdicts, "all"),
                       f"{what}, ε = {P.figure('fig2').eps:g}: " + "; ".join(parts)
                       + " (unpaired: matrices hold accuracies only)", d, lo, hi)
    return check


def _benign(scale, records, evaluation):
    """Vanilla minus TRS clean accuracy (the Figure 2 ensembles), margin 1 point, 'less'."""
    acc, n = {"vanilla": {}, "trs": {}}, None
    for seed in G.seeds_for("fig2", scale):
        cells = G.table_cells("fig2", scale, seed)
        for col in acc:
            ec = cells["eval"].get((col, "transfer"))
            rec = cell_record(ec, records) if ec else None
            m = (rec or {}).get("metrics", {})
            if m.get("clean_accuracy") is not None and m.get("n_test"):
                acc[col][seed], n = float(m["clean_accuracy"]), int(m["n_test"])
    seeds = sorted(set(acc["vanilla"]) & set(acc["trs"]))
    if not seeds:
        return _result(NOT_YET_RUN, "clean accuracy of the Figure 2 vanilla and TRS ensembles not "
                                    "recorded", margin=BENIGN_MARGIN)
    d, lo, hi = S.unpaired_difference([acc["vanilla"][s] for s in seeds],
                                      [acc["trs"][s] for s in seeds], n)
    d, lo, hi = 100 * d, 100 * lo, 100 * hi
    return _result(S.verdict(lo, hi, BENIGN_MARGIN, "less"),
                   f"clean accuracy vanilla minus TRS on {n} test points, {len(seeds)} seed(s): "
                   f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}] points; reproduced when the whole interval "
                   f"is below {BENIGN_MARGIN:g} point", d, lo, hi, BENIGN_MARGIN)


def _c_insensitive(scale, records, evaluation):
    """Table 5: per row, the best c minus the worst c, below the paper's largest spread."""
    tab = P.table(5)
    margin = round(max(max(r) - min(r) for r in tab.values), 2)  # points (the paper prints one decimal)
    cols = tab.columns
    verdicts, parts, ds = [], [], []
    rows = rows_of("5", evaluation, scale)
    cells = R.seed_cells("5", scale)
    for label, part, key in rows:
        res = {c: R.row_results("5", c, part, key, scale, records, cells) for c in cols}
        if not all(r.seeds for r in res.values()):
            return _result(NOT_YET_RUN, f"{label}: not every c has a number", margin=margin)
        mean = {c: np.mean(r.accuracy) for c, r in res.items()}
        hi_c, lo_c = max(cols, key=mean.get), min(cols, key=mean.get)
        diff = paired_difference(res[hi_c], res[lo_c])
        if diff is None:
            return _result(NOT_YET_RUN, f"{label}: no seed common to every c", margin=margin)
        d, lo, hi = diff[:3]
        verdicts.append(S.verdict(lo, hi, margin, "less"))
        ds.append((d, lo, hi))
        parts.append(f"{label}: {d:.1f} [{lo:.1f}, {hi:.1f}]")
    d, lo, hi = (float(np.max([x[i] for x in ds])) for i in range(3))
    return _result(S.combine_verdicts(verdicts, "all"),
                   f"spread over c (best minus worst c, paired) below the paper's largest spread "
                   f"{margin:.1f} points in every row; largest {d:.1f} [{lo:.1f}, {hi:.1f}]. "
                   + "; ".join(parts), d, lo, hi, margin)


def _ila(scale, records, evaluation):
    """Table 6 (MNIST rows): member 1 (the ILA's source) is hurt more than members 2, 3 and the
    ensemble: the weakest of those minus member 1 > 0 in every row."""
    frame = R.cells_frame("6", scale, records)
    frame = frame[frame["row"].str.startswith("mnist:")]
    if frame.empty or frame["ours"].isna().any():
        return _result(NOT_YET_RUN, "ILA rows on MNIST not run")
    verdicts, parts, ds = [], [], []
    for key, g in frame.groupby("row", sort=False):
        v = {r["column"]: r for r in g.to_dict("records")}
        weakest = min(("member2", "member3", "ensemble"), key=lambda c: v[c]["ours"])
        # unpaired: the ILA records carry accuracies only; interval from the two cells' intervals
        a, b = v[weakest], v["member1"]
        d = a["ours"] - b["ours"]
        half = np.hypot((a["hi"] - a["lo"]) / 2, (b["hi"] - b["lo"]) / 2)
        verdicts.append(S.verdict(d - half, d + half, MARGIN))
        ds.append((d, d - half, d + half))
        parts.append(f"{key.split('/')[1]}: member 1 {b['ours']:.1f}, weakest other ({weakest}) "
                     f"{a['ours']:.1f}, difference {d:+.1f} [{d - half:+.1f}, {d + half:+.1f}]")
    d, lo, hi = (float(np.mean([x[i] for x in ds])) for i in range(3))
    return _result(S.combine_verdicts(verdicts, "all"), "; ".join(parts)
                   + " (unpaired: ILA records hold accuracies only)", d, lo, hi)


SMOOTHNESS_RADIUS = _presets.SMOOTHNESS_CLAIM_RADIUS


def _smoothness(scale, records, evaluation):
    """The premise of TRS (Sec. 3, Theorem 1): TRS members are smoother than vanilla members.
    Measured by the ``smoothness`` cells of the figures' grid (the same vanilla and TRS
    ensembles, every seed): per point, the members' mean local smoothness at L2 radius
    :data:`SMOOTHNESS_RADIUS` (:func:`trs_lib.theory.estimators.local_smoothness`); the claim
    needs TRS minus vanilla below 0, paired on points and seeds (seed-and-point bootstrap)."""
    key = f"smoothness/r={SMOOTHNESS_RADIUS:g}"
    per = {"trs": {}, "vanilla": {}}
    for seed, cells in R.seed_cells("fig2", scale).items():
        for col in per:
            ec = cells["eval"].get((col, "smoothness"))
            entry = R._entry(cell_record(ec, records), key) if ec else None
            if entry is not None and entry.get("values"):
                per[col][seed] = np.asarray(entry["values"], dtype=float)
    seeds = [s for s in per["trs"] if s in per["vanilla"]
             and len(per["trs"][s]) == len(per["vanilla"][s])]
    if not seeds:
        return _result(NOT_YET_RUN, "no seed has both a vanilla and a TRS smoothness record "
                                    "(grid cells smoothness-*, target fig2)")
    trs = np.stack([per["trs"][s] for s in seeds])
    van = np.stack([per["vanilla"][s] for s in seeds])
    d, lo, hi = S.bootstrap_mean(trs - van)
    v = S.verdict(lo, hi, MARGIN, "less")
    return _result(v, f"local smoothness at L2 radius {SMOOTHNESS_RADIUS:g} (mean over members and "
                      f"{trs.shape[1]} points, {len(seeds)} seed(s); lower is smoother): TRS "
                      f"{trs.mean():.4g}, vanilla {van.mean():.4g} (ratio {trs.mean() / van.mean():.2f}); "
                      f"TRS - vanilla {d:+.4g} [{lo:+.4g}, {hi:+.4g}]; reproduced when the whole "
                      f"interval is below {MARGIN:g}", d, lo, hi)


_T1_OTHERS = tuple(c for c in P.table(1).columns if c != "trs")
_ALL_T1 = G.table_columns("1")

CLAIMS = (
    Claim("benign", "On benign inputs a TRS ensemble is about as accurate as a vanilla one.",
          "Sec. 4, claim (1)", "figures_transfer", _benign, ("n/a",)),
    Claim("mnist-most", "TRS outperforms CosSim, CKAE, AdaBoost, GradientBoost and ADP on MNIST "
          "in most cases.", "Sec. 4.3, Table 1", "table1_mnist",
          _compare("1", "trs", _T1_OTHERS, "TRS", "most", target_width=True)),
    Claim("trs-published-most", "TRS as its authors ran it (published loss, their training loop) "
          "outperforms every other column of Table 1 (the TRS of Sec. 3, the baselines, GAL, "
          "DVERGE) in most cases.", "beyond the paper: the authors' code, Table 1 budgets",
          "table1_mnist",
          _compare("1", "trs_published", tuple(c for c in _ALL_T1 if c != "trs_published"),
                   "TRS (published)", "most")),
    Claim("cifar-most", "TRS outperforms the baselines on CIFAR-10 on most attacks.",
          "App. F, Table 2", "table2_cifar10",
          _compare("2", "trs", tuple(c for c in P.table(2).columns if c != "trs"), "TRS", "most")),
    Claim("transfer", "Members of a TRS ensemble transfer adversarial examples to each other "
          "less than vanilla members (MNIST, eps = 0.2).", "Sec. 4.3, Figures 2-3",
          "figures_transfer", _matrix_claim(diagonal=False), ("n/a",)),
    Claim("members-robust", "Each member of a TRS ensemble is individually more robust than a "
          "vanilla member (the diagonal of the transfer matrices).", "App. G, Figure 3",
          "figures_transfer", _matrix_claim(diagonal=True), ("n/a",)),
    Claim("smoothness", "TRS members are smoother than vanilla ones (smaller β), the premise of "
          "the smoothness term.", "Sec. 3, Theorem 1", "figures_transfer", _smoothness, ("n/a",)),
    Claim("members", "More members (k = 3 vs 2) give more robustness on MNIST in every row.",
          "App. H, Table 3", "table3_4_members_at",
          _compare("3", "trs", ("trs_k2",), "TRS k = 3", "all", "TRS k = 2")),
    Claim("at", "Adding adversarial training gives the best robustness in every row.",
          "App. H, Table 3", "table3_4_members_at",
          _compare("3", "trs_at", ("trs_k2", "trs", "adp"), "TRS + AT", "all")),
    Claim("pgd110", "Under PGD with 110 iterations TRS stays more robust than ADP.",
          "App. H, Table 3", "table3_4_members_at",
          _compare("3", "trs", ("adp",), "TRS", "all", "ADP", parts=("pgd110",)), ("paper",)),
    Claim("c", "The weight c need not be tuned carefully (robustness changes little with c).",
          "App. H, Table 5", "table5_c", _c_insensitive),
    Claim("ila", "ILA crafted on member 1 hurts member 1 but transfers little to the other "
          "members and the ensemble.", "App. I, Table 6", "table6_ila", _ila, ("paper",)),
    Claim("r20-most", "With the paper's architecture (ResNet-20, on mnist5k) TRS still "
          "outperforms vanilla and ADP in most cases.", "Sec. 4.3, Table 1 (architecture of App. F)",
          "table1_mnist",
          _compare("1", "trs", ("vanilla", "adp"), "TRS (ResNet-20)", "most", rung="cpu-r20-2ep")),
)


def check_claims(scale="cpu", records: dict | None = None, root=None) -> list[dict]:
    """Every claim under each of its evaluations: a list of dicts with ``id``,
    ``text``, ``source``, ``page``, ``evaluation`` (``paper``, ``worst_case`` or ``n/a``),
    ``verdict``, ``estimate``, ``lo``, ``hi`` (the difference and its 95% interval in points,
    None when not run), ``margin`` (points) and ``evidence``."""
    records = load_records(root) if records is None else records
    out = []
    for c in CLAIMS:
        for ev in c.evaluations:
            res = c.check(scale, records, ev)
            out.append(dict(id=c.id, text=c.text, source=c.source, page=c.page, evaluation=ev, **res))
    return out
