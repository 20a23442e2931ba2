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
# # Table 6: the Intermediate Level Attack crafted on member 1
#
# App. I of the paper runs ILA (Huang et al. 2019, an attack built to transfer) for 10
# iterations against member 1 of a TRS ensemble, then measures the accuracy of every member and
# of the ensemble on those examples. The claim: the attack hurts member 1 but transfers little
# (MNIST eps = 0.1: member 1 92.66%, the others and the ensemble about 96%).
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# At the CPU scale the MNIST rows show whether the gap between member 1 and the rest appears; the
# CIFAR-10 rows (eps = 0.01 and 0.02, App. I) are GPU work and say **not run**.
# :::

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to show

# %%
from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()

# %% [markdown]
# ## The numbers
#
# Rows: attack and budget; columns: the paper's columns. Tables whose every cell is missing at
# this scale are named instead of shown.

# %%
pages.tables('6', rung, records)

# %% [markdown]
# ## The scale of each column
#
# Read from the records: data set, architecture, members, epochs, test points, and the clean
# test accuracy of the ensemble.

# %%
pages.scale_table('6', rung, records)

# %% [markdown]
# ## The verdicts
#
# Computed from the same records by `trs_lib.companion.claims` (also on the landing page).

# %%
pages.claims_table(page="table6_ila", rung=rung, records=records)

# %% [markdown]
# ## The records
#
# Every number on this page comes from one of these run records (download them; the executed
# notebook of each run lies beside it under `results/`).

# %%
pages.records_links('6', rung, records)

# %% [markdown]
# ## Recap
#
# * ILA is itself the transfer attack here, so there is no strong-attack column.
# * The ILA evaluation uses the same TRS (k = 3, c = 2) ensemble as Tables 1, 3 and 5.
