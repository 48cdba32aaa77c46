"""The ``entropic`` command line."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from entropic_rl.plots import plot_simulation
from entropic_rl.simulator import EXPERIMENTS, SimConfig, experiment_runs, simulate, summarize

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_overrides(pairs: list[str], types: dict[str, type]) -> dict:
    """``["key=value", ...]`` to a dict, each value converted to the field's type."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {pair!r}: expected key=value")
        if key not in types:
            raise SystemExit(f"error: --set {pair!r}: unknown field {key!r}; fields: {', '.join(types)}")
        kind = types[key]
        try:
            if kind is bool:
                if raw.lower() not in _TRUE + _FALSE:
                    raise ValueError
                out[key] = raw.lower() in _TRUE
            else:
                out[key] = kind(raw)
        except ValueError:
            raise SystemExit(f"error: --set {pair!r}: {key} must be a {kind.__name__}") from None
    return out


def _simulate_job(cfg: SimConfig) -> list[dict]:
    torch.set_num_threads(1)  # the tensors are tiny: one thread per process is fastest
    return simulate(cfg)


def cmd_simulate(args: argparse.Namespace) -> int:
    runs = experiment_runs(args.experiment)
    overrides = parse_overrides(args.set, SimConfig.field_types())
    varied = sorted({key for run in runs for key in run.overrides} & overrides.keys())
    if varied:
        raise SystemExit(f"error: --set {', '.join(varied)}: the {args.experiment} experiment varies these itself")
    try:
        base = SimConfig(**overrides)
        configs = [[replace(base, **run.overrides, seed=base.seed + i) for i in range(args.seeds)] for run in runs]
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None

    jobs = [cfg for per_run in configs for cfg in per_run]
    workers = max(1, min(args.workers or os.cpu_count() or 1, len(jobs)))
    histories: dict[SimConfig, list[dict]] = {}
    console = Console(stderr=True)
    columns = (TextColumn("simulate {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=args.json) as progress:
        task = progress.add_task(args.experiment, total=len(jobs))
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

    out_dir = Path(args.out or f"runs/simulate-{args.experiment}")
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / f"simulate_{args.experiment}.png"
    title = f"entropic simulate --experiment {args.experiment} ({args.seeds} seed{'s' if args.seeds > 1 else ''})"
    plot_simulation(panels, figure, title)
    report = {
        "experiment": args.experiment,
        "seeds": args.seeds,
        "base_config": asdict(base),
        "rows": rows,
        "figure": str(figure),
    }
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(rows, args.seeds)
        print(f"figure: {figure}\nsummary: {out_dir / 'summary.json'}")
    return 0


def _mean(per_seed: list[dict]) -> dict:
    out = {}
    for key in per_seed[0]:
        values = [s[key] for s in per_seed]
        out[key] = None if any(v is None for v in values) else sum(values) / len(values)
    return out


def _print_table(rows: list[dict], seeds: int) -> None:
    controlled = any(row["target_entropy"] is not None for row in rows)
    table = Table(title=f"mean over {seeds} seed(s)" if seeds > 1 else None)
    for name in ("regime", "run", "H start", "H final", "accuracy"):
        table.add_column(name, justify="left" if name in ("regime", "run") else "right")
    if controlled:
        for name in ("target", "steady-state error", "settling step", "saturated"):
            table.add_column(name, justify="right")
    for row in rows:
        mean = row["mean"]
        cells = [
            row["group"],
            row["label"],
            f"{mean['initial_entropy']:.3f}",
            f"{mean['final_entropy']:.3f}",
            f"{mean['final_accuracy']:.2f}",
        ]
        if controlled and row["target_entropy"] is None:
            cells += ["-", "-", "-", "-"]
        elif controlled:
            errors = [s["relative_error"] for s in row["per_seed"]]
            error = f"{mean['relative_error']:+.1%}"
            if seeds > 1:
                error += f" [{min(errors):+.1%}, {max(errors):+.1%}]"
            settled = [s["settling_step"] for s in row["per_seed"]]
            settle = "never" if any(s is None for s in settled) else f"{max(settled)}"
            cells += [f"{row['target_entropy']:.3f}", error, settle, f"{mean['saturated_frac']:.0%}"]
        table.add_row(*cells)
    Console(width=max(120, Console().width)).print(table)


def cmd_train(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from entropic_rl.config import ConfigError, load_config
    from entropic_rl.trainer import train

    hf_logging.disable_progress_bar()  # our own progress bar is the one to watch
    hf_logging.set_verbosity_error()

    try:
        if args.resume:
            config = load_config(Path(args.resume) / "config.yaml", args.overrides)
            if config.run_dir().resolve() != Path(args.resume).resolve():
                config.log.out_dir = args.resume  # the run may have been moved
        else:
            config = load_config(args.config, args.overrides)
        run_dir = train(config, resume=bool(args.resume))
    except (ConfigError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"run: {run_dir}  (metrics.jsonl, samples.jsonl, checkpoints/)\nplot: entropic plot {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from entropic_rl.models import choose_device, load_model, resolve_model_path
    from entropic_rl.rewards import get_reward
    from entropic_rl.tasks import FileTask
    from entropic_rl.trainer.checkpoint import latest_checkpoint
    from entropic_rl.trainer.evaluation import Sampling, data_name, evaluate_examples, markdown_table, mean_row

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        ks = [int(k) for k in args.k.split(",")] if args.k else None
    except ValueError:
        raise SystemExit(f"error: --k: expected comma-separated integers, got {args.k!r}") from None
    try:
        model_dir = resolve_model_path(args.model, "--model")
        if (model_dir / "checkpoints").is_dir():  # a run directory: its latest checkpoint
            model_dir = latest_checkpoint(model_dir) or model_dir
        datasets = {}
        for path in args.data:
            data = FileTask(path, args.prompt_field, args.answer_field, template=args.template, limit=args.limit)
            datasets[data_name(path)] = (data.examples_list, get_reward(args.reward or data.default_reward))
        model, tokenizer = load_model(model_dir, args.dtype, choose_device(args.device))
        sampling = Sampling(
            args.n, args.temperature, args.top_p, args.max_new_tokens, args.batch_size, args.chat_template
        )
        results = {}
        for name, (examples, reward_fn) in datasets.items():
            torch.manual_seed(args.seed)
            results[name] = evaluate_examples(model, tokenizer, examples, reward_fn, sampling, ks, label=name)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = Path(args.out or f"evals/{model_dir.name}")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.jsonl").open("w") as f:
        for name, result in results.items():
            for sample in result.pop("samples"):
                f.write(json.dumps({"data": name, **sample}) + "\n")
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    report = {"model": str(model_dir), "settings": settings, "results": results}
    if len(results) > 1:
        report["mean"] = mean_row(results)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    table = markdown_table(results)
    (out / "results.md").write_text(f"# {model_dir}\n\n{table}")
    print(table + f"\nresults: {out / 'results.json'}, {out / 'results.md'}, {out / 'samples.jsonl'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from entropic_rl.plots import plot_runs

    try:
        out = plot_runs([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"figure: {out}")
    return 0


def _config_epilog() -> str:
    from entropic_rl.config import Config

    lines = ["configuration (override with key.sub=value; defaults shown):"]
    for section, values in Config().to_dict().items():
        if isinstance(values, dict):
            lines.append(f"  {section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        else:
            lines.append(f"  {section}={values}")
    lines.append("  method.name: entropic | entropic-reference | grpo (grpo has no other method fields)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entropic", description="Entropy-stabilised RL for language models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a causal LM with GRPO and an entropy-control method",
        description="Train with GRPO and EntroPIC (or another method) on a verifiable task. With no arguments: the "
        "embedded default model on 2-digit addition. Writes RUN_DIR/config.yaml, metrics.jsonl, samples.jsonl, "
        "checkpoints/ (and tensorboard/ when tensorboard is installed).",
        epilog=_config_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. method.name=grpo train.steps=50")
    train.add_argument("--config", help="a YAML file (see configs/)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.set_defaults(func=cmd_train)

    ev = commands.add_parser(
        "eval",
        help="avg@N, pass@N and pass@k of a model on JSONL/Parquet problem files",
        description=(
            "Sample N answers per problem, score them with the data set's checker (GSM8K: final number; "
            "MATH-style: last \\boxed{} with math-verify), print a table and write results.json, results.md "
            "and samples.jsonl. Field names and the reward follow the file's layout unless given."
        ),
    )
    ev.add_argument(
        "--model", required=True, help="a Hugging Face model folder, a checkpoint, a run directory, or smollm2"
    )
    ev.add_argument("--data", required=True, action="append", help="a .jsonl or .parquet file (repeat for several)")
    ev.add_argument("--n", type=int, default=8, help="samples per problem (default 8)")
    ev.add_argument("--k", help="comma-separated k for pass@k (default 1,2,4,... up to n)")
    ev.add_argument("--limit", type=int, help="only the first LIMIT problems of each file")
    ev.add_argument("--template", default="plain", help="plain | boxed | a string containing {prompt}")
    ev.add_argument("--prompt-field", help="default: the first of prompt, question, problem")
    ev.add_argument("--answer-field", default="answer")
    ev.add_argument("--reward", help="checker by name or module:function (default: from the file's layout)")
    ev.add_argument("--temperature", type=float, default=0.6)
    ev.add_argument("--top-p", type=float, default=0.95)
    ev.add_argument("--max-new-tokens", type=int, default=512)
    ev.add_argument("--batch-size", type=int, default=64, help="sequences per generate call")
    ev.add_argument("--chat-template", default="auto", choices=("auto", "never"))
    ev.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ev.add_argument("--device", default="auto")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", help="output folder (default evals/<model folder name>)")
    ev.set_defaults(func=cmd_eval)

    plot = commands.add_parser(
        "plot",
        help="plot entropy, alpha, reward and accuracy of runs",
        description="Draw entropy (with the target band), alpha, reward and accuracy over "
        "steps for one or more runs, overlaid, to a PNG.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", help="PNG path (default RUN_DIR/training.png of the first run)")
    plot.set_defaults(func=cmd_plot)

    fields = ", ".join(f"{name}={value}" for name, value in asdict(SimConfig()).items())
    sim = commands.add_parser(
        "simulate",
        help="check the EntroPIC theory on a fast simulated policy",
        description="Run a simulator experiment (see docs/theory.md): prints a table, writes a PNG of entropy and "
        "alpha over steps and a summary.json.",
        epilog=f"fields for --set (defaults): {fields}",
    )
    sim.add_argument(
        "--experiment",
        choices=EXPERIMENTS,
        default="control",
        help="control: no control/P/PI on- and off-policy (claims 2-3); samples: positive-/negative-only "
        "training (claim 1); threshold: confident tokens vs every token (claim 4); gains: P error vs Kp",
    )
    sim.add_argument("--seeds", type=int, default=1, help="seeds per run, starting at the config's seed (default 1)")
    sim.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a simulator field, e.g. --set steps=300 --set kp=5 (repeatable)",
    )
    sim.add_argument("--out", help="output folder (default runs/simulate-EXPERIMENT)")
    sim.add_argument("--json", action="store_true", help="print the table as JSON instead")
    sim.add_argument("--workers", type=int, help="processes (default: number of CPUs)")
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "seeds", 1) < 1:
        raise SystemExit("error: --seeds must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
