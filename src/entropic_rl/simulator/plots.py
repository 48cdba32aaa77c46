"""The simulator's figure: entropy and alpha over optimizer steps, one column per regime."""

from __future__ import annotations

from pathlib import Path

from entropic_rl.util.figures import np, plt, running_mean


def plot_simulation(panels: dict[str, list[dict]], path: Path, title: str, smooth: int = 20) -> None:
    """One column per panel; entropy on top (with the target +-5% band), alpha below.

    ``panels[group]`` is a list of ``{"label", "target" (or None), "histories": [history per seed]}``;
    curves are ``smooth``-step running means, averaged over seeds.
    """
    with_alpha = any(line["target"] is not None for lines in panels.values() for line in lines)
    n_rows = 2 if with_alpha else 1
    fig, axes = plt.subplots(
        n_rows, len(panels), figsize=(6 * len(panels), 3.2 * n_rows + 0.6), squeeze=False, sharex="col"
    )
    for col, (group, lines) in enumerate(panels.items()):
        ax_h = axes[0, col]
        for line in lines:
            curves = [running_mean([h["entropy"] for h in run], smooth) for run in line["histories"]]
            x = np.arange(len(curves[0])) + min(smooth, len(curves[0])) - 1
            ax_h.plot(x, np.mean(curves, axis=0), label=line["label"], lw=1.2)
            if with_alpha:
                alphas = [running_mean([h["alpha"] for h in run], smooth) for run in line["histories"]]
                axes[1, col].plot(x, np.mean(alphas, axis=0), lw=1.2)
        targets = {line["target"] for line in lines if line["target"] is not None}
        for target in targets:
            ax_h.axhspan(0.95 * target, 1.05 * target, color="grey", alpha=0.2, lw=0)
            ax_h.axhline(target, color="grey", ls=":", lw=1)
        ax_h.set_title(group)
        ax_h.set_ylabel("entropy (nats)")
        ax_h.legend(fontsize=8)
        if with_alpha:
            axes[1, col].axhline(0.0, color="grey", lw=0.5)
            axes[1, col].set_ylabel("alpha")
        axes[-1, col].set_xlabel("optimizer step")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
