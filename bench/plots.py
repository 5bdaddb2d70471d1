"""Figures from leaderboard tables (matplotlib, headless). Torch-free."""
from pathlib import Path

import pandas as pd


def accuracy_vs_params(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Mean test top-1 against tunable parameters (log x), one labelled point per row with a mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = table.dropna(subset=["mean", "tunable_params"])
    for backbone, group in rows.groupby(level="backbone"):
        ax.scatter(group["tunable_params"], group["mean"], label=backbone, s=36, zorder=3)
        for (_, label), r in group.iterrows():
            ax.annotate(label, (r["tunable_params"], r["mean"]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("tunable parameters, head included (log scale)")
    ax.set_ylabel("mean test top-1 (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if rows.index.get_level_values("backbone").nunique() > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
