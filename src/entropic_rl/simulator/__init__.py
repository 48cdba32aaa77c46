"""A fast simulator of RL with verifiable rewards that checks the theory of ALGORITHMS.md §2 with the
real core components (docs/theory.md)."""

from entropic_rl.simulator.experiments import EXPERIMENTS, Run, experiment_runs, run_experiment
from entropic_rl.simulator.simulation import SimConfig, Task, advantages, simulate, summarize

__all__ = [
    "EXPERIMENTS",
    "Run",
    "SimConfig",
    "Task",
    "advantages",
    "experiment_runs",
    "run_experiment",
    "simulate",
    "summarize",
]
