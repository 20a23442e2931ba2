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
# paper-scale records once `python -m trs_lib.reproduce --tables 2 --rung gpu` has run on a
# GPU machine with CIFAR-10 on disk (set `scale = "paper"` below).
# :::

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to show

# %%
from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()

# %% [markdown]
# ## Robust accuracy against the budget
#
# One panel per attack, one colour per column. Filled circles with bars: ours under the paper's
# attack with its 95% interval; crosses (dashed): ours under the strong attack at the same budget
# (worst case, beyond the paper); hollow diamonds (dotted): the paper's number.

# %%
# NBVAL_IGNORE_OUTPUT
fig = pages.robustness_plot('2', rung, records)

# %% [markdown]
# ## The numbers
#
# Rows: attack and budget; columns: the paper's columns. Tables whose every cell is missing at
# this scale are named instead of shown.

# %%
pages.tables('2', rung, records)

# %% [markdown]
# ## The scale of each column
#
# Read from the records: data set, architecture, members, epochs, test points, and the clean
# test accuracy of the ensemble.

# %%
pages.scale_table('2', rung, records)

# %% [markdown]
# ## The adaptive audit's sanity checks
#
# For each column, at the largest audited budget: accuracy falls towards 0 as eps grows
# (`large_eps`), an unbounded attack succeeds (`unbounded`), more steps and restarts change
# little (`more_steps_restarts`), APGD finds little more than PGD (`apgd`), black-box transfer is
# not stronger than white-box (`transfer`, skipped without a surrogate ensemble). A FAIL means
# the paper-attack numbers of that column overstate its robustness.

# %%
pages.audit_tables('2', rung, records)

# %% [markdown]
# ## The verdicts
#
# Computed from the same records by `trs_lib.companion.claims` (also on the landing page).

# %%
pages.claims_table(page="table2_cifar10", rung=rung, records=records)

# %% [markdown]
# ## The records
#
# Every number on this page comes from one of these run records (download them; the executed
# notebook of each run lies beside it under `results/`).

# %%
pages.records_links('2', rung, records)

# %% [markdown]
# ## Recap
#
# * At the CPU scale this page shows the paper's numbers only; the same page shows paper-scale
#   records once `python -m trs_lib.reproduce --tables 2 --rung gpu` has run.
