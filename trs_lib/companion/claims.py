"""The paper's claims, each checked against the run records of this companion.

Every claim is decided by **paired differences** between columns: the same test points, the
same seeds (a column trained with seed s is compared with the other column trained with seed s),
so that what the two share (hard points, a lucky seed) cancels. One difference per row (attack
setting) of the claim; :mod:`trs_lib.companion.verdicts` turns the rows into one statistic.

The verdict rule
----------------

Each claim has one statistic that decides it: the **mean over rows** (a claim about one
quantity), the **worst row** (minimum over rows) for a claim "in every row", or the **row vote**
(the k-th best row of n, k more than half) for a claim "in most cases". Its 95% interval comes
from one joint bootstrap of all the claim's rows: the seeds and the test points are resampled
once per draw for every row together, and a row on fewer points (CW on a subset) uses that
draw's weights at its own points. For the worst row and the row vote the rows' intervals are
simultaneous (max-statistic bootstrap: each row's draws standardised by its bootstrap standard
error, one critical value c for all rows from the largest standardised deviation in each draw),
and the statistic's interval is the same order statistic of the rows' bounds. Rows without
per-point results are drawn as binomials on their points. The number shown beside a verdict is
this statistic and this interval. With margin m, a claim "statistic > m" is **reproduced** when
the whole interval is above m, **not reproduced** when it is wholly below m, and
**inconclusive** when it contains m ("statistic < m": the mirror image). Fewer than 3 seeds on
either side of the comparison makes the verdict at most **provisional** (what the interval
reads is kept beside it). A claim is marked **fragile** when leaving out any single row changes
its verdict (the row is named), and **margin-sensitive** when its verdict at half or at twice
the margin differs. Every margin is a named constant with its source (the paper's words and line,
or the companion's choice and why). A claim some of whose numbers have no record is **not yet
run at this scale**.

Each claim about robustness is judged twice, separately: under the paper's attack at the paper's
setting (evaluation ``paper``) and under the strong ``worst_case`` suite at the same L-infinity
budget (evaluation ``worst_case``; CW rows have no budget and drop out). Table 5's worst-case
row has no counterpart in the paper and gets no verdict.
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
from . import verdicts as V
from .differences import (BENIGN, BENIGN_MARGIN, BETTER, C_SPREAD, HALF_WIDTH_TARGET, ILA_GAP,
                          INCONCLUSIVE, MARGIN, MARGINS, NOT_REPRODUCED, NOT_YET_RUN, REPRODUCED, SMOOTHER,
                          common_seeds, compare_frame, rows_of)

__all__ = ["Claim", "CLAIMS", "check_claims", "compare_claim", "compare_frame", "headline_differences", "width_reason",
           "rows_of", "rule_text", "MARGINS", "MARGIN", "BENIGN_MARGIN", "HALF_WIDTH_TARGET", "REPRODUCED",
           "NOT_REPRODUCED", "INCONCLUSIVE", "NOT_YET_RUN", "PROVISIONAL", "NO_VERDICT", "VERDICTS"]

PROVISIONAL, NO_VERDICT = V.PROVISIONAL, V.NO_VERDICT
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, PROVISIONAL)   # the four a claim can get


def rule_text() -> str:
    """The verdict rule in the words of this module's docstring (the summary page shows it)."""
    text = __doc__.split("The verdict rule\n----------------\n", 1)[1]
    return " ".join(text.split())


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    page: str                 # the notebook of the book that shows the numbers
    check: object             # (scale, records, evaluation) -> dict(verdict, estimate, ...)
    evaluations: tuple = ("paper", "worst_case")


_EMPTY = dict(reading=None, statistic=None, kind=None, direction=None, estimate=None, lo=None,
              hi=None, unit=None, at_half_margin=None, at_twice_margin=None,
              margin_sensitive=None, fragile=[], simultaneous=None, sides=(), seeds=(),
              points=(), rows=[], parts=[], rung=None)


def _missing(evidence, margin=BETTER) -> dict:
    return dict(_EMPTY, verdict=NOT_YET_RUN, margin=margin.value, margin_source=margin.source,
                evidence=evidence)


def _decided(rows, kind, margin, evidence, direction="greater", sides=("a", "b")) -> dict:
    res = V.decide(rows, kind, margin, direction, sides=sides)
    return dict(_EMPTY, **res, evidence=evidence)


def _row(label, a: R.RowResults, b: R.RowResults, n_full=None, note="") -> V.Row | None:
    """The paired difference a - b of one row over their common seeds (unpaired: accuracies)."""
    seeds = common_seeds(a, b)
    if not seeds:
        return None
    if a.paired and b.paired and len(a.correct[0]) == len(b.correct[0]):
        diff = a.array(seeds) - b.array(seeds)
        n = diff.shape[1]
        pos = None if not n_full or n == n_full else V.spread_positions(n_full, n)
        return V.Row(label, tuple(seeds), diff=diff, n=n, seeds_a=len(a.seeds),
                     seeds_b=len(b.seeds), positions=pos, note=note)
    if not all(a.n + b.n):
        return None
    return V.Row(label, tuple(seeds), acc_a=tuple(a.accuracy[a.seeds.index(s)] for s in seeds),
                 acc_b=tuple(b.accuracy[b.seeds.index(s)] for s in seeds), n=min(a.n + b.n),
                 seeds_a=len(a.seeds), seeds_b=len(b.seeds), note=note + " (unpaired)")


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


def compare_claim(target, column, others, label, rule, what="", target_width=False, parts=None,
             rung=None):
    """A claim that ``column`` beats the best of ``others`` (margin :data:`BETTER`), decided by
    the row vote (``rule="most"``) or the worst row (``"all"``); judged on ``rung`` when given
    (else on the rung the claims are checked at)."""
    def check(scale, records, evaluation):
        scale = rung or scale
        target_ = G.normalise_target(target)
        if not G.table_cells(target_, scale)["train"]:
            return _missing(f"no cells for this table on rung {G.rung(scale).name!r}")
        frame = compare_frame(target_, column, others, evaluation, scale, records, parts=parts)
        done = frame[frame["verdict"] != NOT_YET_RUN]
        if len(done) < len(frame) or frame.empty:
            text = (f"{len(done)} of {len(frame)} rows have a number for {label} and every other "
                    f"column ({what or ', '.join(others)}) at every seed the scale trains it with")
            prov = frame[frame["provisional"]] if "provisional" in frame else frame.iloc[:0]
            if len(prov):
                text += ("; on the seeds recorded so far (no verdict): " + "; ".join(
                    f"{r['label']}: {r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}] vs "
                    f"{r['best_other']} ({r['n_seeds']} seed{'s' if r['n_seeds'] > 1 else ''})"
                    for r in prov.to_dict("records")))
            return _missing(text)
        cells = R.seed_cells(target_, scale)
        part_of = {key: part for _, part, key in rows_of(target_, evaluation, scale)}
        res = [(r, R.row_results(target_, column, part_of[r["row"]], r["row"], scale, records, cells),
                R.row_results(target_, r["best_other"], part_of[r["row"]], r["row"], scale, records,
                              cells)) for r in done.to_dict("records")]
        n_full = max(len(a.correct[0]) if a.paired else 0 for _, a, _ in res) or None
        rows = [_row(r["label"], a, b, n_full, f"vs {r['best_other']}") for r, a, b in res]
        if any(x is None for x in rows):
            return _missing("a row has no seed common to both columns")
        text = f"{label} minus the best other column of {what or ', '.join(others)}, per row"
        if rung:
            text = f"on rung {rung} ({G.rung(rung).describe('mnist')}): " + text
        if target_width:
            wide = done[done["half_width"] > HALF_WIDTH_TARGET]
            text += (f"; largest per-row half-width {done['half_width'].max():.1f} points (target "
                     f"<= {HALF_WIDTH_TARGET:g}: " + ("met" if wide.empty else
                     "not met at " + "; ".join(f"{r['label']}, {width_reason(r)}"
                                               for r in wide.to_dict("records"))) + ")")
        return dict(_decided(rows, rule, BETTER, text, sides=(label, "best other")), rung=scale)
    return check


# ------------------------------------------------------------------------ claims of other shapes
def _per_seed(scale, records, target, part):
    """``{column: {seed: record}}`` of the figures' vanilla and TRS cells of ``part``."""
    out = {"vanilla": {}, "trs": {}}
    for seed, cells in R.seed_cells(target, scale).items():
        for col in out:
            ec = cells["eval"].get((col, part))
            rec = cell_record(ec, records) if ec else None
            if rec is not None:
                out[col][seed] = rec
    return out


def _matrix_claim(diagonal: bool):
    """TRS vs vanilla members: off the diagonal (transfer) or on it (each member attacked on
    itself, App. G); worst of the attacks. Matrices carry accuracies only (binomial draws)."""
    def check(scale, records, evaluation):
        recs = _per_seed(scale, records, "fig2", "transfer")
        rows = []
        for attack in G.TRANSFER_ATTACKS:
            vals = {c: {} for c in recs}
            n = None
            for col, by in recs.items():
                for seed, rec in by.items():
                    for e in rec.get("metrics", {}).get("rows", []):
                        if e.get("attack") == attack and e.get("matrix") is not None:
                            m = np.asarray(e["matrix"], float)
                            mask = np.eye(len(m), dtype=bool)
                            vals[col][seed] = float(m[mask if diagonal else ~mask].mean())
                            n = n or rec["metrics"].get("n_test")
            seeds = sorted(set(vals["trs"]) & set(vals["vanilla"]))
            if not seeds or not n:
                return _missing("transfer matrices of Figure 2 not run for both ensembles")
            rows.append(V.Row(attack.upper(), tuple(seeds), acc_a=tuple(vals["trs"][s] for s in seeds),
                              acc_b=tuple(vals["vanilla"][s] for s in seeds), n=int(n),
                              seeds_a=len(vals["trs"]), seeds_b=len(vals["vanilla"]),
                              note=f"TRS {100 * np.mean(list(vals['trs'].values())):.1f} vs vanilla "
                                   f"{100 * np.mean(list(vals['vanilla'].values())):.1f}"))
        what = ("accuracy of each member on examples crafted against itself (diagonal)" if diagonal
                else "accuracy on examples transferred from another member (off the diagonal)")
        return _decided(rows, "all", BETTER, f"TRS minus vanilla {what}, ε = "
                        f"{P.figure('fig2').eps:g} (unpaired: matrices hold accuracies only)",
                        sides=("TRS", "vanilla"))
    return check


def _benign(scale, records, evaluation):
    """Vanilla minus TRS clean accuracy (the Figure 2 ensembles) below :data:`BENIGN`."""
    recs = _per_seed(scale, records, "fig2", "transfer")
    acc, n = {c: {} for c in recs}, None
    for col, by in recs.items():
        for seed, rec in by.items():
            m = rec.get("metrics", {})
            if m.get("clean_accuracy") is not None and m.get("n_test"):
                acc[col][seed], n = float(m["clean_accuracy"]), int(m["n_test"])
    seeds = sorted(set(acc["vanilla"]) & set(acc["trs"]))
    if not seeds:
        return _missing("clean accuracy of the Figure 2 vanilla and TRS ensembles not recorded",
                        BENIGN)
    row = V.Row("clean accuracy", tuple(seeds), acc_a=tuple(acc["vanilla"][s] for s in seeds),
                acc_b=tuple(acc["trs"][s] for s in seeds), n=n, seeds_a=len(acc["vanilla"]),
                seeds_b=len(acc["trs"]), note="unpaired: records hold the accuracy only")
    return _decided([row], "mean", BENIGN, f"clean accuracy vanilla minus TRS on {n} test points "
                    f"(unpaired)", "less", sides=("vanilla", "TRS"))


def _c_insensitive(scale, records, evaluation):
    """Table 5: per row, the best c minus the worst c (paired), every row below
    :data:`C_SPREAD`; the worst case has no paper counterpart: its number, no verdict."""
    cols = P.table(5).columns
    cells = R.seed_cells("5", scale)
    picked = []
    for label, part, key in rows_of("5", evaluation, scale):
        res = {c: R.row_results("5", c, part, key, scale, records, cells) for c in cols}
        if not all(r.seeds for r in res.values()):
            return _missing(f"{label}: not every c has a number", C_SPREAD)
        mean = {c: np.mean(r.accuracy) for c, r in res.items()}
        picked.append((label, res[max(cols, key=mean.get)], res[min(cols, key=mean.get)],
                       f"{max(cols, key=mean.get)} minus {min(cols, key=mean.get)}"))
    n_full = max(len(a.correct[0]) if a.paired else 0 for _, a, _, _ in picked) or None
    rows = [_row(label, a, b, n_full, note) for label, a, b, note in picked]
    if any(r is None for r in rows):
        return _missing("a row has no seed common to every c", C_SPREAD)
    out = _decided(rows, "all", C_SPREAD, "spread over c (best minus worst c, paired) below the "
                   "paper's largest spread in every row", "less", sides=("best c", "worst c"))
    if evaluation == "worst_case":
        out.update(verdict=NO_VERDICT, at_half_margin=None, at_twice_margin=None,
                   margin_sensitive=None, evidence=out["evidence"] + "; the paper has no worst-"
                   "case row, so its margin has no counterpart: the number is shown, no verdict")
    return out


def _ila_per_seed(scale, records, row):
    """``{column: {seed: accuracy}}`` of one Table 6 row, and its number of points."""
    out, n = {c: {} for c in P.table(6).columns}, None
    for seed in G.seeds_for("6", scale):
        ec = G.table_cells("6", scale, seed)["eval"].get(("trs", f"ila:{row.dataset}"))
        rec = cell_record(ec, records) if ec else None
        for e in (rec or {}).get("metrics", {}).get("rows", []):
            if e.get("key") == row.key:
                n = n or rec["metrics"].get("n_test")
                for c, v in (e.get("accuracy_by_model") or e).items():
                    if c in out and v is not None:
                        out[c][seed] = float(v)
    return out, n


def _ila(scale, records, evaluation):
    """Table 6 (MNIST rows): the weakest of members 2, 3 and the ensemble minus member 1 (the
    ILA's source), minus the paper's own gap in that row (:data:`ILA_GAP`), above 0 in every
    row. The ILA records hold accuracies only (binomial draws)."""
    tab = P.table(6)
    rows = []
    for i, row in enumerate(tab.rows):
        if row.dataset != "mnist":
            continue
        acc, n = _ila_per_seed(scale, records, row)
        if not n or not all(acc.values()):
            return _missing("ILA rows on MNIST not run", ILA_GAP)
        others = ("member2", "member3", "ensemble")
        weakest = min(others, key=lambda c: np.mean(list(acc[c].values())))
        paper = dict(zip(tab.columns, tab.values[i]))
        gap = round(min(paper[c] for c in others) - paper["member1"], 2)
        seeds = sorted(set(acc[weakest]) & set(acc["member1"]))
        rows.append(V.Row(f"ILA ε = {row.value:g}", tuple(seeds),
                          acc_a=tuple(acc[weakest][s] for s in seeds),
                          acc_b=tuple(acc["member1"][s] for s in seeds), n=int(n),
                          seeds_a=len(acc[weakest]), seeds_b=len(acc["member1"]), shift=gap,
                          note=f"{weakest} {100 * np.mean(list(acc[weakest].values())):.1f} vs member "
                               f"1 {100 * np.mean(list(acc['member1'].values())):.1f}; paper's gap {gap:g}"))
    return _decided(rows, "all", ILA_GAP, "weakest other model minus sub-model 1, minus the "
                    "paper's gap in the same row (unpaired: ILA records hold accuracies only)",
                    sides=("weakest other", "sub-model 1"))


SMOOTHNESS_RADIUS = _presets.SMOOTHNESS_CLAIM_RADIUS


def _smoothness(scale, records, evaluation):
    """The premise of TRS (Sec. 3, Theorem 1): TRS members are smoother than vanilla members,
    per point the members' mean local smoothness at L2 radius :data:`SMOOTHNESS_RADIUS`
    (:func:`trs_lib.theory.estimators.local_smoothness`, in gradient change per unit L2
    distance); TRS minus vanilla below 0, paired on points and seeds."""
    key = f"smoothness/r={SMOOTHNESS_RADIUS:g}"
    per = {c: {} for c in ("trs", "vanilla")}
    for col, by in _per_seed(scale, records, "fig2", "smoothness").items():
        for seed, rec in by.items():
            entry = next((e for e in rec.get("metrics", {}).get("rows", []) if e.get("key") == key), None)
            if entry is not None and entry.get("values"):
                per[col][seed] = np.asarray(entry["values"], dtype=float)
    seeds = [s for s in per["trs"] if s in per["vanilla"]
             and len(per["trs"][s]) == len(per["vanilla"][s])]
    if not seeds:
        return _missing("no seed has both a vanilla and a TRS smoothness record "
                        "(grid cells smoothness-*, target fig2)", SMOOTHER)
    trs = np.stack([per["trs"][s] for s in seeds])
    van = np.stack([per["vanilla"][s] for s in seeds])
    row = V.Row(f"smoothness r = {SMOOTHNESS_RADIUS:g}", tuple(seeds), diff=trs - van,
                n=trs.shape[1], seeds_a=len(per["trs"]), seeds_b=len(per["vanilla"]), scale=1.0,
                note=f"TRS {trs.mean():.4g}, vanilla {van.mean():.4g} (ratio {trs.mean() / van.mean():.2f})")
    return _decided([row], "mean", SMOOTHER, f"local smoothness at L2 radius "
                    f"{SMOOTHNESS_RADIUS:g} (mean over members and points; lower is smoother), "
                    "TRS minus vanilla", "less", sides=("TRS", "vanilla"))


def _conjunction(*ids):
    """The paper's mechanism read against its effect: every part must be reproduced."""
    def check(scale, records, evaluation):
        parts = [dict(id=c.id, **c.check(scale, records, "n/a")) for c in CLAIMS if c.id in ids]
        if any(p["verdict"] == NOT_YET_RUN for p in parts):
            return _missing("a part has no record: " + ", ".join(p["id"] for p in parts
                                                                  if p["verdict"] == NOT_YET_RUN))
        reading = S.combine_verdicts([p["reading"] for p in parts], "all")
        prov = any(p["verdict"] == PROVISIONAL for p in parts)
        seeds = tuple(min(p["seeds"][i] for p in parts) for i in range(2))
        return dict(_EMPTY, verdict=PROVISIONAL if prov else reading, reading=reading,
                    statistic="conjunction: every part reproduced", kind="and",
                    margin=None, margin_source="each part's own margin", seeds=seeds,
                    sides=("TRS", "vanilla"), points=tuple(sorted({n for p in parts for n in p["points"]})),
                    fragile=[p["id"] for p in parts if S.combine_verdicts(
                        [q["reading"] for q in parts if q is not p], "all") != reading],
                    parts=[{k: p[k] for k in ("id", "verdict", "reading", "estimate", "lo", "hi", "unit")}
                           for p in parts],
                    evidence="; ".join(f"{p['id']}: {p['reading']}" for p in parts))
    return check


_T1_OTHERS = tuple(c for c in P.table(1).columns if c != "trs")
_ALL_T1 = tuple(c for c in G.table_columns("1") if c not in G.SUCCESSORS)
_ALL_T1_OTHERS = tuple(c for c in _ALL_T1 if c != "trs")

CLAIMS = (
    Claim("benign", "On benign inputs a TRS ensemble is about as accurate as a vanilla one.",
          "Sec. 4, claim (1)", "figures_transfer", _benign, ("n/a",)),
    Claim("mnist-most", "TRS outperforms CosSim, CKAE, AdaBoost, GradientBoost and ADP on MNIST "
          "in most cases.", "Sec. 4.3, Table 1", "table1_mnist",
          compare_claim("1", "trs", _T1_OTHERS, "TRS", "most", target_width=True)),
    Claim("trs-published-most", "TRS as its authors ran it (published loss, their training loop) "
          "outperforms every other column of Table 1 (the TRS of Sec. 3, the baselines, GAL, "
          "DVERGE) in most cases.", "beyond the paper: the authors' code, Table 1 budgets",
          "table1_mnist",
          compare_claim("1", "trs_published", tuple(c for c in _ALL_T1 if c != "trs_published"),
                   "TRS (published)", "most")),
    Claim("cifar-most", "TRS outperforms the baselines on CIFAR-10 on most attacks.",
          "App. F, Table 2", "table2_cifar10",
          compare_claim("2", "trs", tuple(c for c in P.table(2).columns if c != "trs"), "TRS", "most")),
    Claim("transfer", "Members of a TRS ensemble transfer adversarial examples to each other "
          "less than vanilla members (MNIST, eps = 0.2).", "Sec. 4.3, Figures 2-3",
          "figures_transfer", _matrix_claim(diagonal=False), ("n/a",)),
    Claim("members-robust", "Each member of a TRS ensemble is individually more robust than a "
          "vanilla member (the diagonal of the transfer matrices).", "App. G, Figure 3",
          "figures_transfer", _matrix_claim(diagonal=True), ("n/a",)),
    Claim("smoothness", "TRS members are smoother than vanilla ones (smaller β), the premise of "
          "the smoothness term.", "Sec. 3, Theorem 1", "figures_transfer", _smoothness, ("n/a",)),
    Claim("mechanism", "TRS members are smoother and individually more robust, and transfer "
          "less to each other: the paper's premise and its effect together.",
          "Sec. 3 (line 129) and Sec. 4.3, Figures 2-3", "figures_transfer",
          _conjunction("smoothness", "members-robust", "transfer"), ("n/a",)),
    Claim("members", "More members (k = 3 vs 2) give more robustness on MNIST in every row.",
          "App. H, Table 3", "table3_4_members_at",
          compare_claim("3", "trs", ("trs_k2",), "TRS k = 3", "all", "TRS k = 2")),
    Claim("at", "Adding adversarial training gives the best robustness in every row.",
          "App. H, Table 3", "table3_4_members_at",
          compare_claim("3", "trs_at", ("trs_k2", "trs", "adp"), "TRS + AT", "all")),
    Claim("pgd110", "Under PGD with 110 iterations TRS stays more robust than ADP.",
          "App. H, Table 3", "table3_4_members_at",
          compare_claim("3", "trs", ("adp",), "TRS", "all", "ADP", parts=("pgd110",)), ("paper",)),
    Claim("c", "The weight c need not be tuned carefully (robustness changes little with c).",
          "App. H, Table 5", "table5_c", _c_insensitive),
    Claim("ila", "ILA crafted on member 1 hurts member 1 but transfers little to the other "
          "members and the ensemble: they keep at least the paper's Table 6 gap over member 1.", "App. I, Table 6", "table6_ila", _ila, ("paper",)),
    Claim("transfer-all", "Against transfer from models the defender never saw, TRS is more robust "
          "than every other column of Table 1 at every budget (the threat model TRS was built for).",
          "Sec. 1 and 3 (implied); the threat model of LOTOS (ICLR 2025)", "transfer_unseen",
          compare_claim("1", "trs", _ALL_T1_OTHERS, "TRS", "all"), ("blackbox",)),
    Claim("lotos-transfer", "TRS's successor LOTOS, with TRS as its authors evaluate it, is more "
          "robust than TRS against transfer from unseen models at every budget.",
          "LOTOS (ICLR 2025), Sec. 5", "transfer_unseen",
          compare_claim("1", "trs_lotos", ("trs",), "TRS + LOTOS", "all", "TRS"), ("blackbox",)),
    Claim("r20-most", "With the paper's architecture (ResNet-20, on mnist5k) TRS still "
          "outperforms vanilla and ADP in most cases.", "Sec. 4.3, Table 1 (architecture of App. F)",
          "table1_mnist",
          compare_claim("1", "trs", ("vanilla", "adp"), "TRS (ResNet-20)", "most", rung="cpu-r20-2ep")),
)


def check_claims(scale="cpu", records: dict | None = None, root=None) -> list[dict]:
    """Every claim under each of its evaluations: a list of dicts with ``id``, ``text``,
    ``source``, ``page``, ``evaluation`` (``paper``, ``worst_case`` or ``n/a``), ``verdict``
    (:data:`VERDICTS`, :data:`NOT_YET_RUN` or :data:`NO_VERDICT`), ``reading`` (the interval's
    verdict before the seed rule), ``statistic``, ``estimate``, ``lo``, ``hi`` (the deciding
    statistic and its 95% interval in ``unit``), ``margin``, ``margin_source``,
    ``at_half_margin``, ``at_twice_margin``, ``margin_sensitive``, ``fragile`` (rows), ``seeds``
    and ``points`` per side (``sides``), ``rows``, ``parts`` (a conjunction's) and ``evidence``
    (:func:`trs_lib.companion.verdicts.decide`)."""
    records = load_records(root) if records is None else records
    out = []
    for c in CLAIMS:
        for ev in c.evaluations:
            res = c.check(scale, records, ev)
            out.append(dict(id=c.id, text=c.text, source=c.source, page=c.page, evaluation=ev, **res))
    return out
