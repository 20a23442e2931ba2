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
# # Tables 3 and 4: more members, adversarial training, and PGD with 110 iterations
#
# App. H of the paper compares TRS ensembles of k = 2 and k = 3 members, TRS (k = 3) with PGD
# adversarial training (TRS + AT), and ADP, on MNIST (Table 3) and CIFAR-10 (Table 4), adding
# PGD with 110 iterations to the attacks of Table 1. The claims: robustness grows with k (on
# MNIST in every row), adversarial training gives the best robustness in every setting, and
# under PGD-110 TRS keeps most of its robustness while ADP collapses (MNIST eps = 0.15: 53.2%
# against 1.18%).
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# At the CPU scale (`mnist5k`, small CNN, a few epochs, 1,000 test points; TRS and ADP with three
# seeds, the columns only Table 3 has with one) Table 3 can show the direction of each effect (k,
# AT, PGD-10 vs PGD-110) under the paper's attacks and under the worst case; not the paper's
# accuracies. Table 4 (CIFAR-10) is GPU work: its "ours" says **not run** until a
# paper-scale run exists.
# :::

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to show

# %%
from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()

# %% [markdown]
# ## Table 3 (MNIST): robust accuracy against the budget
#
# One panel per attack, one colour per column. Filled circles with bars: ours under the paper's
# attack with its 95% interval; crosses (dashed): ours under the strong attack at the same budget
# (worst case, beyond the paper); hollow diamonds (dotted): the paper's number.

# %%
# NBVAL_IGNORE_OUTPUT
fig = pages.robustness_plot('3', rung, records)

# %% [markdown]
# ## The numbers
#
# Rows: attack and budget; columns: the paper's columns. Tables whose every cell is missing at
# this scale are named instead of shown.

# %%
pages.tables('3', rung, records)

# %% [markdown]
# ## The scale of each column
#
# Read from the records: data set, architecture, members, epochs, test points, and the clean
# test accuracy of the ensemble.

# %%
pages.scale_table('3', rung, records)

# %% [markdown]
# ## The adaptive audit's sanity checks
#
# For each column, at the largest audited budget: accuracy falls towards 0 as eps grows
# (`large_eps`), an unbounded attack succeeds (`unbounded`), more steps and restarts change
# little (`more_steps_restarts`), APGD finds little more than PGD (`apgd`), black-box transfer is
# not stronger than white-box (`transfer`, skipped without a surrogate ensemble). A FAIL means
# the paper-attack numbers of that column overstate its robustness.

# %%
pages.audit_tables('3', rung, records)

# %% [markdown]
# ## The verdicts
#
# Computed from the same records by `trs_lib.companion.claims` (also on the landing page).

# %%
pages.claims_table(page="table3_4_members_at", rung=rung, records=records)

# %% [markdown]
# ## Table 4 (CIFAR-10)
#
# GPU work: at the CPU scale only the paper's numbers.

# %%
# NBVAL_IGNORE_OUTPUT
fig4 = pages.robustness_plot("4", rung, records)

# %%
pages.tables("4", rung, records)

# %%
pages.scale_table("4", rung, records)

# %% [markdown]
# ## The records
#
# Every number on this page comes from one of these run records (download them; the executed
# notebook of each run lies beside it under `results/`).

# %%
pages.records_links('3', rung, records)

# %% [markdown]
# ## Recap
#
# * TRS (k = 3) and ADP share their records with Table 1: the grid runs each ensemble once.
# * PGD-110 is a separate evaluation of the same ensembles; the strong attack's worst case shows
#   whether an attack stronger than both finds more adversarial examples.
