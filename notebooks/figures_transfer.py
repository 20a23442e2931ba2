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
# # Figures 2-4: transfer between the members of an ensemble
#
# Figures 2-4 of the paper show, for a vanilla ensemble and a TRS ensemble, the accuracy of
# member i on adversarial examples crafted against member j (MNIST eps = 0.2 in Figures 2 and 3,
# CIFAR-10 eps = 0.05 in Figure 4). The diagonal is the white-box accuracy of each member; the
# off-diagonal cells measure transfer. The claim: **the members of a TRS ensemble are more
# accurate on each other's adversarial examples, so transfer less**.
#
# The paper's figures are images whose numbers its text does not give, so this page compares the
# claim, not cell values. The paper's text does not name the two attacks of Figure 2; we show
# FGSM and PGD (10 iterations, step eps/10, as the paper's code does for its matrices).
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# At the CPU scale (`mnist5k`, small CNN, three seeds, 1,000 test points) the comparison of vanilla
# and TRS at eps = 0.2 is meaningful; Figure 4 (CIFAR-10) is GPU work and says **not run**. The vanilla and
# TRS ensembles here are the grid's own cells (Table 1's TRS column and a vanilla ensemble at the
# grid's scale), not the runs of the training chapter, which uses the notebook's default epochs.
# :::

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to show

# %%
from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()

# %% [markdown]
# ## Figures 2 and 3 (MNIST, eps = 0.2)
#
# Top rows: accuracy (%) of member i (row) on adversarial examples crafted against member j
# (column), for the vanilla and the TRS ensemble. Bottom row: TRS minus vanilla in points
# (blue: TRS members are more accurate on each other's examples, i.e. transfer less).

# %%
# NBVAL_IGNORE_OUTPUT
fig, matrices = pages.transfer_section("fig2", rung, records, show=False)

# %% [markdown]
# The same matrices as numbers (accuracy %):

# %%
pages.transfer_section("fig2", rung, records, plot=False)

# %% [markdown]
# The same vanilla and TRS ensembles also carry the smoothness premise of Sec. 3 (TRS members
# are smoother): their `smoothness` records measure, per test point and member, how fast the
# loss gradient changes at L2 distance 1 (`trs_lib.theory.local_smoothness`; lower is smoother),
# and the claim `smoothness` below compares TRS and vanilla paired on points and seeds. The
# difference column of that claim is in the measure's own units, not in points.

# %%
pages.claims_table(page="figures_transfer", rung=rung, records=records)

# %% [markdown]
# ## Figure 4 (CIFAR-10, eps = 0.05)

# %%
# NBVAL_IGNORE_OUTPUT
pages.transfer_section("fig4", rung, records)

# %% [markdown]
# ## The records
#
# Every number on this page comes from one of these run records (download them; the executed
# notebook of each run lies beside it under `results/`).

# %%
pages.records_links('fig2', rung, records)

# %% [markdown]
# ## Recap
#
# * The paper gives these figures as images only, so the page compares the claim (transfer
#   between TRS members is lower than between vanilla members), not cell values.
# * The two ensembles are the grid's cells of `trs_lib.companion.grid.table_cells("fig2", scale)`; their
#   scale (epochs, test points) is in their records.
