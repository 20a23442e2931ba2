"""Figures of the companion: training curves, transfer heatmaps, robustness against the budget."""
from __future__ import annotations

__all__ = ["plot_training_curves", "fmt_number",
           "transfer_heatmaps", "robustness_plot"]


def plot_training_curves(histories: dict, keys=("train_ce", "test_acc_ensemble", "test_mean_abs_cos"),
                         titles=None):
    """One panel per metric, one line per run: ``histories`` maps a label to a run's history."""
    import matplotlib.pyplot as plt

    titles = titles or {"train_ce": "training cross-entropy (sum over members)",
                        "test_acc_ensemble": "ensemble test accuracy",
                        "test_mean_abs_cos": "mean |cos| of member input gradients (test)"}
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        for label, history in histories.items():
            pts = [(h["epoch"], h[key]) for h in history if key in h]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ paper-vs-ours tables
def fmt_number(value, kind: str = "ours", missing: str = "not run") -> str:
    """A table entry as text: the paper's numbers as printed, ours with one decimal,
    differences signed; ``missing`` where there is no number."""
    if value is None or value != value:  # None or NaN
        return missing
    if kind == "paper":  # as printed: one decimal, two where the paper gives two
        return f"{value:.1f}" if round(value, 1) == value else f"{value:.2f}"
    if kind == "diff":
        return f"{value:+.1f}"
    return f"{value:.1f}"


# ------------------------------------------------------------------ robustness against eps
def robustness_plot(frame, title=None):
    """Tables 1, 3, 5 as a picture: one panel per attack, robust accuracy (%) against the
    budget, one colour per column. Ours: filled circles with 95% interval bars (solid line);
    the strong worst case at the same budget: crosses with interval bars (dashed line); the
    paper's number: hollow diamonds (dotted line).

    ``frame``: the long layout of ``trs_lib.companion.pages.cells`` (``attack_label``, ``value``,
    ``label``, ``evaluation``, ``ours``, ``lo``, ``hi``, ``paper``).
    """
    import matplotlib.pyplot as plt
    import numpy as np
    attacks = list(dict.fromkeys(frame["attack_label"]))
    labels = list(dict.fromkeys(frame["label"]))
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors  # one colour per column
    colours = {lab: palette[k % len(palette)] for k, lab in enumerate(labels)}
    ncol = min(3, len(attacks))
    nrow = -(-len(attacks) // ncol)
    fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(4.0 * ncol, 3.0 * nrow + 0.6))
    width = {lab: (k - (len(labels) - 1) / 2) * 0.012 for k, lab in enumerate(labels)}
    for ax, attack in zip(axes.flat, attacks):
        g = frame[frame["attack_label"] == attack]
        xs = sorted(set(g["value"]))
        pos = {x: i for i, x in enumerate(xs)}
        for lab in labels:
            c = colours[lab]
            for evaluation, marker, ls in (("paper", "o", "-"), ("worst_case", "x", "--")):
                h = g[(g["label"] == lab) & (g["evaluation"] == evaluation)].sort_values("value")
                h = h[h["ours"].notna()]
                if not len(h):
                    continue
                x = np.array([pos[v] for v in h["value"]]) + width[lab] * len(xs) * 4
                y = h["ours"].to_numpy(float)
                lo, hi = h["lo"].to_numpy(float), h["hi"].to_numpy(float)
                err = np.vstack([y - np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi) - y])
                ax.errorbar(x, y, yerr=err, color=c, marker=marker, ls=ls, lw=1.2, ms=5, capsize=2)
            p = g[(g["label"] == lab) & (g["evaluation"] == "paper")].sort_values("value")
            p = p[p["paper"].notna()]
            if len(p):
                ax.plot(np.array([pos[v] for v in p["value"]]) + width[lab] * len(xs) * 4,
                        p["paper"].to_numpy(float), color=c,
                        marker="D", mfc="none", ls=":", lw=1, ms=6)
        param = g["param"].iloc[0]
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_xlabel("ε (L∞ budget)" if param == "eps" else f"{param} (CW constant)")
        ax.set_title(attack, fontsize=10)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(attacks):]:
        ax.axis("off")
    axes[0][0].set_ylabel("robust accuracy (%)")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=colours[l], lw=3) for l in labels]
    handles += [Line2D([], [], color="k", marker="o", ls="-"),
                Line2D([], [], color="k", marker="x", ls="--"),
                Line2D([], [], color="k", marker="D", mfc="none", ls=":")]
    names = labels + ["ours, paper's attack (95% interval)", "ours, strong attack (worst case)",
                      "paper"]
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 5), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if len(names) > 5 else 0.06, 1, 1))
    return fig


# ------------------------------------------------------------------ transfer matrices
def _annotated(ax, vals, cmap, vmin, vmax, fmt):
    import numpy as np
    ax.imshow(vals, cmap=cmap, vmin=vmin, vmax=vmax)
    n = len(vals)
    ax.set_xticks(range(n), [str(k + 1) for k in range(n)])
    ax.set_yticks(range(n), [str(k + 1) for k in range(n)])
    ax.set_xlabel("crafted on member")
    ax.set_ylabel("evaluated on member")
    mid = (vmin + vmax) / 2
    for i in range(n):
        for j in range(n):
            v = vals[i, j]
            dark = abs(v - mid) > (vmax - vmin) * 0.3 if vmin < 0 else v > mid
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="white" if dark and not np.isnan(v) else "black")


def transfer_heatmaps(frames: dict, ensembles=("vanilla", "trs"), attacks=None, title=None,
                      difference=True):
    """Figures 2-4: one annotated heatmap per (ensemble, attack); cell (i, j) is the accuracy of
    member i on examples crafted against member j. With ``difference`` a last row shows the
    second ensemble minus the first (points; positive: its members transfer less). A panel
    without a run says so."""
    import matplotlib.pyplot as plt
    attacks = attacks or list(dict.fromkeys(a for _, a in frames))
    nrow = len(ensembles) + (1 if difference and len(ensembles) == 2 else 0)
    fig, axes = plt.subplots(nrow, len(attacks), squeeze=False,
                             figsize=(3.2 * len(attacks), 3.0 * nrow))
    for c, attack in enumerate(attacks):
        mats = [frames.get((ens, attack)) for ens in ensembles]
        panels = [(f"{ens}: {attack.upper()}", m, "Blues", 0, 100, "{:.1f}")
                  for ens, m in zip(ensembles, mats)]
        if nrow > len(ensembles):
            d = None if any(m is None for m in mats) else (
                mats[1].to_numpy(dtype=float) - mats[0].to_numpy(dtype=float))
            panels.append((f"{ensembles[1]} − {ensembles[0]}: {attack.upper()} (points)", d,
                           "RdBu", -50, 50, "{:+.1f}"))
        for r, (name, mat, cmap, vmin, vmax, fmt) in enumerate(panels):
            ax = axes[r][c]
            ax.set_title(name, fontsize=9)
            if mat is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
                continue
            vals = mat if not hasattr(mat, "to_numpy") else mat.to_numpy(dtype=float)
            _annotated(ax, vals, cmap, vmin, vmax, fmt)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
