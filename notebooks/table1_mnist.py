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
# # Table 1: TRS against the baselines on MNIST
#
# Table 1 of the paper (Sec. 4.3) attacks six ensembles of three ResNet-20 members on MNIST with
# five white-box attacks at two budgets each, and reports the ensemble's accuracy on the
# adversarial examples. The claim: **TRS outperforms the other baselines, ADP included, in most
# cases** (in the paper TRS is best in 7 of the 10 rows).
#
# This page reads the run records under `results/` (nothing is trained or attacked here) and
# shows, for every cell, ours with its 95% interval, the paper's number, and a stronger attack's
# worst case at the same budget: first as a plot, then as tables. A cell without a record says
# **not run**.
#
# :::{admonition} What the CPU scale can and cannot show
# :class: note
# At the CPU scale (`mnist5k`, a small CNN of three members, a few epochs, three seeds per column,
# 1,000 test points and CW on 200 of them; the exact values are in the scale table below) the
# *ranking* of the methods, with its intervals, and the gap between the paper's attacks and the
# worst case are meaningful; the absolute accuracies are not the paper's (smaller model, less
# data, fewer epochs), so the differences to the paper are expected to be large.
# :::
#
# To regenerate the records: `python -m trs_lib.reproduce --tables 1 --rung cpu` (see
# {doc}`../book/results_summary`).

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to show

# %%
from trs_lib import records
from trs_lib.companion import pages, tables

records = records.load_records()

# %% [markdown]
# ## Robust accuracy against the budget
#
# One panel per attack, one colour per method. Filled circles with bars: ours under the paper's
# attack with its 95% interval; crosses (dashed): ours under the strong attack at the same budget
# (the worst case: beyond the paper, it shows how far the paper's attack overestimates
# robustness); hollow diamonds (dotted): the paper's number.

# %%
# NBVAL_IGNORE_OUTPUT
fig = pages.robustness_plot(1, rung, records)

# %% [markdown]
# ## The numbers
#
# The same numbers as tables (rows: attack and budget; columns: the paper's methods).

# %%
pages.tables(1, rung, records)

# %% [markdown]
# ## Is CW converged?
#
# CW runs the paper's 1,000 iterations (at the CPU scale on 200 evenly spaced test points). Every
# white-box cell reruns CW at c = 10 with twice the iterations on the same points; "converged"
# means the accuracy moved by less than one point. Where it did not, CW's number above is an upper
# bound on the accuracy CW can reach (the ResNet-20 columns of the next section are listed too).

# %%
pages.cw_convergence_table(("1", ("1", "cpu-r20-2ep")), rung, records)

# %% [markdown]
# ## The paper's architecture: ResNet-20
#
# The columns above use the small CNN. To see whether the ranking depends on it, the grid also
# trains vanilla, TRS, TRS as published and ADP with the paper's ResNet-20 on the same data (one
# seed, fewer epochs and test points: the scale line of {doc}`../book/results_summary`), and
# attacks them with the same rows. Each cell: accuracy in % with its 95% interval; the claim
# `r20-most` below judges it.

# %%
pages.rung_table("cpu-r20-2ep", "1", records)

# %% [markdown]
# ## The scale of each column
#
# Read from the records: data set, architecture, members, epochs and test points, and the clean
# test accuracy of the ensemble (the paper: above 99.3% for every method).

# %%
pages.scale_table(1, rung, records)

# %% [markdown]
# ## The adaptive audit's sanity checks
#
# For each column, at the largest audited budget: accuracy falls towards 0 as eps grows
# (`large_eps`), an unbounded attack succeeds (`unbounded`), ten times the steps and five restarts
# change little (`more_steps_restarts`), APGD finds little more than PGD (`apgd`), black-box
# transfer is not stronger than white-box (`transfer`, skipped without a surrogate ensemble). A
# FAIL means the paper-attack numbers of that column overstate its robustness.

# %%
pages.audit_tables(1, rung, records)

# %% [markdown]
# ## Does TRS win?
#
# For each row, under the paper's attack and under the worst case: TRS minus the best other
# column (the one with the highest mean over seeds), with the 95% interval of the paired
# seed-and-point bootstrap (`trs_lib.stats`). The row's verdict is **reproduced** when the interval
# lies above the margin (0 points), **not reproduced** when it lies below, **inconclusive** when it
# straddles it; no verdict until every column has all its seeds. The target for these intervals
# is a half-width of at most 6 points; where a row misses it, the last column says why: the
# half-widths with only the seeds or only the points resampled show which noise sets the width.
# The paper's best column per row is beside ours. Then the claims' verdicts, computed from the
# same records by `trs_lib.companion.claims`.

# %%
pages.headline_table(rung, records)

# %%
pages.claims_table(page="table1_mnist", rung=rung, records=records)

# %% [markdown]
# ## The records
#
# Every number on this page comes from one of these run records (download them; the executed
# notebook of each run lies beside it under `results/`).

# %%
pages.records_links('1', rung, records)

# %% [markdown]
# ## Recap
#
# * Every number above is read from `results/eval/*.json`; the executed notebook that produced
#   it sits beside each record.
# * The paper's Table 1 is typed once in `trs_lib.paper_numbers`; the grid that fills "ours" is
#   `trs_lib.companion.grid.table_cells("1", scale)`; this page's sections are `trs_lib.companion.pages`.
