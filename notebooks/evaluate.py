# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Evaluating an ensemble: white-box attacks, transferability, ILA and an adaptive audit
#
# The paper's claims are measurements made with attacks (Sec. 4.1). This chapter loads a trained
# ensemble and measures:
#
# 1. its **white-box robust accuracy** under the attacks of Tables 1-5 (FGSM, BIM, PGD, MIM, CW),
#    a point counting as robust only if it survives every random restart;
# 2. the **member-to-member transfer matrices** of Figures 2-4 (cell (i, j): accuracy of member
#    i on examples crafted against member j), for a vanilla and a TRS ensemble;
# 3. the **Intermediate Level Attack** of Table 6, crafted on member 1;
# 4. the **per-sample worst case** over a strong suite (APGD-CE, APGD-T, a MORA-style reweighing
#    attack on the members, the gradient-free Square attack), beyond the paper: a point is robust
#    only if it survives every attack, and the record says which attack broke each point;
# 5. an **adaptive audit**, beyond the paper: sanity checks that the numbers above are not
#    inflated by a weak attack or by masked gradients (a gradient-free check and a transfer check
#    from an independently initialised surrogate always run).
#
# Every robust accuracy comes with a 95% Wilson interval over the test points (`ci95`), and the
# record keeps, per row, which points survived (`correct`), so that two columns can be compared
# on the same points.
#
# The attacks are in `trs_lib.attacks` (one file each) with the paper's settings in
# `trs_lib.attacks.presets`; the chapter {doc}`../book/attacks` gives their equations.
#
# :::{admonition} Run it yourself
# :class: tip
# With the defaults this notebook evaluates the TRS ensemble that `trs_lib.train.train("mnist5k",
# "trs")` produces (it trains it first if needed, a few minutes on 2 cores) on **100 test points**
# (so every accuracy below carries about ±5-10 points of sampling noise), with **CW at 50
# iterations instead of the paper's 1,000**, without the PGD-110 rows, and with a lighter audit
# (APGD with 30 iterations at one budget, PGD-20 for the sweeps, 50 steps x 2 restarts), so that
# it runs in minutes on a CPU. Any trained run is one parameter away:
#
# ```
# papermill notebooks/evaluate.ipynb out.ipynb -p run_dir runs/<run> -p n_test 1000 -p cw_steps 1000 \
#     -p pgd110 True -p audit_steps 100 -p light_audit False
# ```
#
# `suite` selects one part (`whitebox`, `audit`, `transfer`, `ila`); the reproduction driver
# (`python -m trs_lib.reproduce`) runs one suite per call with its own `rows` and `settings`.
# :::

# %% tags=["parameters"]
run_dir = None          # a trained run folder (holds weights.safetensors); None: train(dataset, "trs")
dataset = "mnist5k"     # used when run_dir is None (and for the presets)
suite = "all"           # all | whitebox | worst_case | audit | transfer | ila | smoothness
rows = None             # attack rows [{key, attack, param, value, steps}]; None: the dataset's presets
attacks = None          # keep only these attacks in the white-box table, e.g. ["fgsm", "pgd"]; None: all
settings = {}           # overrides: n_test, seed, restarts, cw_steps, audit_steps, transfer_steps, batch_size
n_test = 100            # test points attacked (None: the whole test split)
restarts = 1            # random restarts: a point is robust only if it survives all of them
cw_steps = 50           # CW iterations (paper: 1000)
pgd110 = False          # also the PGD-110 rows of Tables 3-4
audit_steps = 30        # APGD iterations in the audit (AutoAttack: 100)
light_audit = None      # APGD at the largest PGD budget only, PGD-20 sweeps, 50 steps x 2 restarts (None: only for suite "all")
worst_case_eps = None   # budgets of the worst case (None: the largest PGD budget for "all", every PGD budget for "worst_case")
worst_case_suite = "linf"  # linf | l2 (the L2 budgets then default to trs_lib.evaluate.WORST_CASE_EPS)
cw_check_points = 20    # CW convergence check (steps doubled) on this many points (0: skip)
ila_sweep = True        # ILA layer sweep on member 1 (suite "all" or "ila")
vanilla_seed = 0        # seed of the vanilla ensemble for the heatmaps and the audit's surrogate (None: skip)
device = "auto"         # auto | cpu | cuda
out_json = None         # default: runs/eval/<run name>-<suite>.json

# %%
import os
import time
from pathlib import Path

import pandas as pd
import torch

from trs_lib import audit as A
from trs_lib import data, evaluate as E, paper_numbers as P, plots
from trs_lib.attacks import presets
from trs_lib.checkpoint import load_weights
from trs_lib.paths import runs_dir
from trs_lib.records import write_record
from trs_lib.train import resolve_device, train

pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 120)
if suite not in ("all",) + E.SUITES:
    raise ValueError(f"unknown suite {suite!r}; valid: {['all', *E.SUITES]}")
settings = {"n_test": n_test, "seed": 0, "restarts": restarts, "cw_steps": cw_steps,
            "audit_steps": audit_steps, "transfer_steps": 10, "worst_case_suite": worst_case_suite,
            **(settings or {})}
cw_check_points = int(settings.pop("cw_check_points", cw_check_points))  # the grid sets it per cell
light_audit = (suite == "all") if light_audit is None else light_audit
if light_audit:  # the chapter's lighter audit (library defaults: PGD-40 sweeps, 100 steps x 5 restarts)
    settings.setdefault("audit_strong_steps", 20)
    settings.setdefault("audit_more_steps", 50)
    settings.setdefault("audit_more_restarts", 2)
dev = resolve_device(device)
torch.manual_seed(settings["seed"])
t_start = time.perf_counter()

# %% [markdown]
# ## The ensemble
#
# `run_dir=None` calls `train(dataset, "trs")` with the recipe's defaults: a no-op when the run
# exists under `runs/`, otherwise it trains it. A run folder is loaded from its safetensors weights.

# %%
# NBVAL_IGNORE_OUTPUT
if run_dir is None:
    trained = train(dataset, "trs", device=str(dev), progress=False)
    ensemble, train_config, run_path = trained.ensemble.eval(), trained.config.to_dict(), trained.out_dir
else:
    run_path = Path(run_dir)
    ensemble, meta = load_weights(run_path / "weights", device=dev)
    train_config = meta["config"]
dataset = train_config["dataset"]
x_all, y_all = data.load(dataset, "test", root=train_config.get("data_root"))
n = len(x_all) if settings["n_test"] is None else min(int(settings["n_test"]), len(x_all))
# n evenly spaced points of the test split (mnist5k's split is sorted by class)
idx = E.spread_indices(len(x_all), n)
x, y = x_all[idx], y_all[idx]
clean = E.member_accuracies(ensemble, x, y)
{"run": run_path.name, "method": train_config["method"], "members": ensemble.num_members,
 "test points": n, "clean accuracy (ensemble)": round(clean["ensemble"], 4),
 "clean accuracy (members)": [round(a, 4) for a in clean["members"]]}

# %% [markdown]
# ## White-box robust accuracy (Tables 1-5)
#
# The ensemble's output is $\log\frac1N\sum_k \mathrm{softmax}(f_k(x))$; every attack ascends the
# cross-entropy of that output (or CW's margin on it). Settings the paper leaves open follow the
# authors' evaluation code: step $\epsilon/10$, CW confidence 0.1, no binary search.

# %%
# NBVAL_IGNORE_OUTPUT
metrics = {"n_test": n, "clean_accuracy": clean["ensemble"], "member_clean_accuracy": clean["members"],
           "rows": []}
wb_rows = rows if (rows is not None and suite == "whitebox") else (
    presets.preset(dataset, "whitebox") + (presets.preset(dataset, "pgd110") if pgd110 else ()))
if attacks is not None:
    wb_rows = [r for r in wb_rows if r["attack"] in attacks]
if suite in ("all", "whitebox"):
    wb = E.evaluate_suite(ensemble, x, y, "whitebox", wb_rows, settings, progress=False)
    metrics["rows"] += wb["rows"]
    display(pd.DataFrame([{"key": r["key"], "accuracy (%)": round(100 * r["accuracy"], 1),
                           "95% interval (%)": f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]",
                           "restarts": r["restarts"], "wall_s": r["wall_s"]}
                          for r in wb["rows"]]).set_index("key"))

# %% [markdown]
# In the paper's layout, next to the paper's TRS column (MNIST, ResNet-20, 40 epochs: a reference
# point, not a target for this small CPU model):

# %%
# NBVAL_IGNORE_OUTPUT
def paper_value(key):
    for tid in ("3", "4", "1", "2"):
        tab = P.table(tid)
        if tab.dataset == presets.paper_dataset(dataset) and key in [r.key for r in tab.rows]:
            return tab.value(key, "trs")
    return None


if suite in ("all", "whitebox"):
    table = pd.DataFrame(
        [{"attack": ("PGD-%d" % r["steps"]) if r["attack"] == "pgd" else r["attack"].upper(),
          "para.": ("ε" if r["param"] == "eps" else r["param"]) + f" = {r['value']:g}",
          f"ours ({train_config['method']}, {dataset})": round(100 * r["accuracy"], 1),
          "95% interval": f"[{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]",
          "paper (TRS)": paper_value(r["key"])} for r in metrics["rows"]]).set_index(["attack", "para."])
    display(table)

# %% [markdown]
# :::{admonition} Reading this table
# :class: note
# With the chapter's defaults, CW runs 50 Adam steps of learning rate 0.01 instead of 1,000: it
# has not converged (the check below doubles the steps and measures the change), so its rows are
# far above what the paper's CW would give and are not comparable to the paper's column. The
# L-infinity rows use the paper's settings; their gap to the paper comes from the model (a small
# CNN trained for minutes on 4,000 digits) and from 100 test points: the 95% intervals are about
# ±10 points wide. The worst case below shows how much a strong suite takes off the PGD row.
# :::
#
# **Is CW converged?** CW-L2 at $c = 10$ on `cw_check_points` evenly spaced points, at the chapter's
# `cw_steps` and with the steps doubled: converged means the two accuracies differ by less than one
# point (with a single value of $c$, as the paper runs it, only the steps are doubled: a binary
# search would change the budget).

# %%
# NBVAL_IGNORE_OUTPUT
if suite in ("all", "whitebox") and cw_check_points:
    k = min(int(cw_check_points), n)
    cw_c = max(r["value"] for r in presets.preset(dataset, "whitebox") if r["attack"] == "cw")
    sub = E.spread_indices(n, k)  # evenly spaced, as the CW rows' own points when cw_n_test = k
    same = [r for r in metrics["rows"] if r.get("attack") == "cw" and r.get("value") == cw_c
            and len(r.get("correct", "")) == k and (settings.get("cw_n_test") or n) == k]
    cw_check = E.cw_convergence(ensemble, x[sub], y[sub], c=cw_c, steps=int(settings["cw_steps"]),
                                kappa=0.1, lr=0.01, stop_on_success=True,
                                base_accuracy=same[0]["accuracy"] if same else None)
    metrics["cw_convergence"] = cw_check
    display(pd.DataFrame([cw_check]).set_index("c"))

# %% [markdown]
# ## The per-sample worst case (beyond the paper)
#
# The paper's numbers come from one attack at one setting. A reviewer accepts the **per-sample
# worst case** over a strong suite (AutoAttack's design, Croce & Hein 2020): APGD-CE on the
# ensemble's $\log$ mean softmax, APGD-T (targeted DLR over the top wrong classes), the reweighing
# attack (APGD on a combination of the members' logits that puts the weight on the members still
# classifying the point correctly, in the spirit of MORA, Yu et al. 2022) and the gradient-free
# Square attack. Each attack runs only on the points the previous ones left; the record keeps
# which attack broke each point. The chapter {doc}`../book/attacks` gives each attack and the
# output it differentiates.

# %%
# NBVAL_IGNORE_OUTPUT
wc_rows = []
if suite in ("all", "worst_case"):
    if rows is not None and suite == "worst_case":
        wc_in = rows
    elif worst_case_eps is not None:
        wc_in = [dict(attack="worst_case", param="eps", value=float(e)) for e in worst_case_eps]
    elif worst_case_suite == "linf":
        pgd_eps = sorted({r["value"] for r in presets.preset(dataset, "whitebox") if r["attack"] == "pgd"})
        wc_in = [dict(attack="worst_case", param="eps", value=e) for e in (pgd_eps[-1:] if suite == "all" else pgd_eps)]
    else:
        wc_in = None
    wcs = E.evaluate_suite(ensemble, x, y, "worst_case", wc_in, settings, dataset=dataset, progress=False, log=None)
    wc_rows = wcs["rows"]
    metrics["rows"] += wc_rows
    pgd_rows = {r["value"]: r for r in metrics["rows"] if r.get("attack") == "pgd" and r.get("steps") == 10}

    def pct(r):
        return f"{100 * r['accuracy']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"

    display(pd.DataFrame([{"budget": r["key"].split("/")[-1],
                           "paper's attack (PGD-10)": pct(pgd_rows[r["value"]]) if r["value"] in pgd_rows else None,
                           "worst case": pct(r),
                           **{f"broken by {a}": r["broken_by"][a] for a in r["suite_attacks"]},
                           "wall_s": r["wall_s"]} for r in wc_rows]).set_index("budget"))

# %% [markdown]
# Which attack broke each point (the first of the suite that did; "clean": misclassified without
# attack; blank: still robust), and the accuracies with their 95% intervals:

# %%
# NBVAL_IGNORE_OUTPUT
if wc_rows:
    r = wc_rows[-1]
    names = ["clean"] + r["suite_attacks"] + ["robust"]
    code = [names.index(b) if b is not None else len(names) - 1 for b in r["broken_by_point"]]
    strip = pd.DataFrame({"point": range(n), "broken by": [b or "robust" for b in r["broken_by_point"]]})
    display(strip["broken by"].value_counts().reindex(names, fill_value=0).rename_axis(r["key"]).to_frame("points"))
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 2.8), gridspec_kw={"width_ratios": [2, 1]})
    ax0.imshow([code], aspect="auto", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    ax0.set_yticks([])
    ax0.set_xlabel("test point")
    ax0.set_title(f"{r['key']}: which attack broke each point")
    from matplotlib.patches import Patch
    ax0.legend(handles=[Patch(color=plt.cm.tab10(i), label=nm) for i, nm in enumerate(names)],
               ncol=len(names), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    shown = [(rr["key"], rr) for rr in metrics["rows"] if rr.get("attack") in ("pgd", "fgsm", "bim", "mim")
             and rr["value"] == r["value"]] + [(r["key"], r)]
    ys = [100 * rr["accuracy"] for _, rr in shown]
    err = [[100 * (rr["accuracy"] - rr["ci95"][0]) for _, rr in shown], [100 * (rr["ci95"][1] - rr["accuracy"]) for _, rr in shown]]
    ax1.errorbar(range(len(shown)), ys, yerr=err, fmt="o", capsize=3)
    ax1.set_xticks(range(len(shown)), [k.split("/")[0].replace("worst_case:", "worst ") for k, _ in shown], rotation=30, fontsize=8)
    ax1.set_ylabel("robust accuracy (%)")
    ax1.set_title("with 95% Wilson intervals", fontsize=9)
    fig.tight_layout()

# %% [markdown]
# ## Transferability between members (Figures 2-4)
#
# Adversarial examples are crafted against one member alone and tested on every member. The paper
# compares a vanilla ensemble with a TRS one: TRS members should be more accurate off the diagonal
# (lower transferability). The vanilla ensemble here is trained with the same recipe and seed
# `vanilla_seed` (by default the one `notebooks/train_trs` trains next to TRS).

# %%
# NBVAL_IGNORE_OUTPUT
tr_rows = rows if (rows is not None and suite == "transfer") else presets.preset(dataset, "transfer")
transfer = {}
if suite in ("all", "transfer"):
    ensembles = {train_config["method"]: ensemble}
    if suite == "all" and vanilla_seed is not None and train_config["method"] != "vanilla":
        ensembles = {"vanilla": train(dataset, "vanilla", seed=int(vanilla_seed), device=str(dev),
                                      progress=False).ensemble.eval(), **ensembles}
    for name, ens in ensembles.items():
        transfer[name] = E.evaluate_suite(ens, x, y, "transfer", tr_rows, settings, progress=False)["rows"]
    metrics["transfer" if suite == "all" else "rows"] = transfer[train_config["method"]]
    frames = {}
    for name, rs in transfer.items():
        for r in rs:
            k = len(r["matrix"])
            names = [f"member {i + 1}" for i in range(k)]
            frames[(name, r["attack"])] = pd.DataFrame([[100 * v for v in row] for row in r["matrix"]],
                                                       index=names, columns=names)
    fig = plots.transfer_heatmaps(frames, ensembles=tuple(ensembles),
                                  title=f"accuracy (%) of member i on examples against member j, "
                                        f"eps = {tr_rows[0]['value']:g}")

# %%
# NBVAL_IGNORE_OUTPUT
if transfer:
    def off_diagonal(m):
        k = len(m)
        return sum(m[i][j] for i in range(k) for j in range(k) if i != j) / (k * (k - 1))
    display(pd.DataFrame({name: {r["key"]: round(100 * off_diagonal(r["matrix"]), 1) for r in rs}
                          for name, rs in transfer.items()}).rename_axis("mean off-diagonal accuracy (%)"))

# %% [markdown]
# ## Intermediate Level Attack on member 1 (Table 6)
#
# ILA (Huang et al. 2019) takes a BIM example against member 1 as a guide and, starting again from
# the clean point, pushes the change of an intermediate layer of member 1 along the guide's
# direction, to improve transfer. "Best of": a point counts as robust only if it survives both ILA
# and its BIM guide. The layer used is reported; a sweep over member 1's layers follows.

# %%
# NBVAL_IGNORE_OUTPUT
if suite in ("all", "ila"):
    il_rows = rows if (rows is not None and suite == "ila") else presets.preset(dataset, "ila")
    il = E.evaluate_suite(ensemble, x, y, "ila", il_rows, settings, progress=False)
    metrics["ila" if suite == "all" else "rows"] = il["rows"]
    display(pd.concat({"ILA": pd.DataFrame({r["key"]: {k: round(100 * v, 1) for k, v in r["accuracy_by_model"].items()}
                                             for r in il["rows"]}).T,
                       "BIM guide": pd.DataFrame({r["key"]: {k: round(100 * v, 1) for k, v in r["accuracy_by_model_guide"].items()}
                                                  for r in il["rows"]}).T,
                       "ILA (best of)": pd.DataFrame({r["key"]: {k: round(100 * v, 1) for k, v in r["accuracy_by_model_best"].items()}
                                                      for r in il["rows"]}).T}))
    print("layer:", il["rows"][0]["layer"])
    if ila_sweep:
        sweep_eps = max(r["value"] for r in il["rows"])
        sweep = E.ila_layer_sweep(ensemble, x, y, eps=sweep_eps, steps=10)
        metrics["ila_layer_sweep"] = {"eps": sweep_eps, "rows": sweep}
        display(pd.DataFrame(sweep).set_index("layer").drop(columns="ci95").mul(100).round(1)
                .rename_axis(f"ILA layer sweep, eps = {sweep_eps:g} (accuracy %)"))

# %% [markdown]
# ## How smooth are the members? (Sec. 3's premise)
#
# TRS's smoothness term is meant to make each member smoother: a smaller $\beta$ (Definition 6,
# the Lipschitz constant of the loss gradient). For a ReLU network $\beta$ is infinite (the
# gradient jumps at every kink), so the companion measures it at a finite scale: per point, the
# largest $\|\nabla\ell(x + r u) - \nabla\ell(x)\|_2 / r$ over 4 random unit directions $u$,
# for each member, at L2 radii $r$ = 0.25, 1 and 4 (`trs_lib.theory.local_smoothness`; lower is
# smoother). The claim `smoothness` compares TRS and vanilla members at $r = 1$.

# %%
# NBVAL_IGNORE_OUTPUT
if suite in ("all", "smoothness"):
    sm_rows = rows if (rows is not None and suite == "smoothness") else None
    sm = E.evaluate_suite(ensemble, x, y, "smoothness", sm_rows, settings, progress=False)
    metrics["smoothness" if suite == "all" else "rows"] = sm["rows"]
    display(pd.DataFrame([{"radius r": r["value"], "mean over members and points": round(r["mean"], 4),
                           **{f"member {i + 1}": round(v, 4) for i, v in enumerate(r["member_means"])}}
                          for r in sm["rows"]]).set_index("radius r"))

# %% [markdown]
# ## Adaptive audit (beyond the paper)
#
# Gradient-regularised ensembles can look robust under plain PGD because their gradients are
# uninformative, not because they are robust. The audit attacks with APGD-CE and APGD-DLR
# (Croce & Hein 2020) and runs the sanity checks of `trs_lib.audit`: accuracy falls to about 0
# as eps grows; an unbounded attack succeeds; more steps and restarts do not help by more than
# noise; APGD and the white-box worst case do not beat PGD by more than noise; the gradient-free
# Square attack is not much stronger than the white-box worst case; transfer from a surrogate is
# not stronger than white-box. The surrogate is a separately trained vanilla ensemble (seed
# `vanilla_seed`) or, with `vanilla_seed=None`, an independently initialised small CNN trained to
# imitate the ensemble's labels. **A failing check is shown as FAIL**: it means the white-box
# numbers above overstate the robustness.

# %%
# NBVAL_IGNORE_OUTPUT
if suite in ("all", "audit"):
    if rows is not None and suite == "audit":
        au_rows = rows
    else:
        budgets = sorted({r["value"] for r in presets.preset(dataset, "whitebox")
                          if r["attack"] in ("pgd", "bim", "mim")})
        budgets = budgets[-1:] if light_audit else budgets
        au_rows = [dict(attack=a, param="eps", value=e, steps=None) for a in ("apgd_ce", "apgd_dlr")
                   for e in budgets]
    surrogate = None
    if vanilla_seed is not None:
        surrogate = train(dataset, "vanilla", seed=int(vanilla_seed), device=str(dev),
                          progress=False).ensemble.eval()
    au = E.evaluate_suite(ensemble, x, y, "audit", au_rows, settings, surrogate=surrogate, progress=False)
    metrics["rows"] += au["rows"]
    metrics["checks"], metrics["audit_eps"] = au.get("checks", []), au.get("audit_eps")
    pgd_by_eps = {r["value"]: r["accuracy"] for r in metrics["rows"] if r["key"].startswith("pgd10/")}
    display(pd.DataFrame([{"eps": e, "PGD-10 (paper)": pgd_by_eps.get(e),
                           "APGD-CE": next((r["accuracy"] for r in au["rows"] if r["attack"] == "apgd_ce" and r["value"] == e), None),
                           "APGD-DLR": next((r["accuracy"] for r in au["rows"] if r["attack"] == "apgd_dlr" and r["value"] == e), None)}
                          for e in sorted({r["value"] for r in au["rows"]})]).set_index("eps").mul(100).round(1))
    display(A.audit_frame(metrics["checks"]))

# %% [markdown]
# ## The record
#
# Everything above goes to one JSON record with its provenance (git commit, versions, hardware,
# wall time), read by the table chapters.

# %%
# NBVAL_IGNORE_OUTPUT
wall = time.perf_counter() - t_start
if out_json is None:
    out_json = runs_dir() / "eval" / f"{run_path.name}-{suite}.json"
config = {"run_dir": str(run_path), "train": train_config, "suite": suite, "dataset": dataset,
          "n_test": n, "settings": settings, "vanilla_seed": vanilla_seed, "pgd110": pgd110,
          "rows": [r if isinstance(r, dict) else dict(r) for r in (rows or [])],
          "attack_conventions": list(presets.CONVENTIONS)}
path = write_record(out_json, "eval", config, metrics, wall, dev)
{"record": os.path.relpath(path), "wall time (s)": round(wall, 1), "rows": len(metrics["rows"]),
 "checks failed": [c["check"] for c in metrics.get("checks", []) if c["passed"] is False]}

# %% [markdown]
# Deterministic facts about what was recorded, checked on every run:

# %%
{"every accuracy is a fraction": all(0 <= r["accuracy"] <= 1 for r in metrics["rows"] if "accuracy" in r),
 "robust accuracy never above clean": all(r["accuracy"] <= metrics["clean_accuracy"] + 1e-9
                                          for r in metrics["rows"]
                                          if "accuracy" in r and r.get("attack") not in ("ila",)),
 "every audit check has a verdict": all(c["status"] in ("pass", "FAIL", "skipped") for c in metrics.get("checks", [])),
 "every accuracy has an interval and its points (C1)": all("ci95" in r and "correct" in r for r in metrics["rows"] if "accuracy" in r),
 "worst case never above the paper's attack at its budget": all(
     w["accuracy"] <= p["accuracy"] + 1e-9 for w in metrics["rows"] if w.get("attack") == "worst_case"
     for p in metrics["rows"] if p.get("attack") == "pgd" and p.get("value") == w["value"] and w.get("suite") == "linf")}

# %% [markdown]
# ## Recap
#
# * `trs_lib.evaluate.robust_accuracy` counts a point as robust only if it survives every restart;
#   `transfer_matrix` and `ila_table` give Figures 2-4 and Table 6; `evaluate_suite` runs one
#   suite of rows and is what this notebook and the reproduction grid call.
# * The presets (`trs_lib.attacks.presets`) hold the paper's settings; where the paper is silent
#   they follow the authors' evaluation code, and each such choice is listed in `CONVENTIONS`.
# * The audit's verdicts travel with the numbers in the record: a table built from the record can
#   show them next to the robust accuracies.
# * `trs_lib.worst_case.worst_case` gives the per-sample worst case over a named suite (`linf`,
#   `l2`), with the attack that broke each point; every accuracy row carries its 95% interval and
#   its per-point outcomes, so columns can be compared on the same points.
