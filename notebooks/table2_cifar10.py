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
# # Table 2: TRS against the baselines on CIFAR-10
#
# Table 2 of the paper (App. F) repeats Table 1 on CIFAR-10: six ensembles of three ResNet-20
# members trained for 180 epochs, attacked at the smaller budgets of colour images. The claim:
# TRS outperforms the other methods, ADP included, on most attacks except FGSM, and by far under
# CW with c = 0.1.
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# Nothing: CIFAR-10 with ResNet-20 for 180 epochs with double backpropagation is GPU work, so the
# CPU grid has no cell for this table and every "ours" below says **not run**. The same page shows
# paper-scale records once `python -m trs_lib.reproduce --tables 2 --scale paper` has run on a
# GPU machine with CIFAR-10 on disk (set `scale = "paper"` below).
# :::

# %% tags=["parameters"]
scale = "cpu"   # cpu | paper: which grid's records to show

# %%
import pandas as pd

from trs_lib import plots, results

pd.set_option("display.max_columns", 40)
pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 200)
records = results.load_records()
frame = results.table_frame(2, scale, records)

# %% [markdown]
# ## The scale of each column

# %%
plots.scale_table(frame)

# %% [markdown]
# ## The paper's numbers (accuracy %, Table 2)

# %%
plots.paper_layout(frame, "paper")

# %% [markdown]
# ## Ours (accuracy %)

# %%
plots.paper_layout(frame, "ours")

# %% [markdown]
# ## Ours minus the paper (points)

# %%
plots.paper_layout(frame, "diff")

# %% [markdown]
# ## The adaptive audit at the same budget (accuracy %)

# %%
plots.paper_layout(frame, "audit")

# %% [markdown]
# ### The audit's sanity checks
#
# For each column, at the largest audited budget: accuracy falls towards 0 as eps grows
# (`large_eps`), an unbounded attack succeeds (`unbounded`), ten times the steps and five restarts
# change little (`more_steps_restarts`), APGD finds little more than PGD (`apgd`), black-box
# transfer is not stronger than white-box (`transfer`, skipped without a surrogate ensemble). A
# FAIL means the paper-attack numbers of that column overstate its robustness.

# %%
results.audit_checks_frame(2, scale, records)

# %%
results.audit_details(2, scale, records)

# %% [markdown]
# ## Best column per row

# %%
plots.best_per_row(frame)

# %%
from trs_lib import claims

claims.check_claims(scale, records).loc[["cifar-most"], ["claim", "verdict", "evidence"]]

# %% [markdown]
# ## Recap
#
# * The paper's Table 2 is data in `trs_lib.paper_numbers`; our column is empty until a
#   paper-scale run exists, and the page says so instead of showing a number from elsewhere.
