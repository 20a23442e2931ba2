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
# **not yet run at this scale** when some number it needs has no record. Comparisons allow two
# points of accuracy for noise (`trs_lib.claims.TOLERANCE`, about one standard error at the CPU
# scale's 200 test points).
# The page named with each claim shows the numbers.

# %% tags=["parameters"]
scale = "cpu"   # cpu | paper: which grid's records to judge

# %%
import pandas as pd

from trs_lib import claims, results

pd.set_option("display.max_colwidth", 200)
records = results.load_records()
verdicts = claims.check_claims(scale, records)
verdicts

# %% [markdown]
# How many records this page read, by kind:

# %%
pd.Series([k.split("/")[0] for k in records], dtype=object).value_counts().sort_index()
