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
# 4. an **adaptive audit**, beyond the paper: APGD-CE and APGD-DLR (AutoAttack's gradient
#    attacks) and sanity checks that the numbers above are not inflated by a weak attack.
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
suite = "all"           # all | whitebox | audit | transfer | ila
rows = None             # attack rows [{key, attack, param, value, steps}]; None: the dataset's presets
attacks = None          # keep only these attacks in the white-box table, e.g. ["fgsm", "pgd"]; None: all
settings = {}           # overrides: n_test, seed, restarts, cw_steps, audit_steps, transfer_steps, batch_size
n_test = 100            # test points attacked (None: the whole test split)
restarts = 1            # random restarts: a point is robust only if it survives all of them
cw_steps = 50           # CW iterations (paper: 1000)
pgd110 = False          # also the PGD-110 rows of Tables 3-4
audit_steps = 30        # APGD iterations in the audit (AutoAttack: 100)
light_audit = None      # APGD at the largest PGD budget only, PGD-20 sweeps, 50 steps x 2 restarts (None: only for suite "all")
vanilla_seed = 0        # seed of the vanilla ensemble for the heatmaps and the audit's surrogate (None: skip)
device = "auto"         # auto | cpu | cuda
out_json = None         # default: runs/eval/<run name>-<suite>.json

# %%
import time
from pathlib import Path

import pandas as pd
import torch

from trs_lib import audit as A
from trs_lib import data, evaluate as E, paper_numbers as P, plots
from trs_lib.attacks import presets
from trs_lib.checkpoint import load_weights
from trs_lib.paths import runs_dir
from trs_lib.results import write_record
from trs_lib.train import resolve_device, train

pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 120)
if suite not in ("all",) + E.SUITES:
    raise ValueError(f"unknown suite {suite!r}; valid: {['all', *E.SUITES]}")
settings = {"n_test": n_test, "seed": 0, "restarts": restarts, "cw_steps": cw_steps,
            "audit_steps": audit_steps, "transfer_steps": 10, **(settings or {})}
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
# a stratified-looking subset: every k-th point of the test split (mnist5k's split is sorted by class)
idx = torch.linspace(0, len(x_all) - 1, n).round().long()
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
    display(pd.DataFrame([{k: r[k] for k in ("key", "accuracy", "restarts", "batch_size", "wall_s")}
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
          "paper (TRS)": paper_value(r["key"])} for r in metrics["rows"]]).set_index(["attack", "para."])
    display(table)

# %% [markdown]
# :::{admonition} Reading this table
# :class: note
# With the chapter's defaults, CW runs 50 Adam steps of learning rate 0.01 instead of 1,000: it
# has not converged, so its rows are far above what the paper's CW would give and are not
# comparable to the paper's column. The L-infinity rows use the paper's settings; their gap to the
# paper comes from the model (a small CNN trained for minutes on 4,000 digits) and from 100 test
# points. The audit below shows how much a stronger attack takes off the PGD row.
# :::

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
# ILA (Huang et al. 2019) starts from a BIM example against member 1 and pushes the change of an
# intermediate layer of member 1 further along the same direction, to improve transfer.

# %%
# NBVAL_IGNORE_OUTPUT
if suite in ("all", "ila"):
    il_rows = rows if (rows is not None and suite == "ila") else presets.preset(dataset, "ila")
    il = E.evaluate_suite(ensemble, x, y, "ila", il_rows, settings, progress=False)
    metrics["ila" if suite == "all" else "rows"] = il["rows"]
    display(pd.DataFrame({r["key"]: {k: round(100 * v, 1) for k, v in r["accuracy_by_model"].items()}
                          for r in il["rows"]}).T)

# %% [markdown]
# ## Adaptive audit (beyond the paper)
#
# Gradient-regularised ensembles can look robust under plain PGD because their gradients are
# uninformative, not because they are robust. The audit attacks with APGD-CE and APGD-DLR
# (Croce & Hein 2020) and runs the sanity checks of `trs_lib.audit`: accuracy falls to about 0
# as eps grows; an unbounded attack succeeds; more steps and restarts do not help by more than
# noise; APGD does not beat PGD by more than noise; transfer from a separately trained vanilla
# ensemble (seed `vanilla_seed`) is not stronger than white-box. (With the default seed 0 the
# vanilla members start from the same initial weights as the TRS members, which if anything makes
# transfer stronger and that check stricter.) **A failing check is shown as FAIL**: it means the
# white-box numbers above overstate the robustness.

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
{"record": str(path), "wall time (s)": round(wall, 1), "rows": len(metrics["rows"]),
 "checks failed": [c["check"] for c in metrics.get("checks", []) if c["passed"] is False]}

# %% [markdown]
# Deterministic facts about what was recorded, checked on every run:

# %%
{"every accuracy is a fraction": all(0 <= r["accuracy"] <= 1 for r in metrics["rows"] if "accuracy" in r),
 "robust accuracy never above clean": all(r["accuracy"] <= metrics["clean_accuracy"] + 1e-9
                                          for r in metrics["rows"]
                                          if "accuracy" in r and r.get("attack") not in ("ila",)),
 "every audit check has a verdict": all(c["status"] in ("pass", "FAIL", "skipped") for c in metrics.get("checks", []))}

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
