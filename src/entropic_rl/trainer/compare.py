"""``entropic compare``: methods x seeds on one training configuration and budget.

Each run trains in ``OUT/<method>-seed<seed>`` one after another, on the configuration with the
run's method set last: method fields of the configuration and overrides apply to the runs of the
method they were written for, and the other methods start from their own defaults. A finished run
(evaluated, or checkpointed at its last step) is skipped and an interrupted one resumed from its
last checkpoint, so the command can be stopped and started again. A run that another process is
training (two ``entropic compare`` on one ``--out``) is passed over, and left out of the summary
until it is finished.
Each finished run is then evaluated on held-out problems at the paper's protocol (T 0.6, top-p
0.95; the synthetic task's held-out problems or ``eval.data``), once. The summary gives, per method,
the mean over seeds and its 95% confidence interval of:

- ``avg@N`` and ``pass@N`` held out; the final training accuracy (last 10% of steps);
- entropy tracking after settling, against the method's own target (``entropic/target``, ``aec/target``) or, for a
  method without one, the target of the comparison's EntroPIC runs: the settling step (the first
  step after which the 10-step running mean of ``entropy/mean`` stays within ±10% of the target),
  the tracking error (mean |H - H_tar| / H_tar after settling, or over the second half of a run
  that never settles), the bias (mean (H - H_tar) / H_tar over the same steps: below target when
  negative), the oscillation (std of H over the same steps); the final entropy (last 10% of steps);
- the fraction of steps with alpha saturated, and the wall time.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

from entropic_rl.evaluation import Sampling, evaluate_examples
from entropic_rl.evaluation.statistics import below_verdict, format_ci
from entropic_rl.models import choose_device, load_model
from entropic_rl.tasks import build_task
from entropic_rl.trainer.checkpoint import intact_checkpoint, latest_checkpoint
from entropic_rl.trainer.config import Config, load_config
from entropic_rl.trainer.logger import read_metrics
from entropic_rl.trainer.loop import train, validation_sets
from entropic_rl.util.figures import np, plt, running_mean
from entropic_rl.util.files import held_by_this_process, write_atomically

SETTLING_BAND = 0.10  # ±10% of the target
SETTLING_WINDOW = 10  # steps of the running mean that must stay in the band
HELD_BOUND = 0.10  # "entropy held": tracking error below this
KAPPA_WINDOW = 100  # gains: auto: kappa settled is the median over the last steps


def compare(
    config_source: str | Path | None,
    overrides: list[str],
    methods: list[str],
    seeds: list[int],
    out: Path,
    eval_n: int = 8,
    eval_problems: int = 200,
) -> str:
    """Train and evaluate every (method, seed) not done yet; write ``compare.md``, ``compare.json``
    and ``compare.png`` to ``out``; return the Markdown table."""
    runs: dict[str, list[Path]] = {method: [] for method in methods}
    for seed in seeds:  # seed by seed, so that an unfinished comparison has every method on its first seeds
        for method in methods:
            run_dir = out / f"{method}-seed{seed}"
            trail: list[str] = []
            run = [*method_overrides(method), f"seed={seed}", f"log.out_dir={run_dir}"]
            config = load_config(config_source, overrides, trail, then=run)
            with held_by_this_process(run_dir) as held:
                if not held:
                    print(f"{run_dir}: another process is training it; passed over", file=sys.stderr)
                elif not evaluated(config):
                    train_once(config, trail)
                    evaluate_once(config, eval_n, eval_problems)
            if (run_dir / "heldout.json").is_file():
                runs[method].append(run_dir)
    runs = {method: dirs for method, dirs in runs.items() if dirs}
    summaries, reference_target = summarize_methods(runs)
    table = markdown(summaries, eval_n)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "compare.md", table)
    write_atomically(out / "compare.json", json.dumps(summaries, indent=1))
    figure(runs, reference_target, out / "compare.png")
    return table


def summarize_methods(runs: dict[str, list[Path]]) -> tuple[dict[str, list[dict]], float | None]:
    """Each finished run's numbers per method, its entropy tracked against its own target or, for a
    method without one, the target of the comparison's EntroPIC runs (returned too)."""
    summaries = {method: [summarize(run_dir) for run_dir in dirs] for method, dirs in runs.items()}
    reference_target = next(
        (s["target"] for per_seed in summaries.values() for s in per_seed if s["target"] is not None), None
    )
    for per_seed in summaries.values():
        for summary in per_seed:
            summary.update(tracking(summary.pop("entropy"), summary["target"] or reference_target))
    return summaries, reference_target


def method_overrides(method: str) -> list[str]:
    """``NAME`` or ``NAME:field=value:field=value``: a method with some of its fields set, e.g.
    ``aec:target_entropy=0.3`` or ``entropic:threshold=0.5`` (the run layer's overrides). A dotted
    field is a key of the whole configuration, for settings a method's authors tie to it:
    ``clip-cov:train.clip_high=1.0``."""
    name, *fields = method.split(":")
    for field in fields:
        if "=" not in field:
            raise ValueError(f"--methods: {method!r}: expected NAME:field=value, got {field!r}")
    return [f"method.name={name}", *(f if "." in f.split("=")[0] else f"method.{f}" for f in fields)]


def evaluated(config: Config) -> bool:
    """The run was trained to its end and evaluated (its metrics and ``heldout.json`` are enough:
    its checkpoints may be gone). A run evaluated at another number of steps than the configuration
    asks for is refused rather than extended or reused: its held-out scores are not that model's."""
    run_dir = config.run_dir()
    if not (run_dir / "heldout.json").is_file():
        return False
    last = trained_steps(run_dir)
    if last != config.train.steps:
        raise ValueError(
            f"{run_dir}: trained and evaluated at {last} steps, but train.steps is {config.train.steps}; "
            "compare into another --out"
        )
    return True


def trained_steps(run_dir: Path) -> int:
    """The last step in the run's metrics, skipped steps included (0: none)."""
    return max((r["step"] for r in read_metrics(run_dir, skipped=True)), default=0)


def train_once(config: Config, trail: list[str]) -> None:
    """Train the run to its last step: skipped when done, resumed when interrupted."""
    run_dir = config.run_dir()
    checkpoint, damaged = intact_checkpoint(run_dir)
    if checkpoint is not None and json.loads((checkpoint / "state.json").read_text())["step"] >= config.train.steps:
        return
    if checkpoint is None and damaged:  # never start such a run again silently: its results would be lost
        raise ValueError(f"{run_dir}: no intact checkpoint to resume from: {'; '.join(damaged)}")
    if checkpoint is None:  # killed before its first checkpoint: nothing to resume from
        for name in ("metrics.jsonl", "samples.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
    train(config, resume=checkpoint is not None, trail=trail)


def evaluate_once(config: Config, n: int, problems: int) -> None:
    """Held-out avg@N and pass@N of the run's final model, at T 0.6 and top-p 0.95, written once,
    with each problem's number of correct samples (``correct``, in the data set's order)."""
    run_dir = config.run_dir()
    path = run_dir / "heldout.json"
    if path.is_file():
        return
    held_out = dataclasses.replace(config, eval=dataclasses.replace(config.eval, problems=problems, n=n))
    sets = validation_sets(held_out, build_task(config.task, config.seed))
    model, tokenizer = load_model(latest_checkpoint(run_dir), config.model.dtype, choose_device(config.model.device))
    sampling = Sampling(n, 0.6, 0.95, config.rollout.max_new_tokens, chat_template=config.model.chat_template)
    results = {}
    for name, (examples, reward_fn) in sets.items():
        torch.manual_seed(config.seed)
        result = evaluate_examples(model, tokenizer, examples, reward_fn, sampling, ks=[n], label=name)
        results[name] = {key: result[key] for key in (f"avg@{n}", f"pass@{n}", "problems", "checks")}
        results[name]["correct"] = [sum(score >= 1.0 for score in s["scores"]) for s in result["samples"]]
    write_atomically(path, json.dumps(results, indent=1))


def summarize(run_dir: Path) -> dict:
    """One run's numbers (the entropy series kept for ``tracking``)."""
    records = read_metrics(run_dir)
    heldout = json.loads((run_dir / "heldout.json").read_text())
    first, last = records[: max(1, len(records) // 10)], records[-max(1, len(records) // 10) :]
    targets = [value for r in records for key, value in r.items() if key.endswith("/target")]  # the method's own
    saturated = [r["entropic/saturated"] for r in records if "entropic/saturated" in r]
    kappa = [r["entropic/kappa"] for r in records if "entropic/kappa" in r]  # gains: auto only
    rates = {
        prefix: [v for result in heldout.values() for k, v in result.items() if k.startswith(prefix)]
        for prefix in ("avg@", "pass@")
    }
    return {
        "run": run_dir.name,
        "entropy": [r["entropy/mean"] for r in records],
        "target": statistics.fmean(targets[-len(targets) // 2 :]) if targets else None,
        "initial_entropy": statistics.fmean(r["entropy/mean"] for r in first),  # first 10% of steps
        "final_entropy": statistics.fmean(r["entropy/mean"] for r in last),
        "final_accuracy": statistics.fmean(r["reward/accuracy"] for r in last),
        "avg@N": statistics.fmean(rates["avg@"]),  # the mean over the held-out data sets
        "pass@N": statistics.fmean(rates["pass@"]),
        "saturated": statistics.fmean(saturated) if saturated else None,
        "kappa": statistics.median(kappa[-KAPPA_WINDOW:]) if kappa else None,  # where auto's gain settled
        "wall_time": sum(r["perf/step_time"] for r in records),
    }


def tracking(entropy: list[float], target: float | None) -> dict:
    """Settling step, tracking error, bias (mean signed relative error) and oscillation of an
    entropy series against a target."""
    if target is None or not entropy:
        return {"settling_step": None, "tracking_error": None, "bias": None, "oscillation": None}
    smooth = running_mean(entropy, SETTLING_WINDOW)
    outside = np.nonzero(np.abs(smooth - target) > SETTLING_BAND * target)[0]
    if len(outside) == 0:
        settled = min(SETTLING_WINDOW, len(entropy))
    elif outside[-1] + 1 < len(smooth):
        settled = int(outside[-1]) + 1 + min(SETTLING_WINDOW, len(entropy))
    else:
        settled = None
    if settled is not None and settled >= len(entropy):  # settles only as the run ends: no steps after it
        settled = None
    after = np.asarray(entropy[settled if settled is not None else len(entropy) // 2 :])
    return {
        "settling_step": settled,
        "tracking_error": float(np.mean(np.abs(after - target)) / target) if len(after) else None,
        "bias": float(np.mean(after - target) / target) if len(after) else None,
        "oscillation": float(np.std(after)) if len(after) else None,
    }


def markdown(summaries: dict[str, list[dict]], n: int) -> str:
    """The table of ``summaries``; a method with fewer seeds than the most has its count beside it."""
    seeds = max(len(per_seed) for per_seed in summaries.values())
    columns = [
        (f"held-out avg@{n}", "avg@N", True),
        (f"held-out pass@{n}", "pass@N", True),
        ("final train accuracy", "final_accuracy", True),
        ("final entropy", "final_entropy", False),
        ("tracking error", "tracking_error", True),
        ("bias", "bias", True),
        ("oscillation (std H)", "oscillation", False),
        ("alpha saturated", "saturated", True),
        ("wall time s", "wall_time", False),
    ]
    header = ["method", *[c[0] for c in columns], "settling step", f"entropy held (error < {HELD_BOUND:.0%})"]
    lines = [
        f"Mean ± 95% confidence interval over {seeds} seed(s); settling: the 10-step running mean within "
        f"±{SETTLING_BAND:.0%} of the target from then on (runs that never settle: never).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method, per_seed in summaries.items():
        cells = [method if len(per_seed) == seeds else f"{method} ({len(per_seed)} seeds)"]
        for _, key, percent in columns:
            cells.append(format_ci([s[key] for s in per_seed if s[key] is not None], percent))
        settling = [s["settling_step"] for s in per_seed]
        cells.append("never" if any(s is None for s in settling) else format_ci(settling))
        errors = [s["tracking_error"] for s in per_seed if s["tracking_error"] is not None]
        cells.append(below_verdict(errors, HELD_BOUND) if errors else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(runs: dict[str, list[Path]], target: float | None, path: Path, smooth: int = 5) -> None:
    """Entropy and training accuracy per method: the mean over seeds, and the seeds' range as a band."""
    fig, axes = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for method, dirs in runs.items():
        records = [read_metrics(d) for d in dirs]
        length = min(len(r) for r in records)
        for ax, key in zip(axes, ("entropy/mean", "reward/accuracy"), strict=True):
            curves = np.array([running_mean([r[key] for r in rec[:length]], smooth) for rec in records])
            steps = np.arange(curves.shape[1]) + min(smooth, length)
            (line,) = ax.plot(steps, curves.mean(0), label=f"{method} ({len(dirs)} seeds)", lw=1.3)
            ax.fill_between(steps, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2, lw=0)
    if target is not None:
        axes[0].axhspan((1 - SETTLING_BAND) * target, (1 + SETTLING_BAND) * target, color="grey", alpha=0.2, lw=0)
    axes[0].set_ylabel("entropy (nats)")
    axes[1].set_ylabel("training accuracy")
    axes[1].set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{smooth}-step running means; bands: range over seeds; grey: target ±{SETTLING_BAND:.0%}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` lists them."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds: expected a count or comma-separated seeds, got {text!r}") from None
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(f"--seeds must be >= 1, got {values[0]}")
        return list(range(values[0]))
    return values
