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
# # Does the verdict depend on scale?
#
# The book's verdicts are measured at a CPU proxy (`mnist5k`, a small CNN, 4 epochs). A
# reviewer's first question to a negative reproduction is whether the network was trained long
# enough, on enough data, with the paper's architecture. The **scale ladder** changes one thing
# at a time toward the paper's protocol (App. F): 40 epochs, the paper's ResNet-20, a harder
# data set (Fashion-MNIST), and the paper's protocol itself on a GPU. Each rung is data in
# `trs_lib.companion.rungs.RUNGS`; this page reads the records of every rung.
#
# On each rung the headline claim is the same: **TRS minus the best other column the rung
# runs**, decided by the row vote over Table 1's rows (the rule of every "most rows" claim,
# `trs_lib.companion.claims`), under the paper's attacks and under the strong worst case. A
# claim whose readings differ between rungs is **scale-dependent**.

# %%
from IPython.display import Markdown

import pandas as pd

from trs_lib import records
from trs_lib.companion import ladder as L
from trs_lib.companion.rungs import RUNGS

pd.set_option("display.max_colwidth", 200)
records = records.load_records()
rows = L.ladder(records)

# %% [markdown]
# ## The rungs
#
# What each rung trains and evaluates (its numbers come only from records made at that rung):

# %%
pd.DataFrame([{"rung": name, "why": RUNGS[name].why, "scale": RUNGS[name].describe("mnist")}
              for name in L.LADDER if RUNGS[name].runs("1")]).set_index("rung")

# %% [markdown]
# ## The headline difference on every rung
#
# Per rung and evaluation, the deciding statistic (the row vote of TRS minus the best other
# column, in points) with its 95% interval, the verdict, and the seeds per side. A rung with
# fewer than 3 seeds on a side gives at most *provisional* (the interval's reading is shown).

# %%
# NBVAL_IGNORE_OUTPUT
fig = L.ladder_figure(rows)

# %%
L.ladder_frame(rows)

# %% [markdown]
# ## Scale-dependent claims

# %%
dep = L.scale_dependent(rows)
lines = [f"* **{L.EVALUATIONS[ev]}**: " + "; ".join(f"{v} on {', '.join(r)}" for v, r in by.items())
         for ev, by in dep.items()]
Markdown("The headline claim is **scale-dependent** under:\n\n" + "\n".join(lines) if dep else
         "No rung that decides disagrees with another.")

# %% [markdown]
# At the highest rung that has a verdict (the ladder's order, closest to the paper's protocol
# last; Fashion-MNIST beside it):

# %%
pd.DataFrame([{"evaluation": L.EVALUATIONS[ev], "highest rung": h["rung"], "verdict": h["verdict"],
               "TRS − best other [95%]": f"{h['estimate']:+.1f} [{h['lo']:+.1f}, {h['hi']:+.1f}]"}
              for ev in L.EVALUATIONS if (h := L.highest(rows, ev))]).set_index("evaluation")

# %% [markdown]
# ## Is each rung trained to a plateau?
#
# Every training logs, per epoch, clean accuracy and PGD-10 accuracy on 200 held-out test
# points (`trs_lib.train`); a rung whose curves still climb at its last epoch is undertrained.
# Trainings recorded before the curve existed show clean accuracy only.

# %%
# NBVAL_IGNORE_OUTPUT
fig = L.convergence_figure(records)
