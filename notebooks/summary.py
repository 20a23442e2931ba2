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
# `results/` by `trs_lib.companion.claims` (never typed by hand). A claim gets one of four
# verdicts: **reproduced**, **not reproduced**, **inconclusive**, or **provisional** (fewer
# than 3 seeds on a side of its comparison: the interval's reading is shown beside it); a
# claim some of whose numbers have no record is **not yet run at this scale**. The page named
# with each claim shows the numbers; the landing page shows the same verdicts and flags.

# %% tags=["parameters"]
rung = "cpu"   # a rung of trs_lib.companion.grid.RUNGS: whose records to judge

# %%
from IPython.display import Markdown

import pandas as pd

from trs_lib import records
from trs_lib.companion import claims, dashboard, ladder, pages

records = records.load_records()
Markdown("**The verdict rule** (the words of `trs_lib.companion.claims`): " + claims.rule_text())

# %% [markdown]
# ## Every claim
#
# Per claim and evaluation: the verdict, the statistic that decides it with its 95% interval
# (the number the verdict is read from), the seeds and points on each side, the margin with
# its source, and the flags (*provisional*, *fragile* with the row that decides,
# *margin-sensitive* with the verdicts at half and twice the margin).

# %%
dashboard.claims_frame(rung=rung, records=records)

# %% [markdown]
# ## Across the scale ladder
#
# The verdicts above are judged at one rung. Table 1's headline claim on every rung of the
# ladder (`trs_lib.companion.ladder`; the page {doc}`scale_ladder` has the plot and the
# convergence curves), and whether the rungs disagree:

# %%
Markdown(dashboard.scale_note(records))

# %%
ladder.ladder_frame(ladder.ladder(records))

# %% [markdown]
# ## The margins and their sources
#
# Every margin is a named constant of `trs_lib.companion.differences`, with where it comes
# from: the paper's words and the line of the paper's text, or the companion's choice and why.

# %%
Markdown(f"In short: {claims.MARGIN:g} points for a claim that one column is better, "
         f"{claims.BENIGN_MARGIN:g} point of clean accuracy for \"about as accurate\", "
         f"{claims.MARGINS['C_SPREAD'].value:g} points (the paper's largest spread over c) for "
         "\"c need not be tuned\", and the paper's own gap in each row of Table 6 for ILA.")

# %%
pd.DataFrame([{"margin": name, "value": m.value, "unit": m.unit, "source": m.source}
              for name, m in claims.MARGINS.items()]).set_index("margin")

# %% [markdown]
# How many records this page read, by kind:

# %%
pages.record_counts(records)
