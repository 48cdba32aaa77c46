"""Evaluation (ALGORITHMS.md §4): avg@N, pass@N and unbiased pass@k of sampled answers, the runner
shared by ``entropic eval`` and validation during training, and the ``entropic eval`` command."""

from entropic_rl.evaluation.command import EvalCommand, run_eval
from entropic_rl.evaluation.passk import ks_up_to, pass_at_k, summarize
from entropic_rl.evaluation.runner import (
    Sampling,
    data_name,
    evaluate_examples,
    markdown_table,
    mean_row,
    validation_metrics,
)

__all__ = [
    "EvalCommand",
    "Sampling",
    "data_name",
    "evaluate_examples",
    "ks_up_to",
    "markdown_table",
    "mean_row",
    "pass_at_k",
    "run_eval",
    "summarize",
    "validation_metrics",
]
