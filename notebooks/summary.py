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
# `results/` by `trs_lib.claims` (never typed by hand): **reproduced**, **not reproduced**, or
# **not yet run at this scale** when some number it needs has no record. The page named with
# each claim shows the numbers; the landing page shows the same verdicts.

# %% tags=["parameters"]
scale = "cpu"   # cpu | paper: which grid's records to judge

# %%
from IPython.display import Markdown

from trs_lib import claims, pages, results

records = results.load_records()
Markdown(f"Comparisons allow a tolerance of {claims.TOLERANCE:g} points of accuracy for noise "
         "(`trs_lib.claims.TOLERANCE`).")

# %%
pages.claims_table([c["id"] for c in pages.dashboard.claims(scale, records)], scale, records)

# %% [markdown]
# How many records this page read, by kind:

# %%
pages.record_counts(records)
