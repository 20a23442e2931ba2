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
# # Beyond the paper: the bounds for trained ensembles
#
# The paper proves its bounds and then trains TRS ensembles, but never evaluates the bounds for
# the networks it trains. This chapter does: for the members of a vanilla and of a TRS ensemble
# trained on digits (`trs_lib.train`, recipe defaults on `mnist5k`), it estimates every term of
# Theorems 1 and 2 on test points (the risks, the gradient similarities, the smoothness $\beta$,
# the gradient bound $B$, $c_\mathcal{F}$, $c_\mathcal{G}$, $\ell_{\min}$) with the first member
# as the surrogate $\mathcal{F}$ and each other member as the target $\mathcal{G}$, attacks
# $\mathcal{F}$ with the $\ell_2$ attack of Definition 1, and puts the bounds next to the measured
# transferability. (`surrogates` selects other members as $\mathcal{F}$; the defaults keep the
# chapter to about a minute on a CPU.)
#
# :::{admonition} What is estimated, and how
# :class: note
# * Probabilities, means, minima and maxima are over the first `n_points` test digits (sample
#   estimates of the population quantities the theorems use).
# * $\underline{\mathcal{S}}, \overline{\mathcal{S}}$: minimum and maximum gradient cosine over those
#   points and **all ten labels** (an inner estimate of Definitions 4-5).
# * $\beta$: the largest input-Hessian spectral norm of the members' cross-entropy, by power
#   iteration with Hessian-vector products, at clean points and on the attack segments
#   $x + t(x^A - x)$, $t \in \{0.5, 1\}$, of the attacks at the largest $\epsilon$
#   (the segments on which the proofs expand the loss). For these ReLU networks the Hessian exists
#   almost everywhere and is $J^\top(\mathrm{diag}\,p - pp^\top)J$ whatever the label; across ReLU
#   kinks the gradient jumps, so Definition 6's $\beta$ is infinite and this estimate is a lower
#   bound on any valid $\beta$ (see the zigzag of {doc}`04_figure1`).
# * $B$: the largest input-gradient norm over the points and all labels (what Eqs. C.15-C.18 use).
# * The attack: `theory.definition1_attack`, projected normalised gradient ascent in the $\ell_2$
#   ball intersected with $[0, 1]^{784}$.
#
# Every approximation above makes the bounds *more* favourable than the truth (a smaller $\beta$,
# an inner similarity range, a maximum over fewer points), so a vacuous estimate means a vacuous
# bound.
# :::

# %% tags=["parameters"]
dataset = "mnist5k"
n_points = 200          # test points for every estimate
n_beta = 60             # of which this many for the Hessian estimates
epsilons = [0.5, 1.0, 2.0]
surrogates = [0]        # members attacked (F); every other member is a target (G)
attack_steps = 20
hessian_iters = 15
seed = 0

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from trs_lib import data, theory as th
from trs_lib.train import train

gen = torch.Generator().manual_seed(seed)

# %% [markdown]
# ## The ensembles
#
# Both calls are no-ops when the runs exist (they load the weights); otherwise they train with the
# recipe's defaults, one to two minutes on a CPU.

# %%
# NBVAL_IGNORE_OUTPUT
runs = {name: train(dataset, name, progress=False) for name in ("vanilla", "trs")}
x_all, y_all = data.load(dataset, "test")
x, y = x_all[:n_points], y_all[:n_points]
members = {}
for name, run in runs.items():
    run.ensemble.eval().cpu()
    members[name] = [run.ensemble.member(i) for i in range(run.ensemble.num_members)]
{name: [th.risk(m(x).argmax(-1), y) for m in ms] for name, ms in members.items()}


# %% [markdown]
# ## Attacks, similarities, smoothness, gradient bound

# %%
def loss_of(model):
    return lambda z, lab: F.cross_entropy(model(z), lab, reduction="none")


attacks = {(name, i, eps): th.definition1_attack(loss_of(ms[i]), x, y, eps, steps=attack_steps, clip=(0.0, 1.0))
           for name, ms in members.items() for i in surrogates for eps in epsilons}
print("every attack stays in its ball and in [0, 1]:",
      all(bool(((xa - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-5)).all() and xa.min() >= 0 and xa.max() <= 1)
          for (_, _, eps), xa in attacks.items()))

# %%
# the cross-entropy Hessian of a ReLU network does not depend on the label: same power iteration,
# label y and label y + 1, same spectral norm
m0 = members["vanilla"][0]
probe = x[:5]
norms = [th.hessian_spectral_norm(lambda z, lab=lab: F.cross_entropy(m0(z), lab, reduction="none"), probe,
                                  iters=10, generator=torch.Generator().manual_seed(1))["norm"]
         for lab in (y[:5], (y[:5] + 1) % 10)]
print("input Hessian of the cross-entropy is label-independent here:", bool(torch.allclose(*norms, rtol=1e-4)))

# %%
# NBVAL_IGNORE_OUTPUT
summary = {}
for name, ms in members.items():
    eps_max = max(epsilons)
    x_b = x[:n_beta]
    seg = torch.cat([x_b] + [x_b + t * (attacks[(name, i, eps_max)][:n_beta] - x_b)
                              for i in surrogates for t in (0.5, 1.0)])
    lab = y[:n_beta].repeat(1 + 2 * len(surrogates))
    betas = [th.estimate_smoothness(m, seg, lab, iters=hessian_iters, generator=gen)["beta"] for m in ms]
    bs = [th.estimate_gradient_bound(m, x)["B"] for m in ms]
    sims = {(i, j): th.estimate_gradient_similarity(ms[i], ms[j], x) for i in surrogates
            for j in range(len(ms)) if i != j}
    true_cos = torch.cat([th.estimate_gradient_similarity(ms[i], ms[j], x, y)["cos"] for (i, j) in sims])
    summary[name] = {"beta (est.)": max(betas), "B (est.)": max(bs),
                     "S_lower (est.)": min(s["lower"] for s in sims.values()),
                     "S_upper (est.)": max(s["upper"] for s in sims.values()),
                     "mean cos, true label": true_cos.nanmean().item(),
                     "mean |cos|, true label": true_cos.abs().nanmean().item(),
                     "_betas": betas, "_bs": bs, "_sims": sims}
pd.DataFrame({k: {kk: v for kk, v in d.items() if not kk.startswith("_")} for k, d in summary.items()}).round(4)

# %% [markdown]
# The seed TRS objective drives the *signed* cosine of the members' true-label gradients towards
# $-1$, so its sampled $\underline{\mathcal{S}}$ is strongly negative. The theorems, however, use the
# whole range of the cosine over all labels, and the estimated $\beta$ and $B$ range over all
# labels too, while TRS penalises only the true-label gradient norm. (In the run stored with this
# notebook TRS's estimated $\beta$ and $B$ are *larger* than vanilla's.)
#
# ## The terms and the bounds, pair by pair

# %%
rows = []
for name, ms in members.items():
    s = summary[name]
    for i in surrogates:
        for j in range(len(ms)):
            if i == j:
                continue
            sim = s["_sims"][(i, j)]
            beta = max(s["_betas"][i], s["_betas"][j])
            B = max(s["_bs"][i], s["_bs"][j])
            for eps in epsilons:
                terms = th.bound_terms(ms[i], ms[j], x, y, attacks[(name, i, eps)], eps, beta=beta, B=B,
                                       S_lower=sim["lower"], S_upper=sim["upper"])
                rows.append({"ensemble": name, "F": i, "G": j, **terms, **th.bounds_from_terms(terms)})
pairs = pd.DataFrame(rows)

# %%
# NBVAL_IGNORE_OUTPUT
cols = ["ensemble", "F", "G", "epsilon", "transferability", "alpha", "eta_F", "eta_G", "c_F", "c_G",
        "lower_denominator", "lower", "lower_raw", "xi_F", "xi_G", "l_min", "upper_denominator", "upper"]
pairs[cols].round(4)

# %%
# NBVAL_IGNORE_OUTPUT
agg = pairs.groupby(["ensemble", "epsilon"]).agg(
    transferability=("transferability", "mean"), alpha=("alpha", "mean"), c_G_min=("c_G", "min"),
    l_min=("l_min", "min"), upper_denominator_max=("upper_denominator", "max"))
agg.round(4)

# %%
print("pairs x epsilons evaluated:", len(pairs))
print("lower bound a theorem here (eps - c_G > 0) in:", int((pairs["lower_denominator"] > 0).sum()), "cases")
print("lower bound positive in:", int((pairs["lower"] > 0).sum()), "cases")
print("upper bound a theorem here (positive denominator) in:", int((pairs["upper_denominator"] > 0).sum()), "cases")
print("upper bound below 1 in:", int((pairs["upper"] < 1).sum()), "cases")
print("every guarded bound holds:", bool(((pairs["lower"] <= pairs["transferability"])
                                         & (pairs["transferability"] <= pairs["upper"])).all()))

# %% [markdown]
# ## Why: the size of each term
#
# **Upper bound.** Its denominator is $\ell_{\min} - \epsilon B(1 + \sqrt{(1+\overline{\mathcal{S}})/2}) - \beta\epsilon^2$.
# $\ell_{\min}$, the smallest wrong-label loss over the test points, is reached at a misclassified
# (or nearly misclassified) digit and is below $\log 2$; the two subtracted terms are orders of
# magnitude larger. **Lower bound.** $c_\mathcal{G}$ is a maximum over the points of a ratio whose
# denominator $\lVert\nabla_x\ell_\mathcal{G}(x, y)\rVert$ is tiny wherever $\mathcal{G}$ is confident:

# %%
# NBVAL_IGNORE_OUTPUT
sizes = pd.DataFrame({
    "ensemble": pairs["ensemble"], "epsilon": pairs["epsilon"], "l_min": pairs["l_min"],
    "eps B (1 + sqrt((1+S)/2))": pairs["epsilon"] * pairs["B"] * (1 + np.sqrt((1 + pairs["S_upper"]) / 2)),
    "beta eps^2": pairs["beta"] * pairs["epsilon"] ** 2, "c_G": pairs["c_G"]})
sizes.groupby(["ensemble", "epsilon"]).agg({"l_min": "min", "eps B (1 + sqrt((1+S)/2))": "max",
                                             "beta eps^2": "max", "c_G": "min"})

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
for name, grp in pairs.groupby("ensemble"):
    g = grp.groupby("epsilon")["transferability"].mean()
    ax[0].plot(g.index, g.values, "o-", label=f"{name}: measured Pr(T_r = 1)")
ax[0].axhspan(0, 1, color="0.92", zorder=0)
ax[0].set_xlabel(r"$\epsilon$ ($\ell_2$)")
ax[0].set_ylabel("probability")
ax[0].set_title("measured transferability between members\n(lower bound: -inf, upper: +inf everywhere)", fontsize=9)
ax[0].legend(fontsize=8)
for name, grp in pairs.groupby("ensemble"):
    ax[1].scatter(grp["epsilon"], -grp["upper_denominator"], label=f"{name}: -(upper-bound denominator)")
    ax[1].scatter(grp["epsilon"], grp["c_G"] - grp["epsilon"], marker="x", label=f"{name}: c_G - eps")
ax[1].set_yscale("log")
ax[1].set_xlabel(r"$\epsilon$ ($\ell_2$)")
ax[1].set_title("how far each bound is from applying (log scale)", fontsize=9)
ax[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# (theory-trained-verdict)=
# ## Verdict
#
# At this scale **neither bound is informative**, for either ensemble, at any radius: the
# hypotheses of both proofs fail by orders of magnitude ($c_\mathcal{G}$ is in the millions, not
# below $\epsilon$; the upper-bound denominator is large and negative because $\ell_{\min}$ is a
# few hundredths while $\epsilon B$ and $\beta\epsilon^2$ are tens), so Theorem 1 gives $-\infty$
# and Theorem 2 gives $+\infty$. The raw expression of Theorem 1, evaluated anyway, even exceeds 1
# at the largest radius. Nothing here hinges on the approximations: a larger (valid) $\beta$, a
# wider similarity range or more points would move every term further the same way.
#
# The measurements themselves behave as the paper's intuition says: the attack on a TRS member
# transfers to the other members less often than the attack on a vanilla member does (first
# panel and the tables; in the stored run the TRS member is, if anything, *easier* to attack,
# compare $\alpha$). The theorems cannot say so
# quantitatively because of their worst-case form (a maximum or minimum over the support inside
# $c_\mathcal{G}$ and $\ell_{\min}$, a global $\beta$ and $B$), not because of the networks.
