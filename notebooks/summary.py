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
# # The paper's claims, checked
#
# Each headline claim of the paper, with a verdict computed from the run records under
# `results/` by `trs_lib.companion.claims` (never typed by hand): **reproduced**, **not reproduced**, or
# **not yet run at this scale** when some number it needs has no record. The page named with
# each claim shows the numbers; the landing page shows the same verdicts.

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to judge

# %%
from IPython.display import Markdown

from trs_lib import stats

from trs_lib import records
from trs_lib.companion import claims, pages, tables

records = records.load_records()
Markdown(
    "Each claim is decided by a paired difference between columns (same test points, same seeds) "
    "and its 95% interval: **reproduced** when the whole interval lies on the claim's side of its "
    f"margin ({claims.MARGIN:g} points for a claim that one column is better, "
    f"{claims.BENIGN_MARGIN:g} point of clean accuracy for \"about as accurate\", the paper's own "
    "spread for c), **not reproduced** when it lies wholly on the other side, **inconclusive** "
    "when it straddles the margin. Robustness claims are judged twice: under the paper's attack "
    "and under the strong worst case at the same budget. The interval is a seed-and-point "
    f"bootstrap ({stats.N_BOOT:,} draws, `trs_lib.stats`): each draw resamples the seeds and, "
    "independently, the test points (the same points for every seed, as every seed is attacked "
    "on the same points), so both the training run and the test set count; its 2.5 and 97.5 "
    "percentiles bound the difference. A claim over several rows combines the rows' verdicts: "
    "\"in most cases\" is reproduced when more than half the rows are, not reproduced when "
    "they could not be even if every inconclusive row were; \"in every row\" is reproduced "
    "when all are, not reproduced when any is not; else inconclusive.")

# %%
pages.claims_table(rung=rung, records=records)

# %% [markdown]
# How many records this page read, by kind:

# %%
pages.record_counts(records)
