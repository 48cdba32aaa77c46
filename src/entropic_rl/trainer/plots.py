"""``entropic plot``: entropy, alpha, reward and accuracy of runs over steps, to a PNG."""

from __future__ import annotations

from pathlib import Path

import yaml

from entropic_rl.trainer.logger import read_metrics
from entropic_rl.util.figures import np, plt, running_mean


def plot_runs(run_dirs: list[Path], out: Path | None = None, smooth: int = 5) -> Path:
    """Entropy (with the target +-5% band), alpha, reward and accuracy over steps, runs overlaid."""
    panels = (
        ("entropy/mean", "entropy (nats)"),
        ("entropic/alpha", "alpha"),
        ("reward/mean", "reward"),
        ("reward/accuracy", "accuracy"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.4 * len(panels) + 0.5), sharex=True)
    for run_dir in run_dirs:
        records = read_metrics(run_dir)
        config_path = run_dir / "config.yaml"
        label = run_dir.name  # with the method, where the run's configuration was kept
        if config_path.is_file():
            label += f" ({yaml.safe_load(config_path.read_text())['method']['name']})"
        steps = np.array([r["step"] for r in records])
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = [r.get(key, 0.0 if key == "entropic/alpha" else np.nan) for r in records]
            if len(values) >= smooth:
                ax.plot(steps[smooth - 1 :], running_mean(values, smooth), label=label, lw=1.3)
            else:
                ax.plot(steps, values, label=label, lw=1.3)
        targets = [r["entropic/target"] for r in records if "entropic/target" in r]
        if targets:
            axes[0].fill_between(
                steps[-len(targets) :],
                0.95 * np.array(targets),
                1.05 * np.array(targets),
                color="grey",
                alpha=0.2,
                lw=0,
            )
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_ylabel(title)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("step")
    fig.suptitle(f"{smooth}-step running means; grey: target +-5%")
    fig.tight_layout()
    out = out or run_dirs[0] / "training.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
