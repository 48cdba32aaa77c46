"""The ``entropic`` command line. Every command takes its settings as ``key.sub=value`` overrides
(values read as YAML), the same syntax everywhere; ``--help`` lists the fields with their defaults."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from entropic_rl.util.options import ConfigError, build, describe, parse_overrides

OVERRIDES_HELP = "settings as key.sub=value, e.g. method.name=grpo train.steps=50 (see below)"


def cmd_train(args: argparse.Namespace) -> int:
    from entropic_rl.trainer import train
    from entropic_rl.trainer.config import DEFAULT_PRESET, load_config
    from entropic_rl.trainer.loop import RunStopped

    _quiet_transformers()
    trail: list[str] = []
    try:
        if args.resume:
            config = load_config(Path(args.resume) / "config.yaml", args.overrides, trail)
            if config.run_dir().resolve() != Path(args.resume).resolve():
                config.log.out_dir = args.resume  # the run may have been moved
        else:
            config = load_config(args.config or DEFAULT_PRESET, args.overrides, trail)
        print("config: " + " + ".join(trail))
        fields = {name: value for name, value in vars(config.method).items() if name != "name" and value is not None}
        method = ", ".join(f"{name}={value}" for name, value in fields.items())
        print(f"method: {config.method.name}" + (f" ({method})" if method else ""))
        run_dir = train(config, resume=bool(args.resume), trail=trail)
    except RunStopped as exc:
        return _error(exc, RUN_STOPPED)
    print(f"run: {run_dir}  (metrics.jsonl, samples.jsonl, checkpoints/)\nplot: entropic plot {run_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from entropic_rl.methods import method_class
    from entropic_rl.trainer.compare import compare, parse_seeds
    from entropic_rl.trainer.config import DEFAULT_PRESET
    from entropic_rl.trainer.loop import RunStopped

    _quiet_transformers()
    try:
        methods = [name.strip() for name in args.methods.split(",") if name.strip()]
        if len(set(methods)) != len(methods):
            raise ValueError(f"--methods: a method is listed twice: {args.methods}")
        for name in methods:
            method_class(name.split(":")[0])
        seeds = parse_seeds(args.seeds)
        table = compare(
            args.config or DEFAULT_PRESET,
            args.overrides,
            methods,
            seeds,
            Path(args.out),
            args.eval_n,
            args.eval_problems,
        )
    except RunStopped as exc:
        return _error(exc, RUN_STOPPED)
    print(table + f"\nwritten: {Path(args.out) / 'compare.md'}, compare.json, compare.png")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from entropic_rl.trainer import gains_matrix, reproduction
    from entropic_rl.trainer.loop import RunStopped
    from entropic_rl.util.files import wait_until_released

    _quiet_transformers()
    suite = {"paper": reproduction, "gains": gains_matrix}[args.suite]
    runs, doc, figures = (
        Path(given or default) for given, default in zip((args.runs, args.doc, args.figures), suite.PATHS, strict=True)
    )
    known = [e.key for e in suite.EXPERIMENTS]
    keys = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else known
    for key in keys:
        if key not in known:
            raise ValueError(f"--only: unknown experiment {key!r}; choose from {', '.join(known)}")
    if not args.report_only:
        try:
            # the other suite's finished runs, unless --runs points this one elsewhere (e.g. to start afresh)
            others = [(Path(s.PATHS[0]), s.EXPERIMENTS) for s in (reproduction, gains_matrix) if s is not suite]
            others = others if runs == Path(suite.PATHS[0]) else []
            while True:
                reproduction.run_experiments(runs, suite.EXPERIMENTS, keys, others)
                # then auto and each cell's best fixed gains on more seeds (chosen once a cell's sweep is done)
                confirmations = gains_matrix.confirmations(runs) if suite is gains_matrix else ()
                reproduction.run_experiments(runs, confirmations, keys)
                # a run another process trains (two at once on one folder): wait for it, then go on, since
                # what comes after it (a cell's confirmation, the report) depends on it
                chosen = tuple(e for e in (*suite.EXPERIMENTS, *confirmations) if e.key in keys)
                held = reproduction.held_elsewhere(runs, chosen)
                if held is None:
                    break
                print(f"{held}: waiting for the process training it", file=sys.stderr)
                wait_until_released(held)
        except RunStopped as exc:
            return _error(exc, RUN_STOPPED)
    suite.report(runs, doc, figures)
    print(f"written: {doc}, figures in {figures}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from entropic_rl.evaluation import EvalCommand, run_eval
    from entropic_rl.trainer.checkpoint import resolve_model_dir

    _quiet_transformers()
    try:
        config = build(EvalCommand, parse_overrides(EvalCommand, args.overrides))
        if config.model is None:
            raise ConfigError("model: required, e.g. model=smollm2 or model=runs/entropic-arithmetic-seed0")
        out, table = run_eval(config, resolve_model_dir(config.model, "model"))
    except FloatingPointError as exc:
        return _error(f"{exc}: the model's weights are broken (NaN or inf)", RUN_STOPPED)
    print(table + f"\nresults: {out / 'results.json'}, {out / 'results.md'}, {out / 'samples.jsonl'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from entropic_rl.trainer.plots import plot_runs

    out = plot_runs([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None)
    print(f"figure: {out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from entropic_rl.simulator import SimConfig, experiment_runs, run_experiment

    if args.seeds < 1:
        raise ValueError("--seeds must be >= 1")
    overrides = parse_overrides(SimConfig, args.overrides)
    varied = sorted({key for run in experiment_runs(args.experiment) for key in run.overrides} & overrides.keys())
    if varied:
        raise ConfigError(f"{', '.join(varied)}: the {args.experiment} experiment varies these itself")
    base = build(SimConfig, overrides)
    out_dir = Path(args.out or f"runs/simulate-{args.experiment}")
    report = run_experiment(args.experiment, base, args.seeds, args.workers, out_dir, Console(stderr=True))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report["rows"], args.seeds)
        print(f"figure: {report['figure']}\nsummary: {out_dir / 'summary.json'}")
    return 0


def _print_table(rows: list[dict], seeds: int) -> None:
    controlled = any(row["target_entropy"] is not None for row in rows)
    table = Table(title=f"mean over {seeds} seed(s)" if seeds > 1 else None)
    for name in ("regime", "run", "H start", "H final", "accuracy"):
        table.add_column(name, justify="left" if name in ("regime", "run") else "right")
    if controlled:
        for name in ("target", "steady-state error", "tracking error", "settling step", "saturated"):
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
            cells += ["-", "-", "-", "-", "-"]
        elif controlled:
            errors = [s["relative_error"] for s in row["per_seed"]]
            error = f"{mean['relative_error']:+.1%}"
            if seeds > 1:
                error += f" [{min(errors):+.1%}, {max(errors):+.1%}]"
            settled = [s["settling_step"] for s in row["per_seed"]]
            settle = "never" if any(s is None for s in settled) else f"{max(settled)}"
            tracking = f"{mean['tracking_error']:.1%}"
            cells += [f"{row['target_entropy']:.3f}", error, tracking, settle, f"{mean['saturated_frac']:.0%}"]
        table.add_row(*cells)
    Console(width=max(120, Console().width)).print(table)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars are the ones to watch
    hf_logging.set_verbosity_error()


def _epilog(lines: list[str]) -> str:
    return "configuration (key.sub=value; shown: default (type) meaning):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from entropic_rl.evaluation import EvalCommand
    from entropic_rl.simulator import EXPERIMENTS, SimConfig
    from entropic_rl.trainer.config import DEFAULT_PRESET, config_help

    parser = argparse.ArgumentParser(prog="entropic", description="Entropy-stabilised RL for language models.")
    commands = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    train = commands.add_parser(
        "train",
        help="train a causal LM with GRPO and an entropy-control method",
        description="Train with GRPO and EntroPIC (or another method) on a verifiable task. With no arguments: the "
        f"embedded default model on 2-digit addition, with the {DEFAULT_PRESET} preset. Writes RUN_DIR/config.yaml, "
        "metrics.jsonl, samples.jsonl, checkpoints/ (and tensorboard/ when tensorboard is installed).",
        epilog=config_help(),
        formatter_class=raw,
    )
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    train.add_argument(
        "--config",
        metavar="FILE|PRESET",
        help=f"a YAML file (see configs/) or a preset name (default: {DEFAULT_PRESET}); the method's own defaults "
        "are the authors' values for an LLM",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.set_defaults(func=cmd_train)

    comp = commands.add_parser(
        "compare",
        help="train and evaluate several methods over seeds on one config; a table with confidence intervals",
        description="Run every method x seed on the same training config (one after another; finished runs are "
        "skipped, interrupted ones resumed), evaluate each on held-out problems (T 0.6, top-p 0.95), and write "
        "OUT/compare.md (mean and 95% confidence interval over seeds), compare.json and compare.png. The overrides "
        "apply to every run; method.name is set per run. Example: entropic compare --methods grpo,entropic,aec "
        "--seeds 3 train.steps=100",
        epilog=config_help(),
        formatter_class=raw,
    )
    comp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    comp.add_argument("--config", metavar="FILE|PRESET", help=f"as for train (default: {DEFAULT_PRESET})")
    comp.add_argument(
        "--methods",
        default="grpo,entropic",
        help="comma-separated methods, each NAME or NAME:field=value:... to set some of its fields, "
        "e.g. grpo,entropic,aec:target_entropy=0.3,entropic:threshold=0.5 (default grpo,entropic)",
    )
    comp.add_argument("--seeds", default="3", help="a count (3: seeds 0, 1, 2) or comma-separated seeds")
    comp.add_argument("--out", default="runs/compare", help="folder of the runs and the summary")
    comp.add_argument("--eval-n", type=int, default=8, help="held-out samples per problem (default 8)")
    comp.add_argument("--eval-problems", type=int, default=200, help="held-out problems per data set (default 200)")
    comp.set_defaults(func=cmd_compare)

    rep = commands.add_parser(
        "reproduce",
        help="the paper's claims at small scale (or gains auto's matrix): run the comparisons, write the report",
        description="Run the comparisons of a suite (each an entropic compare over 3 seeds; finished runs are "
        "skipped, interrupted ones resumed; hours on 2 cores), then write its report from the finished runs: "
        "paper: the paper's claims, each with its verdict (docs/reproduction.md); gains: gains auto against "
        "fixed gains and AEC over a matrix of plants, with issue 15's goals (docs/gains-matrix.md). "
        "Run from the repository's root (it reads configs/).",
    )
    rep.add_argument("--suite", choices=("paper", "gains"), default="paper", help="which comparisons (default paper)")
    rep.add_argument("--only", help="comma-separated experiment keys, e.g. a-worked,c-off-policy (default: all)")
    rep.add_argument("--report-only", action="store_true", help="train nothing; write the report from finished runs")
    rep.add_argument("--runs", help="folder of the comparisons (default runs/reproduction; gains: runs/gains-matrix)")
    rep.add_argument("--doc", help="the report (default docs/reproduction.md; gains: docs/gains-matrix.md)")
    rep.add_argument(
        "--figures", help="its figures (default docs/figures/reproduction; gains: docs/figures/gains-matrix)"
    )
    rep.set_defaults(func=cmd_reproduce)

    ev = commands.add_parser(
        "eval",
        help="avg@N, pass@N and pass@k of a model on JSONL/Parquet problem files",
        description="Sample N answers per problem, score them with the data set's checker (GSM8K: final number; "
        "MATH-style: last \\boxed{} with math-verify), print a table and write results.json, results.md "
        "and samples.jsonl. Field names and the reward follow the file's layout unless given. "
        "Example: entropic eval model=smollm2 data=../shared/data/gsm8k_test.jsonl limit=32 sampling.n=4",
        epilog=_epilog(describe(EvalCommand)),
        formatter_class=raw,
    )
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
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

    sim = commands.add_parser(
        "simulate",
        help="check the EntroPIC theory on a fast simulated policy",
        description="Run a simulator experiment (see docs/theory.md): prints a table, writes a PNG of entropy and "
        "alpha over steps and a summary.json. Example: entropic simulate --seeds 3 steps=300 kp=5",
        epilog=_epilog(describe(SimConfig)),
        formatter_class=raw,
    )
    sim.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="simulator fields (see below)")
    sim.add_argument(
        "--experiment",
        choices=EXPERIMENTS,
        default="control",
        help="control: no control/P/PI on- and off-policy (claims 2-3); samples: positive-/negative-only "
        "training (claim 1); threshold: confident tokens vs every token (claim 4); gains: P error vs Kp; "
        "auto-gains: gains auto against fixed gains on plants of different gain",
    )
    sim.add_argument("--seeds", type=int, default=1, help="seeds per run, starting at the config's seed (default 1)")
    sim.add_argument("--out", help="output folder (default runs/simulate-EXPERIMENT)")
    sim.add_argument("--json", action="store_true", help="print the table as JSON instead")
    sim.add_argument("--workers", type=int, help="processes (default: number of CPUs)")
    sim.set_defaults(func=cmd_simulate)
    return parser


BAD_INPUT = 2  # a configuration, file or argument the command cannot use (argparse's code too)
RUN_STOPPED = 1  # a run that stopped on a fault it cannot go on from (its last checkpoint is intact)


def _error(message, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Runs a command; bad input (``ValueError``, ``ConfigError``) is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        return _error(exc, BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
