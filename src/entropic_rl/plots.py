"""Figures drawn from run histories (matplotlib, written to PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never needs a display
import matplotlib.pyplot as plt
import numpy as np


def running_mean(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


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


def plot_runs(run_dirs: list[Path], out: Path | None = None, smooth: int = 5) -> Path:
    """Entropy (with the target +-5% band), alpha, reward and accuracy over steps, runs overlaid."""
    import yaml

    from entropic_rl.trainer.logger import read_metrics

    panels = (("entropy", "entropy (nats)"), ("alpha", "alpha"), ("reward_mean", "reward"), ("accuracy", "accuracy"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.4 * len(panels) + 0.5), sharex=True)
    for run_dir in run_dirs:
        records = read_metrics(run_dir)
        config_path = run_dir / "config.yaml"
        method = yaml.safe_load(config_path.read_text())["method"]["name"] if config_path.is_file() else "?"
        label = f"{run_dir.name} ({method})"
        steps = np.array([r["step"] for r in records])
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = [r.get(key, 0.0 if key == "alpha" else np.nan) for r in records]
            if len(values) >= smooth:
                ax.plot(steps[smooth - 1 :], running_mean(values, smooth), label=label, lw=1.3)
            else:
                ax.plot(steps, values, label=label, lw=1.3)
        targets = [r["target"] for r in records if "target" in r]
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
