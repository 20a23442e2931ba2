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
# CIFAR-10 row is GPU work and says **not run**. (The paper's text also names a CIFAR-10 row at
# eps = 0.02 whose numbers it does not print.)
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
frame = results.table_frame(6, scale, records)

# %%
plots.scale_table(frame)

# %% [markdown]
# Paper, ours and ours minus paper (ILA is itself the transfer attack here, so there is no audit
# column):

# %%
plots.side_by_side(frame, values=("paper", "ours", "diff"))

# %%
claims.check_claims(scale, records).loc[["ila"], ["claim", "verdict", "evidence"]]

# %% [markdown]
# ## Recap
#
# * The ILA evaluation uses the same TRS (k = 3, c = 2) ensemble as Tables 1, 3 and 5.
