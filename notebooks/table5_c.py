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
# # Table 5: the weight c of the TRS loss
#
# App. H, Table 5 trains TRS ensembles (k = 3, lambda = 0.1) on MNIST with c = 0.5, 1 and 2 to
# show that c need not be tuned carefully: the accuracies of the three differ by at most 6.2
# points in the paper (BIM, eps = 0.15) and c = 2 is best in 9 of 10 rows.
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# At the CPU scale the spread over c and its direction are meaningful; the absolute accuracies
# are not the paper's. c = 2 is the recipe's value, so that column shares its records with
# Table 1.
# :::

# %% tags=["parameters"]
scale = "cpu"   # cpu | paper: which grid's records to show

# %%
import pandas as pd

from trs_lib import claims, plots, results

pd.set_option("display.max_columns", 40)
pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 200)
records = results.load_records()
frame = results.table_frame(5, scale, records)

# %%
plots.scale_table(frame)

# %% [markdown]
# Paper, ours, ours minus paper, and the adaptive audit at the row's budget:

# %%
plots.side_by_side(frame)

# %% [markdown]
# ## The audit's sanity checks
#
# For each column, at the largest audited budget: accuracy falls towards 0 as eps grows
# (`large_eps`), an unbounded attack succeeds (`unbounded`), ten times the steps and five restarts
# change little (`more_steps_restarts`), APGD finds little more than PGD (`apgd`), black-box
# transfer is not stronger than white-box (`transfer`, skipped without a surrogate ensemble). A
# FAIL means the paper-attack numbers of that column overstate its robustness.

# %%
results.audit_checks_frame(5, scale, records)

# %%
results.audit_details(5, scale, records)

# %%
plots.best_per_row(frame)

# %%
claims.check_claims(scale, records).loc[["c"], ["claim", "verdict", "evidence"]]

# %% [markdown]
# ## Recap
#
# * The verdict compares the largest spread over c in ours with the paper's largest spread
#   (plus `trs_lib.claims.TOLERANCE` points of noise).
