"""Named experiments of the simulator, each a set of runs that checks one claim of the paper
(docs/theory.md), and running them over seeds in parallel processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from entropic_rl.simulator.plots import plot_simulation
from entropic_rl.simulator.simulation import SimConfig, simulate, summarize

ON_POLICY = {"mini_batches": 1, "epochs": 1}
OFF_POLICY = {"mini_batches": 4, "epochs": 1}  # four optimizer steps per rollout, each sample used once


@dataclass(frozen=True)
class Run:
    group: str  # a panel of the figure, e.g. the regime
    label: str  # a line in the panel
    overrides: dict


def _regimes() -> list[tuple[str, dict]]:
    return [("on-policy", ON_POLICY), ("off-policy", OFF_POLICY)]


def experiment_runs(name: str) -> list[Run]:
    """The runs of a named experiment; each run's overrides apply on top of the base config."""
    if name == "control":  # claims 2 and 3
        return [
            Run(group, label, {**regime, "control": control})
            for group, regime in _regimes()
            for label, control in (("GRPO, no control", "none"), ("P", "P"), ("PI", "PI"))
        ]
    if name == "samples":  # claim 1
        return [
            Run(group, label, {"samples": samples, "confident_only": confident})
            for group, confident in (("all tokens", False), ("confident tokens only", True))
            for label, samples in (("GRPO (both)", "all"), ("positive only", "positive"), ("negative only", "negative"))
        ]
    if name == "threshold":  # claim 4
        return [
            Run(group, label, {**regime, "control": "PI", "threshold": threshold})
            for group, regime in _regimes()
            for label, threshold in (("PI, tau=0.95", 0.95), ("PI, tau=0 (every token)", 0.0))
        ]
    if name == "gains":  # P's steady-state error against Kp
        return [
            Run(group, f"{control} Kp={kp:g}", {**regime, "control": control, "kp": kp})
            for group, regime in _regimes()
            for control, kp in (("P", 2.0), ("P", 5.0), ("P", 10.0), ("P", 20.0), ("PI", 10.0))
        ]
    if name == "auto-gains":  # gains auto against fixed gains, on plants whose gain differs
        return [
            Run(group, label, {**plant, **controller})
            for group, plant in AUTO_GAIN_PLANTS
            for label, controller in (
                ("authors' Kp 1, Ki 0.01", {"control": "PI", "kp": 1.0, "ki": 0.01}),
                ("Kp 10, Ki 0.1", {"control": "PI", "kp": 10.0, "ki": 0.1}),
                ("gains auto", {"control": "auto"}),
            )
        ]
    raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")


AUTO_GAIN_PLANTS = (  # plant variants that change how much alpha moves entropy
    ("lr 20", {"lr": 20.0}),
    ("lr 60 (default)", {}),
    ("lr 180", {"lr": 180.0}),
    ("off-policy (4 mini-batches)", OFF_POLICY),
    ("target 0.30", {"target_entropy": 0.30}),
    ("tau 0.8", {"threshold": 0.8}),
)
EXPERIMENTS = ("control", "samples", "threshold", "gains", "auto-gains")


def run_experiment(name: str, base: SimConfig, seeds: int, workers: int | None, out_dir: Path, console=None) -> dict:
    """Every run of experiment ``name`` on top of ``base``, for ``seeds`` seeds (base.seed, base.seed + 1, ...),
    in ``workers`` processes; writes the figure and summary.json to ``out_dir`` and returns the summary."""
    runs = experiment_runs(name)
    configs = [[replace(base, **run.overrides, seed=base.seed + i) for i in range(seeds)] for run in runs]
    jobs = [cfg for per_run in configs for cfg in per_run]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    histories: dict[SimConfig, list[dict]] = {}
    columns = (TextColumn("simulate {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(name, total=len(jobs))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_simulate_job, cfg): cfg for cfg in jobs}
            for future in as_completed(futures):
                histories[futures[future]] = future.result()
                progress.advance(task)

    rows, panels = [], {}
    for run, per_run in zip(runs, configs, strict=True):
        target = per_run[0].target_entropy if per_run[0].control != "none" else None
        per_seed = [summarize(histories[cfg], target) for cfg in per_run]
        rows.append(
            {
                "group": run.group,
                "label": run.label,
                "overrides": run.overrides,
                "target_entropy": target,
                "per_seed": per_seed,
                "mean": _mean(per_seed),
            }
        )
        panels.setdefault(run.group, []).append(
            {"label": run.label, "target": target, "histories": [histories[cfg] for cfg in per_run]}
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / f"simulate_{name}.png"
    title = f"entropic simulate --experiment {name} ({seeds} seed{'s' if seeds > 1 else ''})"
    plot_simulation(panels, figure, title)
    report = {"experiment": name, "seeds": seeds, "base_config": asdict(base), "rows": rows, "figure": str(figure)}
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2))
    return report


def _simulate_job(cfg: SimConfig) -> list[dict]:
    torch.set_num_threads(1)  # the tensors are tiny: one thread per process is fastest
    return simulate(cfg)


def _mean(per_seed: list[dict]) -> dict:
    out = {}
    for key in per_seed[0]:
        values = [s[key] for s in per_seed]
        out[key] = None if any(v is None for v in values) else sum(values) / len(values)
    return out
