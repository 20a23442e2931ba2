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
# # Transfer from models the defender never saw
#
# TRS's argument is about *transferability*: orthogonal, smooth members should make adversarial
# examples crafted on one model fail on another. Every other robust accuracy of this book is
# white-box (the attacker differentiates the defended ensemble). Here the attacker does not see
# the ensemble at all: it crafts examples on **surrogates trained independently** (seeds disjoint
# from every column's: a vanilla small-CNN ensemble, a vanilla ResNet-20, and both as one
# ensemble, `trs_lib.surrogates`) with the transfer attacks of the `torchattack` library
# (MI-, DI-, TI-, NI-, SI-NI-, VMI-FGSM, Admix, SGM, ILPD, FIA) and the project's ILA
# (`trs_lib.attacks.transfer_attacks`), and only queries the defended ensemble. A point counts
# as robust only if it survives **every** (surrogate, attack) pair (`trs_lib.transfer`); the
# examples are crafted once per surrogate and reused for every column. The same columns also
# carry TRS's successor LOTOS (ICLR 2025), alone and with TRS.
#
# Every number below is read from the records (`results/eval/blackbox-*.json`); a cell without
# a record says so.

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.rungs.RUNGS

# %%
from IPython.display import Markdown

import pandas as pd

from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()
frame = tables.threat_models_frame(rung, records)
ran = frame[(frame.evaluation == "blackbox") & frame.ours.notna()]
Markdown(f"{ran.column.nunique()} of {frame.column.nunique()} columns have transfer records on rung `{rung}`"
         + ("." if len(ran) else ": the grid's `blackbox` cells have not run yet "
            "(`python -m trs_lib.reproduce --tables 1 --rung " + rung + "`)."))

# %% [markdown]
# ## Both threat models, per column and budget
#
# Robust accuracy (%) with its 95% interval over seeds and points: the white-box per-sample
# worst case and transfer from unseen surrogates, side by side.

# %%
def cell(r):
    return "not run" if pd.isna(r.ours) else f"{r.ours:.1f} [{r.lo:.1f}, {r.hi:.1f}]"


shown = frame.assign(value=[cell(r) for r in frame.itertuples()],
                     evaluation=frame.evaluation.map({"worst_case": "white-box worst case",
                                                      "blackbox": "transfer (unseen)"}))
shown.pivot_table(index="label", columns=["eps", "evaluation"], values="value", aggfunc="first", sort=False)

# %% [markdown]
# Accuracy against the budget per column (transfer: solid; white-box worst case: dashed):

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 3.6))
for i, (label, g) in enumerate(frame.groupby("label", sort=False)):
    colour = plt.cm.tab20(i % 20)
    for ev, ls in (("blackbox", "-"), ("worst_case", "--")):
        part = g[(g.evaluation == ev) & g.ours.notna()]
        if len(part):
            ax.errorbar(part.eps, part.ours, yerr=[part.ours - part.lo, part.hi - part.ours], ls=ls,
                        color=colour, marker="o", capsize=2, label=label if ev == "blackbox" else None)
ax.set_xlabel("L-inf budget ε")
ax.set_ylabel("robust accuracy (%)")
ax.set_title("transfer from unseen surrogates (solid) and the white-box worst case (dashed)", fontsize=9)
if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7, ncol=2)
fig.tight_layout()

# %% [markdown]
# ## The claims
#
# (i) the paper's implied claim, that TRS is more robust than every other column against
# transfer; (ii) the successor's claim, that TRS + LOTOS beats TRS there (both judged by the
# paired difference at every budget, the worst budget deciding).

# %%
pages.claims_table(page="transfer_unseen", rung=rung, records=records)
