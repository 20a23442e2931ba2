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
# # Figure 1, redrawn from real classifiers
#
# Figure 1 of the paper is a sketch: *(a) gradient orthogonality alone cannot guarantee [low]
# transferability, as the decision boundaries of two classifiers can be arbitrarily close yet have
# orthogonal gradients almost everywhere; (b) gradient orthogonality with smoothness provides a
# stronger guarantee.* This chapter builds the classifiers the sketch describes, as functions of
# the plane that can be differentiated and attacked, and measures every quantity the caption
# talks about: the gradient cosine (Definitions 4-5), the smoothness (Definition 6) and the
# transferability of the paper's attack (Definitions 1 and 3).
#
# * $\mathcal{F}$: a linear classifier with boundary $x_2 = 0$; its loss gradient is vertical.
# * $\mathcal{G}_0$: boundary $x_2 = a\,\mathrm{tri}(x_1)$, a zigzag of amplitude $a$ and slope
#   $\pm K$ with $K = 4a/p \gg 1$ (period $p$). Its loss gradient $\propto (\mp K, 1)$ is nearly
#   horizontal everywhere except at the kinks, where it is undefined: **orthogonal almost everywhere,
#   boundaries within $a$**.
# * $\mathcal{G}_\sigma$: the same zigzag smoothed by a Gaussian of width $\sigma$ (its Fourier
#   series damped by $e^{-k^2\omega^2\sigma^2/2}$): the pair made smooth.
# * $\mathcal{G}_\perp$: a linear classifier with boundary $x_1 = 0$: orthogonal *and* smooth.
#
# The data: class 1 uniform on $[0.1, 1]^2$, class 0 uniform on $[-1, -0.1]^2$; every classifier
# above labels it perfectly. All models are two-class with logit margin $T \cdot \text{score}(x)$,
# so the cross-entropy gradient is a multiple of the score's gradient.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from trs_lib import theory as th

torch.set_default_dtype(torch.float64)

T, AMPLITUDE, PERIOD, EPS = 10.0, 0.08, 0.016, 0.4
OMEGA = 2 * math.pi / PERIOD
K = 4 * AMPLITUDE / PERIOD
HARMONICS = torch.arange(1, 800, 2, dtype=torch.float64)          # odd k


class Zigzag(torch.nn.Module):
    """Two-class model with boundary x2 = a * tri(x1), tri Gaussian-smoothed with width sigma."""

    def __init__(self, sigma=0.0):
        super().__init__()
        self.sigma = sigma

    def tri(self, t):
        if self.sigma == 0:
            return (2 / math.pi) * torch.asin(torch.sin(OMEGA * t))          # exact triangle wave
        damp = torch.exp(-((HARMONICS * OMEGA * self.sigma) ** 2) / 2)
        k = HARMONICS[damp > 1e-12]                                      # negligible terms dropped
        signs = torch.where(((k - 1) / 2) % 2 == 0, 1.0, -1.0)
        coef = 8 / math.pi**2 * signs * damp[: len(k)] / k**2
        return (coef * torch.sin(OMEGA * t[:, None] * k)).sum(-1)

    def forward(self, x):
        score = x[:, 1] - AMPLITUDE * self.tri(x[:, 0])
        return torch.stack([-T * score / 2, T * score / 2], 1)


model_f = th.binary_linear_model([0.0, 1.0], T)
model_perp = th.binary_linear_model([1.0, 0.0], T)

gen = torch.Generator().manual_seed(0)
n = 400
x = torch.cat([0.1 + 0.9 * torch.rand(n, 2, generator=gen), -0.1 - 0.9 * torch.rand(n, 2, generator=gen)])
y = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)])

# %% [markdown]
# The smoothed zigzag at $\sigma = 0$ (its Fourier series, 400 harmonics) agrees with the exact
# triangle wave, a check of the construction:

# %%
t = torch.linspace(-1, 1, 2001)
print("Fourier series (sigma -> 0) = exact zigzag to 1e-3:",
      bool((Zigzag(1e-9).tri(t) - Zigzag(0.0).tri(t)).abs().max() < 1e-3))

# %% [markdown]
# (theory-figure1-measured)=
# ## What the caption claims, measured
#
# For each target classifier $\mathcal{G}$: its risk; the gradient cosine with $\mathcal{F}$ on the
# data (true labels): mean $|\cos|$ (what TRS minimises), its minimum and maximum (the sampled
# $\underline{\mathcal{S}}, \overline{\mathcal{S}}$ of Definitions 4-5); the smoothness, as the largest
# input-Hessian norm on a grid and as Definition 6's difference quotient on pairs of points
# $10^{-4}$ apart (horizontally and vertically, along $\mathcal{F}$'s boundary); and the transferability of the exact Definition 1 attack on $\mathcal{F}$
# ($\epsilon = 0.4$): $\Pr(T_r = 1)$ against $\Pr(\mathcal{F}$ flipped$)$.

# %%
x_adv = th.binary_linear_attack(model_f, x, y, EPS)
shift = 1e-3 * math.sqrt(2)          # keeps grid points off the zigzag's kinks
grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 41) + shift, torch.linspace(-1, 1, 41), indexing="ij"), -1).reshape(-1, 2)
line = torch.stack([torch.linspace(-0.99, 0.99, 2001) + shift, torch.zeros(2001)], 1)
pairs_a = torch.cat([line, line])                                  # horizontal and vertical offsets
pairs_b = pairs_a + torch.cat([torch.tensor([[1e-4, 0.0]]).expand(2001, 2), torch.tensor([[0.0, 1e-4]]).expand(2001, 2)])


def describe(model_g):
    with torch.no_grad():
        pf, pg = model_f(x).argmax(-1), model_g(x).argmax(-1)
        pfa, pga = model_f(x_adv).argmax(-1), model_g(x_adv).argmax(-1)
    cos = th.estimate_gradient_similarity(model_f, model_g, x, y)["cos"]
    cos = cos[~torch.isnan(cos)]
    lab = torch.zeros(len(pairs_a), dtype=torch.long)
    g1, g2 = th.input_gradient(model_g, pairs_a, lab)[1], th.input_gradient(model_g, pairs_b, lab)[1]
    quotient = th.smoothness_difference_quotient(g1, g2, pairs_a, pairs_b)
    hess = th.estimate_smoothness(model_g, grid, "all", iters=20, generator=torch.Generator().manual_seed(1))
    return {"risk": th.risk(pg, y), "mean |cos|": cos.abs().mean().item(), "S_lower (sampled)": cos.min().item(),
            "S_upper (sampled)": cos.max().item(), "max Hessian norm": hess["beta"],
            "Def. 6 quotient": quotient, "Pr(F flipped)": 1 - th.attack_effectiveness(pfa, y),
            "Pr(T_r = 1)": th.transferability(y, pf, pg, pfa, pga)}


targets = {"G_0 (zigzag)": Zigzag(0.0), "G_sigma, sigma = p/8": Zigzag(PERIOD / 8),
           "G_sigma, sigma = p/3": Zigzag(PERIOD / 3), "G_perp (orthogonal, smooth)": model_perp}
table = pd.DataFrame({name: describe(m) for name, m in targets.items()}).T

# %%
# NBVAL_IGNORE_OUTPUT
table.round(4)

# %%
zig, smooth, perp = table.loc["G_0 (zigzag)"], table.loc["G_sigma, sigma = p/3"], table.loc["G_perp (orthogonal, smooth)"]
print("(a) every classifier is perfect on the data:", bool((table["risk"] == 0).all()))
print("(a) zigzag: |cos| = 1/sqrt(1 + K^2) at every data point:",
      math.isclose(zig["S_upper (sampled)"], 1 / math.sqrt(1 + K**2), rel_tol=1e-9)
      and math.isclose(zig["S_lower (sampled)"], 1 / math.sqrt(1 + K**2), rel_tol=1e-9))
print("(a) ...yet the attack on F transfers to it almost always:",
      bool(zig["Pr(T_r = 1)"] > 0.9 * zig["Pr(F flipped)"]))
print("(a) ...and it is not smooth: Definition 6's quotient across a kink > 1000:", bool(zig["Def. 6 quotient"] > 1000))
print("(b) smoothed: the upper similarity is 1 (the gradients align somewhere):", bool(smooth["S_upper (sampled)"] > 0.999))
print("(b) ...and the attack still transfers:", bool(smooth["Pr(T_r = 1)"] > 0.9 * smooth["Pr(F flipped)"]))
print("(c) orthogonal and smooth: nothing transfers:", perp["Pr(T_r = 1)"] == 0.0)

# %% [markdown]
# Two things the sketch does not show become visible:
#
# * At $\sigma = 0$ the Hessian estimate on a grid is finite (the zigzag's second derivative is 0
#   almost everywhere) while Definition 6's difference quotient across a kink is in the thousands:
#   a Hessian-based smoothness estimate can miss a non-smooth model. The same caution applies to
#   ReLU networks ({doc}`05_bounds_trained`).
# * Once smooth, a boundary that stays within $a$ of $\mathcal{F}$'s **must** be parallel to it
#   somewhere (its slope is a continuous periodic function and vanishes somewhere), so the upper
#   similarity $\overline{\mathcal{S}}$, the quantity of Theorem 2, is 1, however small the mean
#   $|\cos|$ is. Smooth + orthogonal (in the sense of $\overline{\mathcal{S}} < 1$) + close
#   boundaries cannot happen together: that is the content of panel (b).

# %%
# NBVAL_IGNORE_OUTPUT
def boundary_panel(ax, model_g, title, zoom=False):
    lim = (-0.12, 0.12) if zoom else (-1, 1)
    xx, yy = torch.meshgrid(torch.linspace(*lim, 400), torch.linspace(*lim, 400), indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        zf = (model_f(pts)[:, 1] - model_f(pts)[:, 0]).reshape(xx.shape)
        zg = (model_g(pts)[:, 1] - model_g(pts)[:, 0]).reshape(xx.shape)
    ax.contour(xx, yy, zf, levels=[0], colors="tab:blue", linewidths=1.5)
    ax.contour(xx, yy, zg, levels=[0], colors="tab:red", linewidths=1.0)
    if not zoom:
        ax.scatter(x[::8, 0], x[::8, 1], c=y[::8], cmap="coolwarm", s=4, alpha=0.5)
    arrows = torch.stack(torch.meshgrid(torch.linspace(lim[0] * 0.8, lim[1] * 0.8, 5),
                                        torch.tensor([lim[1] * 0.05]), indexing="ij"), -1).reshape(-1, 2)
    lab = torch.zeros(len(arrows), dtype=torch.long)
    for model, color in ((model_f, "tab:blue"), (model_g, "tab:red")):
        g = th.input_gradient(model, arrows, lab)[1]
        g = g / g.norm(dim=1, keepdim=True) * (lim[1] - lim[0]) * 0.08
        ax.quiver(arrows[:, 0], arrows[:, 1], g[:, 0], g[:, 1], color=color, angles="xy",
                  scale_units="xy", scale=1, width=0.008)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)


fig, axes = plt.subplots(1, 4, figsize=(15, 4))
boundary_panel(axes[0], Zigzag(0.0), f"(a) F (blue) and zigzag G_0 (red)\nmean|cos| = {zig['mean |cos|']:.3f}, "
               f"transfer {zig['Pr(T_r = 1)']:.2f} of {zig['Pr(F flipped)']:.2f}")
boundary_panel(axes[1], Zigzag(0.0), "(a) zoom: orthogonal gradients,\nboundaries within a", zoom=True)
boundary_panel(axes[2], Zigzag(PERIOD / 3), f"(b) smoothed G (sigma = p/3)\nS_upper = {smooth['S_upper (sampled)']:.3f}, "
               f"transfer {smooth['Pr(T_r = 1)']:.2f}", zoom=True)
boundary_panel(axes[3], model_perp, f"(b') orthogonal and smooth G_perp\ntransfer {perp['Pr(T_r = 1)']:.2f} "
               f"of {perp['Pr(F flipped)']:.2f}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The family $\mathcal{G}_\sigma$
#
# From the zigzag ($\sigma = 0$) to the straight line ($\sigma \gtrsim p/2$): smoothing lowers the
# curvature by orders of magnitude and raises the gradient alignment, and the transferability from
# $\mathcal{F}$ stays where it was. With the boundaries this close, the only way to be both smooth
# and orthogonal is to move the boundary away, which is $\mathcal{G}_\perp$.

# %%
sigmas = [0.0] + list(np.geomspace(PERIOD / 100, PERIOD, 7))
family = pd.DataFrame({s: describe(Zigzag(s)) for s in sigmas}).T
family.index.name = "sigma"

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
s_axis = np.array(sigmas) / PERIOD
ax[0].plot(s_axis, family["mean |cos|"], "o-", label="mean |cos| (what TRS minimises)")
ax[0].plot(s_axis, family["S_upper (sampled)"], "s-", label="S_upper (Definition 5)")
ax[0].plot(s_axis, family["Pr(T_r = 1)"] / family["Pr(F flipped)"], "^-", label="transfer rate")
ax[0].set_xscale("symlog", linthresh=0.01)
ax[0].set_xlabel("sigma / period")
ax[0].legend(fontsize=8)
ax[1].semilogy(s_axis[1:], family["max Hessian norm"].iloc[1:], "o-", label="max Hessian norm (grid)")
ax[1].semilogy(s_axis, family["Def. 6 quotient"], "s-", label="Definition 6 quotient (pairs 1e-4 apart)")
ax[1].set_xscale("symlog", linthresh=0.01)
ax[1].set_xlabel("sigma / period")
ax[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
print("transfer rate stays above 0.9 for every sigma:",
      bool((family["Pr(T_r = 1)"] > 0.9 * family["Pr(F flipped)"]).all()))
print("smoothing lowers Definition 6's quotient by > 100x:",
      bool(family["Def. 6 quotient"].iloc[-1] * 100 < family["Def. 6 quotient"].iloc[0]))

# %% [markdown]
# ## Recap
#
# * Panel (a) is real: a zigzag boundary within $a = 0.08$ of a straight one has a loss gradient at
#   cosine $1/\sqrt{1 + K^2} \approx 0.05$ to the straight one's at every data point, and the
#   attack on $\mathcal{F}$ transfers to it almost every time it succeeds.
# * The zigzag is not smooth; smoothing it (panel b) cannot keep the gradients orthogonal
#   everywhere: the upper similarity becomes 1 and transfer is unchanged. Orthogonal and smooth
#   models (b') have boundaries that cross, and nothing transfers.
# * In the terms of the theorems: small **mean** $|\cos|$ is compatible with high transferability;
#   the upper bound involves the **supremum** $\overline{\mathcal{S}}$, which smoothness pushes to 1
#   when boundaries are close.

# %% [markdown]
# ## Checks of this chapter

# %%
checks = th.check_table([
    ("Fourier zigzag", "series with sigma -> 0 = exact zigzag (2001 points, 1e-3)", 2001,
     int(((Zigzag(1e-9).tri(t) - Zigzag(0.0).tri(t)).abs() >= 1e-3).sum())),
    ("(a) perfect classifiers", "risk 0 on the data", len(table), int((table["risk"] != 0).sum())),
    ("(a) zigzag cosine", "|cos| = 1/sqrt(1 + K^2) at every data point (min and max)", 2,
     int(not math.isclose(zig["S_upper (sampled)"], 1 / math.sqrt(1 + K**2), rel_tol=1e-9))
     + int(not math.isclose(zig["S_lower (sampled)"], 1 / math.sqrt(1 + K**2), rel_tol=1e-9))),
    ("(a) transfer despite orthogonality", "Pr(T_r) > 0.9 Pr(F flipped) for the zigzag", 1,
     int(not zig["Pr(T_r = 1)"] > 0.9 * zig["Pr(F flipped)"])),
    ("(a) not smooth", "Definition 6 quotient across a kink > 1000", 1, int(not zig["Def. 6 quotient"] > 1000)),
    ("(b) smoothed: S_upper = 1", "sampled upper similarity > 0.999", 1, int(not smooth["S_upper (sampled)"] > 0.999)),
    ("(c) orthogonal and smooth", "nothing transfers", 1, int(perp["Pr(T_r = 1)"] != 0.0)),
    ("smoothing family", "transfer rate > 0.9 Pr(F flipped) for every sigma", len(family),
     int((~(family["Pr(T_r = 1)"] > 0.9 * family["Pr(F flipped)"])).sum())),
])
th.glue_check_counts(checks)
checks
