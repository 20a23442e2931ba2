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
# # Attack our ensembles
#
# The ensembles behind the tables are yours to attack. This page loads one from the CPU-scale
# zoo (the committed weights of the grid, `trs_lib.companion.zoo`, checksum verified) in one call, runs
# **your own attack function** on it, and puts the strong worst-case suite of the evaluation
# chapter beside it at the same budgets. If your attack finds points the suite misses, the
# suite (and our tables) overestimate the ensemble's robustness: tell us.
#
# :::{admonition} When the zoo is empty
# :class: note
# Until the grid's weights are committed under `results/zoo/`, the page says so and trains a
# small TRS ensemble on `mnist5k` instead (one epoch, a minute on a laptop CPU), so that it always
# runs. Everything below works the same on either.
# :::
#
# Run it with your own settings: `papermill notebooks/attack_our_ensembles.ipynb out.ipynb -p
# column trs -p n_points 500`.

# %% tags=["parameters"]
column = "trs"          # a zoo column: trs, vanilla, adp, cossim, ...
seed = 0                # which seed of the column
n_points = 64           # test points to attack (the first of mnist5k's test split)
budgets = [0.1, 0.2]    # L-infinity budgets
fresh_epochs = 1        # epochs of the fallback training when the zoo is empty
quick = True            # smaller suite (fewer steps and queries) for a CPU

# %%
import tempfile
import warnings

import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # no widgets in a static book

from trs_lib import data, train

from trs_lib.companion import pages

torch.manual_seed(0)


def fresh():
    """The fallback: a small TRS ensemble trained here (no output path is shown)."""
    return train.train("mnist5k", "trs", out_dir=tempfile.mkdtemp(), epochs=fresh_epochs,
                       seed=seed, progress=False, log=lambda msg: None).ensemble


# NBVAL_IGNORE_OUTPUT
ensemble, source = pages.load_ensemble(column, seed, fallback=fresh)
source

# %% [markdown]
# ## Your attack
#
# Any function `(model, x, y, eps) -> x_adv`. The ensemble takes images in [0, 1] and returns
# log-probabilities (log of the mean softmax of its members). Here: one signed-gradient step
# (FGSM) written from scratch; replace it with yours.

# %%
def my_attack(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.nll_loss(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


# %% [markdown]
# ## Your attack beside the strong suite
#
# Accuracy (%) with its 95% interval over the test points; "both" counts a point as robust only
# if it survives your attack and every attack of the suite.

# %%
# NBVAL_IGNORE_OUTPUT
x, y = data.load("mnist5k", "test")
x, y = x[:n_points], y[:n_points]
small = {"apgd_ce": {"steps": 20}, "apgd_t": {"steps": 20, "n_targets": 1},
         "reweigh": {"steps": 20}, "square": {"n_queries": 100}}
pages.attack_report(ensemble, my_attack, x, y, budgets, overrides=small if quick else None)

# %% [markdown]
# ## Download the weights
#
# Safetensors files (never pickles) with the JSON sidecar `trs_lib.checkpoint.load_weights`
# reads; `trs_lib.companion.zoo.load` checks each against the index's SHA-256.

# %%
pages.zoo_links()

# %% [markdown]
# ## Recap
#
# * `pages.load_ensemble(column, seed)` is `trs_lib.companion.zoo.load` with a fallback; the zoo's index
#   lists every column and seed with its checksum.
# * The worst-case suite is the evaluation chapter's (`trs_lib.worst_case`); `quick = False` runs
#   it with its full steps and queries.
