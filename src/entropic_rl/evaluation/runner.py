"""Evaluation (ALGORITHMS.md §4): N sampled answers per problem, scored by the task's checker;
avg@N, pass@N and unbiased pass@k, with the counts of checker errors and time-outs.

The same function serves ``entropic eval`` and validation during training.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from entropic_rl.evaluation.passk import ks_up_to, summarize
from entropic_rl.models import check_sampling, generate
from entropic_rl.tasks import Example, RewardFn, score_responses
from entropic_rl.util.options import check_at_least, check_choice, option


@dataclass
class Sampling:
    n: int = option(8, "samples per problem")
    temperature: float = option(0.6, "sampling temperature (the paper's protocol: 0.6)")
    top_p: float = option(0.95, "nucleus sampling (the paper's protocol: 0.95)")
    max_new_tokens: int = option(512, "longest answer")
    batch_size: int = option(64, "sequences per generate call")
    chat_template: str = option("auto", "auto: the tokenizer's chat template if it has one; never")

    def __post_init__(self) -> None:
        for name in ("n", "max_new_tokens", "batch_size"):
            check_at_least(name, getattr(self, name), 1)
        check_sampling(self.temperature, self.top_p)
        check_choice("chat_template", self.chat_template, ("auto", "never"))


def evaluate_examples(
    model,
    tokenizer,
    examples: list[Example],
    reward_fn: RewardFn,
    sampling: Sampling,
    ks: list[int] | None = None,
    progress: bool = True,
    label: str = "eval",
) -> dict:
    """Sample ``sampling.n`` answers to each example and score them.

    Returns ``{"problems", "n", "avg@N", "pass@N", "pass@k": {k: value}, "checks": {status:
    count}, "seconds", "samples": [{"prompt", "answer", "responses", "scores"}]}``; a sample is
    correct when its score is at least 1.
    """
    n = sampling.n
    ks = ks or ks_up_to(n)
    if any(not 1 <= k <= n for k in ks):
        raise ValueError(f"k must be between 1 and n={n}, got {ks}")
    start = time.perf_counter()
    prompts = [e.prompt for e in examples for _ in range(n)]
    repeated = [e for e in examples for _ in range(n)]
    responses: list[str] = []
    columns = (TextColumn(f"{label} {{task.description}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TimeRemainingColumn(), transient=True, disable=not progress) as bar:
        task = bar.add_task("samples", total=len(prompts))
        for begin in range(0, len(prompts), sampling.batch_size):
            batch = prompts[begin : begin + sampling.batch_size]
            rollout = generate(
                model,
                tokenizer,
                batch,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens,
                chat_template=sampling.chat_template,
            )
            responses += rollout.responses
            bar.advance(task, len(batch))
    scores, checks = score_responses(reward_fn, responses, repeated)
    per_problem = [scores[i * n : (i + 1) * n] for i in range(len(examples))]
    summary = summarize([sum(s >= 1.0 for s in row) for row in per_problem], n, ks)
    return {
        "problems": len(examples),
        "n": n,
        f"avg@{n}": summary[f"avg@{n}"],
        f"pass@{n}": summary[f"pass@{n}"],
        "pass@k": {k: summary[f"pass@{k}"] for k in ks},
        "checks": {status: checks[status] for status in ("ok", "no_answer", "error", "timeout")},
        "seconds": time.perf_counter() - start,
        "samples": [
            {"prompt": e.prompt, "answer": e.answer, "responses": responses[i * n : (i + 1) * n], "scores": row}
            for i, (e, row) in enumerate(zip(examples, per_problem, strict=True))
        ],
    }


def mean_row(results: dict[str, dict]) -> dict:
    """The unweighted mean over data sets of every rate, and the summed counts."""
    rows = list(results.values())
    n = rows[0]["n"]
    checks = Counter()
    for row in rows:
        checks.update(row["checks"])
    return {
        "problems": sum(r["problems"] for r in rows),
        "n": n,
        f"avg@{n}": sum(r[f"avg@{n}"] for r in rows) / len(rows),
        f"pass@{n}": sum(r[f"pass@{n}"] for r in rows) / len(rows),
        "pass@k": {k: sum(r["pass@k"][k] for r in rows) / len(rows) for k in rows[0]["pass@k"]},
        "checks": dict(checks),
        "seconds": sum(r["seconds"] for r in rows),
    }


def markdown_table(results: dict[str, dict]) -> str:
    """One row per data set (and their mean when there are several)."""
    rows = dict(results)
    if len(rows) > 1:
        rows["mean"] = mean_row(results)
    first = next(iter(rows.values()))
    n, ks = first["n"], list(first["pass@k"])
    rates = [f"avg@{n}", *[f"pass@{k}" for k in ks], *([f"pass@{n}"] if n not in ks else [])]
    header = ["data", "problems", *rates, "errors", "time-outs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        values = {f"avg@{n}": r[f"avg@{n}"], f"pass@{n}": r[f"pass@{n}"]} | {f"pass@{k}": r["pass@k"][k] for k in ks}
        cells = [
            name,
            str(r["problems"]),
            *[f"{values[rate]:.1%}" for rate in rates],
            str(r["checks"].get("error", 0)),
            str(r["checks"].get("timeout", 0)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def data_name(path: str | Path) -> str:
    return Path(path).stem


@torch.no_grad()
def validation_metrics(model, tokenizer, datasets: dict[str, tuple[list[Example], RewardFn]], sampling: Sampling):
    """Flat metrics for metrics.jsonl: ``eval/<data>/avg@N``, ``eval/<data>/pass@N``."""
    metrics = {}
    for name, (examples, reward_fn) in datasets.items():
        result = evaluate_examples(model, tokenizer, examples, reward_fn, sampling, ks=[sampling.n], progress=False)
        n = sampling.n
        metrics[f"eval/{name}/avg@{n}"] = result[f"avg@{n}"]
        metrics[f"eval/{name}/pass@{n}"] = result[f"pass@{n}"]
    return metrics
