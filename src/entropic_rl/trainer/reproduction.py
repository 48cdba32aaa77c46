"""``entropic reproduce``: the paper's claims (ALGORITHMS.md §2) at small scale, every number from
``entropic compare`` over seeds, written to one report (docs/reproduction.md).

Each experiment is one comparison: a configuration, methods and seeds, in ``RUNS/<key>``. The command
runs the comparisons not done yet (a finished run is skipped, an interrupted one resumed), then writes
the report from every run that has finished: per experiment the comparison's table, its figure, and
the verdict on each claim it tests, computed from the runs (means over seeds with a 95% interval,
paired by seed where two methods are compared). An experiment with no finished run is listed with
the command that runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entropic_rl.evaluation.statistics import (
    below_verdict,
    difference_verdict,
    format_ci,
    paired_problem_variance,
    seeds_needed,
)
from entropic_rl.trainer.compare import (
    HELD_BOUND,
    compare,
    figure,
    markdown,
    method_overrides,
    summarize_methods,
    trained_steps,
)
from entropic_rl.trainer.config import load_config
from entropic_rl.trainer.logger import read_metrics
from entropic_rl.util.files import folder_written_atomically, held_by_this_process

EVAL_N = 8  # the paper's N for MATH-sized sets, at T 0.6 and top-p 0.95 (compare's defaults)
PATHS = ("runs/reproduction", "docs/reproduction.md", "docs/figures/reproduction")  # runs, report, figures


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    config: str | None  # a YAML file or a preset; None: the embedded preset
    methods: tuple[str, ...]
    seeds: int = 3
    about: str = ""
    overrides: tuple[str, ...] = ()  # key=value on top of the configuration, for every method
    problems: int = 200  # held-out problems per data set

    def run_dir(self, runs: Path, method: str, seed: int) -> Path:
        """Where ``entropic compare`` (``command``) writes the run of ``method`` and ``seed``."""
        return runs / self.key / f"{method}-seed{seed}"

    def command(self, runs: Path) -> str:
        config = f" --config {self.config}" if self.config else ""
        overrides = "".join(f" {o}" for o in self.overrides)
        problems = f" --eval-problems {self.problems}" if self.problems != 200 else ""
        return (
            f"entropic compare{config} --methods {','.join(self.methods)} --seeds {self.seeds}{problems} "
            f"--out {runs / self.key}{overrides}"
        )


WORKED = "configs/worked.yaml"
# The fixed gains every `entropic` row here ran with (the embedded preset's), named in each command so
# that these runs stay what the commands say whatever the preset holds.
FIXED = ("method.kp=10.0", "method.ki=0.1")
PRESET = "target_entropy=0.3:kp=10.0:ki=0.1:threshold=0.8"  # the preset's method fields and FIXED, for other methods
EXPERIMENTS = (
    Experiment(
        "a-worked",
        "EntroPIC against GRPO (and AEC) on worked 3-digit addition",
        WORKED,
        ("grpo", "entropic", "aec:target_entropy=0.1", "entropic:gains=auto", "aec-trl:target_entropy=0.1"),
        about="The LLM-like task: the response works the sum out with its carries in one of several "
        "equivalent phrasings, and only the final number is checked (docs/training.md). Target 0.1 nats; "
        "`entropic` with fixed gains K_p 10, K_i 0.1 and with `gains: auto` (docs/control.md); AEC at "
        "Skywork-OR1's settings (`aec`) and at TRL's (`aec-trl`).",
        overrides=FIXED,
    ),
    Experiment(
        "a-default",
        "EntroPIC against GRPO on the default task (2-digit addition)",
        None,
        ("grpo", "entropic"),
        about="`entropic train` with no arguments: the embedded model, target 0.3 nats, fixed gains K_p 10, K_i 0.1.",
        overrides=FIXED,
    ),
    Experiment(
        "b-targets",
        "Three targets on worked addition",
        WORKED,
        ("grpo", "entropic:target_entropy=0.05", "entropic", "entropic:target_entropy=0.2"),
        about="Targets below, near and above the entropy the warm-started model starts from (about 0.14 nats). "
        "`grpo` and `entropic` are a-worked's runs (the same configuration and seeds, copied, not trained again).",
        overrides=FIXED,
    ),
    Experiment(
        "c-off-policy",
        "Off-policy (4 mini-batches per rollout): P against PI",
        "configs/off-policy.yaml",
        ("entropic:ki=0.0", "entropic"),
        about="Default task, each rollout split into 4 optimizer steps, so the PPO ratio and clipping are live.",
        overrides=FIXED,
    ),
    Experiment(
        "d-threshold",
        "Confident tokens only (threshold 0.5, 0.8, 0.95) against every token (threshold 0)",
        None,
        ("entropic:threshold=0.5", "entropic", "entropic:threshold=0.95", "entropic:threshold=0.0"),
        about="Default task; `entropic` is the preset's threshold, 0.8.",
        overrides=FIXED,
    ),
    Experiment(
        "e-reference",
        "This project's EntroPIC against the authors' code path (`entropic-reference`)",
        None,
        ("entropic", f"entropic-reference:{PRESET}", "entropic-reference"),
        about="Default task; `entropic-reference` is the authors' loss as their fork computes it (docs/core.md), "
        "first with the preset's target and threshold and `entropic`'s gains, then with its own defaults, the "
        "authors' (target 0.1, K_p 1, K_i 0.01, threshold 0.95): a method's fields in the preset apply to "
        "`entropic` only.",
        overrides=FIXED,
    ),
    Experiment(
        "f-baselines",
        "Every baseline side by side (on-policy: one optimizer step per rollout)",
        None,
        (
            "grpo",
            "entropic",
            "aec:target_entropy=0.3",
            "aec-trl:target_entropy=0.3",
            "entropy-bonus",
            "aent",
            "clip-cov",
            "nsr",
            "w-reinforce",
        ),
        about="Default task; each baseline at its authors' released settings (docs/training.md, baselines), "
        "where a setting is on an LLM's entropy scale put at this run's target by one rule: the method's entropy "
        "level at the target, 0.3 nats. `aec` is Skywork-OR1's settings (step 1e-4, cap 5e-3), `aec-trl` TRL's "
        "(step 5e-3, cap 1.0, the training pass's entropy); AEnt's released band [0.1, 0.5] is centred on 0.3 "
        "already. `clip-cov` acts here through its covariance selection (its clip ratio, 1 in its authors' "
        "scripts, does nothing at one step per rollout); its authors' off-policy setting is in h-off-policy. "
        "`kl-cov` is plain GRPO on-policy (lp equals lp_old, so its penalty has a zero gradient): it is in "
        "h-off-policy only. `nsr` and `w-reinforce` without the 1e-3 entropy bonus and 4 steps per rollout of "
        "their authors' scripts.",
        overrides=FIXED,
    ),
    Experiment(
        "h-off-policy",
        "The baselines that act off-policy, where they act (4 optimizer steps per rollout)",
        "configs/off-policy.yaml",
        ("grpo", "entropic", "clip-cov:train.clip_low=1.0:train.clip_high=1.0:train.clip_c=10.0", "kl-cov"),
        about="Default task, each rollout split into 4 optimizer steps (c-off-policy's configuration; `entropic` "
        "is c-off-policy's run). `clip-cov` with its authors' clip ratios 1 and dual clip 10 "
        "(Entropy-Mechanism-of-RL `recipe/dapo/7b_clip_cov.sh`, which takes 8 steps per rollout), `kl-cov` with "
        "its 7B script's k 0.2% and β 1 (`7b_kl_cov.sh` takes one step per rollout, where it acts only through "
        "rounding between two forward passes; its 32B script `32b_kl_cov_mininbsz.sh` takes 4).",
        overrides=FIXED,
    ),
    Experiment(
        "i-accuracy",
        "Accuracy with power: EntroPIC against GRPO on 1,000 held-out problems",
        None,
        ("grpo", "entropic"),
        seeds=12,
        problems=1000,
        about="Default task, as a-default, each run evaluated on 1,000 held-out problems (avg@8 and pass@8; "
        "each problem's count of correct samples kept), over as many seeds as a paired 95% half-width of 2 "
        "points needs by the committed runs' variance (the section Accuracy with power above).",
        overrides=FIXED,
    ),
    Experiment(
        "g-smollm2",
        "A real model: SmolLM2-135M-Instruct on 1-digit addition, EntroPIC against GRPO",
        "configs/smollm2-addition.yaml",
        ("grpo", "entropic"),
        seeds=1,
        about="With its chat template and the `####` instruction, scored on the final number; it starts at "
        "about 30% there. One seed each: an anecdote, not a comparison.",
        overrides=("method.kp=1.0", "method.ki=0.01"),
    ),
)


Summaries = dict[str, list[dict]]
Claim = Callable[[dict[str, Summaries]], str | None]  # the verdict line, or None without the runs it needs


def finished(runs: Path, experiment: Experiment) -> dict[str, list[Path]]:
    """Per method, the runs of ``experiment`` that are trained and evaluated (seed order)."""
    out = {}
    for method in experiment.methods:
        dirs = [experiment.run_dir(runs, method, s) for s in range(experiment.seeds)]
        dirs = [d for d in dirs if (d / "heldout.json").is_file()]
        if dirs:
            out[method] = dirs
    return out


def paired(a: dict[int, float], b: dict[int, float], unit: str = "points") -> tuple[str, str]:
    """``a`` minus ``b`` (values by seed), seed by seed over the seeds both have: 'mean ± half unit over
    n seed(s)' and the verdict; in percentage points (values times 100) unless ``unit`` says otherwise."""
    text, verdict, seeds = paired_difference(a, b, 100 if unit == "points" else 1)
    return f"{text} {unit} over {seeds} seed(s)", verdict


def paired_difference(a: dict[int, float], b: dict[int, float], scale: float) -> tuple[str, str, int]:
    """``a`` minus ``b`` over the seeds both have, times ``scale``: 'mean ± half', the verdict, the seeds."""
    seeds = sorted(a.keys() & b.keys())
    mean, half, verdict = difference_verdict([a[s] for s in seeds], [b[s] for s in seeds])
    return f"{mean * scale:+.2f}" + ("" if half != half else f" ± {half * scale:.2f}"), verdict, len(seeds)


def column(per_seed: list[dict], key: str) -> list[float]:
    return [s[key] for s in per_seed]


def by_seed(per_seed: list[dict], key: str) -> dict[int, float]:
    """``key`` of each run by its seed (the number in ``<method>-seed<n>``), for pairing."""
    return {int(s["run"].rsplit("-seed", 1)[1]): s[key] for s in per_seed}


def values(per_seed: list[dict], key: str, percent: bool = True) -> str:
    return format_ci([s[key] for s in per_seed if s[key] is not None], percent)


def claim_1(results: dict[str, Summaries]) -> str | None:
    f = results.get("f-baselines", {})
    if "nsr" not in f or "grpo" not in f:
        return None
    nsr = f["nsr"]
    rise, verdict = paired(by_seed(nsr, "final_entropy"), by_seed(nsr, "initial_entropy"), "nats")
    held = "held" if verdict == "higher" else "not held" if verdict == "lower" else "not distinguishable"
    against, above = paired(by_seed(nsr, "final_entropy"), by_seed(f["grpo"], "final_entropy"), "nats")
    return (
        f"**{held}** for negative samples: training on negative samples only (`nsr`) takes the entropy from "
        f"{values(nsr, 'initial_entropy', False)} (first 10% of steps) to {values(nsr, 'final_entropy', False)} "
        f"nats (last 10%; final minus initial {rise}: {verdict}); GRPO ends at "
        f"{values(f['grpo'], 'final_entropy', False)} (`nsr` minus GRPO {against}: {above}). Positive samples only "
        "were not run as a method here (the simulator's `--experiment samples` checks both halves, docs/theory.md)."
    )


def held_line(name: str, per_seed: list[dict]) -> str:
    errors = [s["tracking_error"] for s in per_seed if s["tracking_error"] is not None]
    saturated = [s["saturated"] for s in per_seed if s["saturated"] is not None]
    verdict = below_verdict(errors, HELD_BOUND)
    line = (
        f"{name}: tracking error {values(per_seed, 'tracking_error')} (bias {values(per_seed, 'bias')}), "
        f"**{verdict}** (held: error below {HELD_BOUND:.0%})"
    )
    if verdict != "held" and saturated:
        line += f"; alpha saturated on {format_ci(saturated, True)} of steps"
    return line


def claim_2(results: dict[str, Summaries]) -> str | None:
    lines = [
        held_line(f"`{key}`" + ("" if method == "entropic" else f" `{method}`"), results[key][method])
        for key in ("a-worked", "a-default")
        for method in CONTROLLERS
        if method in results.get(key, {})
    ]
    return "; ".join(lines) + "." if lines else None


def claim_3(results: dict[str, Summaries]) -> str | None:
    c = results.get("c-off-policy", {})
    if "entropic:ki=0.0" not in c or "entropic" not in c:
        return None
    p, pi = c["entropic:ki=0.0"], c["entropic"]
    difference, verdict = paired(
        {seed: abs(b) for seed, b in by_seed(pi, "bias").items()},
        {seed: abs(b) for seed, b in by_seed(p, "bias").items()},
    )
    held = "held" if verdict == "lower" else "not held" if verdict == "higher" else "not distinguishable"
    return (
        f"**{held}**: off-policy, P alone ends with bias {values(p, 'bias')} and tracking error "
        f"{values(p, 'tracking_error')}; PI with bias {values(pi, 'bias')} and tracking error "
        f"{values(pi, 'tracking_error')} (|bias| of PI minus P, paired: {difference}: {verdict})."
    )


def claim_4(results: dict[str, Summaries]) -> str | None:
    d = results.get("d-threshold", {})
    if "entropic" not in d or "entropic:threshold=0.0" not in d:
        return None
    confident, every = d["entropic"], d["entropic:threshold=0.0"]
    error, error_verdict = paired(by_seed(confident, "tracking_error"), by_seed(every, "tracking_error"))
    accuracy, accuracy_verdict = paired(by_seed(confident, "avg@N"), by_seed(every, "avg@N"))
    as_well = error_verdict != "higher"
    less_disturbance = accuracy_verdict == "higher"
    held = "held" if as_well and less_disturbance else "partly held" if as_well else "not held"
    return (
        f"**{held}**: confident tokens (threshold 0.8) against every token: tracking error "
        f"{values(confident, 'tracking_error')} against {values(every, 'tracking_error')} (paired {error}: "
        f"{error_verdict}); held-out avg@{EVAL_N} {values(confident, 'avg@N')} against {values(every, 'avg@N')} "
        f"(paired {accuracy}: {accuracy_verdict})."
    )


def claim_5(results: dict[str, Summaries]) -> str | None:
    lines = []
    for key in ("a-worked", "a-default", "i-accuracy"):  # the last with the seeds and problems to resolve 2 points
        runs = results.get(key, {})
        if "entropic" in runs and "grpo" in runs:
            parts = []
            for rate in ("pass@N", "avg@N"):
                difference, verdict = paired(by_seed(runs["entropic"], rate), by_seed(runs["grpo"], rate))
                parts.append(
                    f"{rate.replace('N', str(EVAL_N))} {values(runs['entropic'], rate)} against "
                    f"{values(runs['grpo'], rate)} (paired {difference}: {verdict})"
                )
            lines.append(f"`{key}`: " + "; ".join(parts))
    return "; ".join(lines) + "." if lines else None


CLAIMS: tuple[tuple[str, Claim], ...] = (
    ("1. Training only on positive samples lowers entropy; only on negative samples raises it.", claim_1),
    ("2. On-policy, P or PI control brings entropy to the target.", claim_2),
    ("3. Off-policy, P alone leaves a steady-state error; PI removes it.", claim_3),
    (
        "4. Restricting the reweighting to confident tokens controls entropy as well as reweighting every "
        "token, with less disturbance to learning.",
        claim_4,
    ),
    ("5. Held at target, the policy keeps exploring: better pass@N (and avg@N) than GRPO.", claim_5),
)


GOAL_ERROR, GOAL_SETTLING, GOAL_SATURATED = 0.05, 50, 0.10


CONTROLLERS = ("entropic", "entropic:gains=auto")  # the EntroPIC runs the goals are checked on


def goals(results: dict[str, Summaries]) -> list[str]:
    """The goals this project set itself on worked addition (issue 13), met or not, for each of
    ``CONTROLLERS`` with finished runs."""
    runs = results.get("a-worked", {})
    return [line for name in CONTROLLERS if name in runs for line in goal_lines(name, runs)]


def goal_lines(name: str, runs: Summaries) -> list[str]:
    entropic = runs[name]
    settling = column(entropic, "settling_step")
    met = {"held": "met", "not held": "not met", "not distinguishable": "not distinguishable"}
    lines = [
        f"- `{name}`: tracking error at most {GOAL_ERROR:.0%}: {values(entropic, 'tracking_error')}, "
        f"**{met[below_verdict(column(entropic, 'tracking_error'), GOAL_ERROR)]}**.",
        f"- `{name}`: settling within {GOAL_SETTLING} steps, every seed: "
        + (
            "a seed never settles (**not met**)."
            if None in settling
            else f"{format_ci(settling)} (seeds: {', '.join(map(str, settling))}; "
            f"**{'met' if max(settling) <= GOAL_SETTLING else 'not met'}**)."
        ),
        f"- `{name}`: alpha saturated on at most {GOAL_SATURATED:.0%} of steps (over the whole run): "
        f"{values(entropic, 'saturated')}, **{met[below_verdict(column(entropic, 'saturated'), GOAL_SATURATED)]}**.",
    ]
    for rival in ("aec:target_entropy=0.1", "aec-trl:target_entropy=0.1", "grpo"):
        if rival not in runs:
            continue
        for key, label, better in (
            ("tracking_error", "tracking error", "lower"),
            ("pass@N", f"pass@{EVAL_N}", "higher"),
        ):
            if rival == "grpo" and key == "tracking_error":
                continue
            difference, verdict = paired(by_seed(entropic, key), by_seed(runs[rival], key))
            outcome = (
                "met" if verdict == better else "not distinguishable" if verdict == "not distinguishable" else "not met"
            )
            lines.append(
                f"- `{name}`'s {label} against `{rival}`'s, {better} or equal: {difference}, {verdict} (**{outcome}**)."
            )
    return lines


RIVAL_COLUMNS = (  # (summary key, column, which sign is better for EntroPIC)
    ("tracking_error", "tracking error", "lower"),
    ("avg@N", f"held-out avg@{EVAL_N}", "higher"),
    ("pass@N", f"held-out pass@{EVAL_N}", "higher"),
    ("final_accuracy", "final train accuracy", "higher"),
)


RIVAL_CELLS = ("f-baselines", "h-off-policy")  # on-policy, and off-policy where some baselines act


def against_baselines(results: dict[str, Summaries]) -> list[str]:
    """f-baselines and h-off-policy: ``entropic`` minus each other method of the same cell, paired by
    seed, per column, with who is better where the difference is resolved."""
    lines = []
    for key in RIVAL_CELLS:
        runs = results.get(key, {})
        if "entropic" not in runs:
            continue
        if not lines:
            lines = [
                "| `entropic` minus | " + " | ".join(label for _, label, _ in RIVAL_COLUMNS) + " |",
                "|---" * (len(RIVAL_COLUMNS) + 1) + "|",
            ]
        for rival in (m for m in runs if m != "entropic"):
            cells = []
            for column, _, better in RIVAL_COLUMNS:
                difference, verdict, seeds = paired_difference(
                    by_seed(runs["entropic"], column), by_seed(runs[rival], column), 100
                )
                winner = "n.d." if verdict == "not distinguishable" else "EntroPIC" if verdict == better else rival
                cells.append(f"{difference} ({winner})")
            lines.append(f"| `{rival}`, {key} ({seeds} seed{'s' * (seeds > 1)}) | " + " | ".join(cells) + " |")
    return lines


POWER_HALF_WIDTH = 0.02  # the 95% half-width asked of a paired accuracy difference: 2 points
SCORES = {"avg": lambda correct: correct / EVAL_N, "pass": lambda correct: float(correct > 0)}  # per problem


def accuracy_power(runs: Path, results: dict[str, Summaries]) -> list[str]:
    """i-accuracy: EntroPIC minus GRPO on avg@N and pass@N, paired by seed on the same held-out
    problems, with its interval and verdict; the variance of one seed's difference split into the
    problems' share (from the per-problem counts) and the seeds' (the rest); the seeds a half-width
    of 2 points needs at this many problems and with unlimited problems. Then, from f-baselines'
    variance, what the same half-width needs against the baseline with the best held-out avg@N."""
    experiment = next(e for e in EXPERIMENTS if e.key == "i-accuracy")
    done = finished(runs, experiment)
    lines = []
    if "grpo" in done and "entropic" in done:
        counts = {
            method: {int(d.name.rsplit("-seed", 1)[1]): json.loads((d / "heldout.json").read_text()) for d in dirs}
            for method, dirs in done.items()
        }
        seeds = sorted(counts["entropic"].keys() & counts["grpo"].keys())
        for metric, score in SCORES.items():
            differences, problem_shares = [], []
            for seed in seeds:
                (ours,), (theirs,) = counts["entropic"][seed].values(), counts["grpo"][seed].values()
                a, b = [score(c) for c in ours["correct"]], [score(c) for c in theirs["correct"]]
                differences.append(statistics.fmean(a) - statistics.fmean(b))
                problem_shares.append(paired_problem_variance(a, b))
            mean, half, verdict = difference_verdict(differences, [0.0] * len(differences))
            line = f"- {metric}@{EVAL_N}, `entropic` minus `grpo`: {mean * 100:+.2f}"
            if len(seeds) < 2:
                lines.append(line + " points, one seed: an anecdote.")
                continue
            total = statistics.variance(differences)
            problems_share = statistics.fmean(problem_shares)
            seeds_share = max(total - problems_share, 0.0)
            lines.append(
                f"{line} ± {half * 100:.2f} points over {len(seeds)} seeds, {ours['problems']} problems: **{verdict}** "
                f"(half-width at most {POWER_HALF_WIDTH * 100:.0f} points: "
                f"{'met' if half <= POWER_HALF_WIDTH else 'not met'}). Variance of one seed's difference "
                f"{total * 1e4:.2f} points², of which the problems' draw {problems_share * 1e4:.2f} and the seeds' "
                f"{seeds_share * 1e4:.2f}; seeds for ±{POWER_HALF_WIDTH * 100:.0f} points: "
                f"{seeds_needed(total, POWER_HALF_WIDTH)} at {ours['problems']} problems, "
                f"{seeds_needed(seeds_share, POWER_HALF_WIDTH)} with unlimited problems."
            )
    f = results.get("f-baselines", {})
    rivals = {m: per_seed for m, per_seed in f.items() if m != "entropic"}
    if "entropic" in f and rivals:
        best = max(rivals, key=lambda m: statistics.fmean(column(rivals[m], "avg@N")))
        for key in ("avg@N", "pass@N"):
            ours, theirs = by_seed(f["entropic"], key), by_seed(rivals[best], key)
            differences = [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]
            if len(differences) < 2:
                continue
            total = statistics.variance(differences)
            lines.append(
                f"- {key.replace('N', str(EVAL_N))}, `entropic` minus the best baseline by held-out avg@{EVAL_N}, "
                f"`{best}` (f-baselines, {len(differences)} seeds, 200 problems, no per-problem counts): variance "
                f"of one seed's difference {total * 1e4:.2f} points²; seeds for ±{POWER_HALF_WIDTH * 100:.0f} "
                f"points at that variance: {seeds_needed(total, POWER_HALF_WIDTH)}."
            )
    return lines


def confident_shares(runs: Path) -> list[str]:
    """Where the entropy sits: the share carried by confident tokens, per task, in GRPO's runs (its
    first 10 steps: the warm-started model; and the whole run)."""
    lines = []
    for key in ("a-worked", "a-default"):
        experiment = next(e for e in EXPERIMENTS if e.key == key)
        dirs = finished(runs, experiment).get("grpo", [])
        if not dirs:
            continue
        cells = [f"`{key}` ({len(dirs)} seeds)"]
        for tau in (0.8, 0.95):
            name = f"entropy/confident_share@{tau}"
            records = [read_metrics(d) for d in dirs]
            cells.append(format_ci([statistics.fmean(r[name] for r in rec[:10]) for rec in records], True))
            cells.append(format_ci([statistics.fmean(r[name] for r in rec) for rec in records], True))
        lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return []
    header = (
        "| task | share, p > 0.8, first 10 steps | whole run | share, p > 0.95, first 10 steps | whole run |\n"
        "|---|---|---|---|---|"
    )
    return [header, *lines]


Suites = list[tuple[Path, tuple[Experiment, ...]]]  # where each suite's runs are, and its experiments


def run_experiments(runs: Path, experiments: tuple[Experiment, ...], keys: list[str], others: Suites = ()) -> None:
    """Run the comparisons of ``keys``, in the order of ``experiments`` (each skips its finished runs),
    after copying the runs that this suite or one of ``others`` has already finished."""
    chosen = [e for e in experiments if e.key in keys]
    for experiment in chosen:
        if experiment.config and not Path(experiment.config).is_file():
            raise ValueError(f"{experiment.config}: not found; run entropic reproduce from the repository's root")
    for experiment in chosen:
        copy_identical_runs(runs, experiment, [(runs, experiments), *others])
        compare(
            experiment.config or "embedded",
            list(experiment.overrides),
            list(experiment.methods),
            list(range(experiment.seeds)),
            runs / experiment.key,
            EVAL_N,
            experiment.problems,
        )


def held_elsewhere(runs: Path, experiments: tuple[Experiment, ...]) -> Path | None:
    """The first unfinished run of ``experiments`` that another process is training, if any."""
    for experiment in experiments:
        for method in experiment.methods:
            for seed in range(experiment.seeds):
                run_dir = experiment.run_dir(runs, method, seed)
                if (run_dir / ".lock").is_file() and not (run_dir / "heldout.json").is_file():
                    with held_by_this_process(run_dir) as held:
                        if not held:
                            return run_dir
    return None


def resolved(experiment: Experiment, method: str, seed: int) -> dict:
    """The configuration a run of ``experiment`` trains with, less its folder: equal for the same run."""
    config = load_config(
        experiment.config or "embedded", list(experiment.overrides), then=[*method_overrides(method), f"seed={seed}"]
    ).to_dict()
    del config["log"]["out_dir"]
    return config


def copy_identical_runs(runs: Path, experiment: Experiment, suites: Suites) -> None:
    """Copy into ``experiment`` each missing run that an experiment of ``suites`` has finished with the
    same configuration once resolved (e.g. b-targets' `grpo` and `entropic` are a-worked's; the gains
    matrix's `entropic:kp=10.0:ki=0.1` on the default task is a-default's `entropic`): the same run, not
    trained twice."""
    missing = {
        experiment.run_dir(runs, method, seed): resolved(experiment, method, seed)
        for method in experiment.methods
        for seed in range(experiment.seeds)
        if not experiment.run_dir(runs, method, seed).exists()
    }
    for root, experiments in suites:
        for other in experiments:
            for method in other.methods:
                for seed in range(other.seeds):
                    source = other.run_dir(root, method, seed)
                    if not missing or not (source / "heldout.json").is_file():
                        continue
                    config = resolved(other, method, seed)
                    targets = [t for t, wanted in missing.items() if wanted == config]
                    if not targets or not finished_as_planned(source, config["train"]["steps"], experiment.problems):
                        continue
                    for target in targets:
                        with folder_written_atomically(target) as tmp:
                            for name in ("metrics.jsonl", "heldout.json"):  # all a finished run needs; no checkpoints
                                shutil.copy2(source / name, tmp / name)
                        print(f"{target}: copied from {source} (the same run)", file=sys.stderr)
                        del missing[target]


def finished_as_planned(run_dir: Path, steps: int, problems: int) -> bool:
    """Trained to ``steps`` and evaluated with this suite's protocol (avg@EVAL_N on ``problems`` of
    every set)."""
    held_out = json.loads((run_dir / "heldout.json").read_text())
    return trained_steps(run_dir) == steps and all(
        f"avg@{EVAL_N}" in scores and scores["problems"] == problems for scores in held_out.values()
    )


def section(runs: Path, experiment: Experiment, doc: Path, figures: Path) -> tuple[list[str], Summaries, bool]:
    """An experiment's part of a report: its heading and command, then the table and figure of its
    finished runs; with their summaries (empty: none finished) and whether every planned run finished."""
    lines = [f"## {experiment.key}: {experiment.title}\n" + (f"\n{experiment.about}\n" if experiment.about else "")]
    lines.append(f"```bash\n{experiment.command(runs)}\n```\n")
    done = finished(runs, experiment)
    if not done:
        return [*lines, "**Not run yet.**\n"], {}, False
    summaries, target = summarize_methods(done)
    missing = [m for m in experiment.methods if len(done.get(m, [])) < experiment.seeds]
    if missing:
        lines.append(f"Unfinished: {', '.join(f'`{m}`' for m in missing)} (fewer seeds than planned).\n")
    lines.append(markdown(summaries, EVAL_N))
    figure(done, target, figures / f"{experiment.key}.png")
    lines.append(f"![entropy and training accuracy]({relative(figures, doc.parent)}/{experiment.key}.png)\n")
    return lines, summaries, not missing


def report(runs: Path, doc: Path, figures: Path) -> str:
    """Write ``doc`` (and the figures) from the finished runs under ``runs``; return its text."""
    results: dict[str, Summaries] = {}
    sections = []
    for experiment in EXPERIMENTS:
        lines, summaries, _ = section(runs, experiment, doc, figures)
        sections += lines
        if summaries:
            results[experiment.key] = summaries
    claims = ["## The paper's claims, here\n"]
    for text, claim in CLAIMS:
        verdict = claim(results)
        claims.append(f"- {text}\n  {verdict or 'Not tested yet: the experiments it needs have not finished.'}")
    target_lines = goals(results) or ["Not measured yet: `a-worked` has no finished EntroPIC run."]
    share_lines = confident_shares(runs) or ["Not measured yet: no finished GRPO run."]
    power_lines = accuracy_power(runs, results) or ["Not measured yet: i-accuracy and f-baselines have no runs."]
    rival_lines = against_baselines(results) or ["Not measured yet: no finished EntroPIC run in f-baselines."]
    text = "\n".join(
        [
            HEADER.format(runs=runs),
            "\n".join(claims) + "\n",
            GOALS + "\n".join(target_lines) + "\n",
            RIVALS + "\n".join(rival_lines) + "\n",
            SHARES + "\n".join(share_lines) + "\n",
            POWER + "\n".join(power_lines) + "\n",
            *sections,
        ]
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return text


def relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


HEADER = """# Reproduction: the paper's claims at small scale

Generated by `entropic reproduce` from the runs in `{runs}` (do not edit by hand; commentary on
these numbers is in [compare.md](compare.md) and [control.md](control.md)). Every number is a mean over
seeds with the half-width of its 95% t-interval; comparisons between two methods are paired by seed.
Held-out avg@8 and pass@8 at T 0.6, top-p 0.95 on 200 held-out problems; tracking error, bias and
settling as defined in [compare.md](compare.md#the-summary); entropy is "held" when the interval of
the tracking error lies below 10%. Floating-point details differ between machines, so a rerun
elsewhere gives other samples: the intervals, not the digits, are what carries over. `entropic`
here is EntroPIC with fixed gains K_p 10, K_i 0.1 (SmolLM2: the authors' K_p 1, K_i 0.01), as these
runs were made and as each command says; `gains: auto`, an option that tunes its own gain, is validated in
[gains-matrix.md](gains-matrix.md).

```bash
entropic reproduce                       # runs what is missing (hours on 2 cores), then writes this page
entropic reproduce --report-only         # rewrites this page from the finished runs
entropic reproduce --only a-worked,c-off-policy
```
"""

GOALS = """## Goals on worked addition

What this project set out to reach on the LLM-like task (the paper reports about 5% tracking error):

"""

RIVALS = """## EntroPIC against each baseline (f-baselines, h-off-policy)

The default task, each method at its authors' released settings, on-policy (f-baselines) and with 4
optimizer steps per rollout (h-off-policy, where Clip-Cov's clip and KL-Cov act): `entropic` minus
the method of the same cell, paired by seed, in percentage points, with the 95% interval and who
is better where the interval excludes 0 (n.d.: not distinguishable). Tracking error is against
each run's own target (AEC: 0.3) or, for a method without one, EntroPIC's 0.3 nats: how far from
that level the method leaves the entropy.

"""


SHARES = """## Where the entropy sits

The share of the responses' entropy carried by tokens sampled with probability above 0.8 or 0.95
(`entropy/confident_share@0.8`, `@0.95`): the tokens through which EntroPIC acts. From the GRPO runs.

"""


POWER = """## Accuracy with power (i-accuracy)

Is EntroPIC's held-out accuracy different from GRPO's on the default task? `entropic` minus `grpo`,
paired by seed on the same 1,000 held-out problems (avg@8 and pass@8 at T 0.6, top-p 0.95), with
the 95% t-interval over seeds and its verdict. One seed's difference varies with the seed (training)
and with the draw of the problems; the problems' share is the variance of the per-problem
differences over the problems, averaged over seeds, the seeds' share the rest. From them: the seeds
a half-width of 2 points needs at this number of problems, and with unlimited problems.

"""
