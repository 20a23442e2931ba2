"""Figures of the companion: training curves, transfer heatmaps, bound plots, paper-vs-ours tables."""
from __future__ import annotations

__all__ = ["plot_training_curves"]


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
