"""``entropic reproduce --suite gains``: ``gains: auto`` against fixed gains over a matrix of plants
(docs/control.md), written to docs/gains-matrix.md.

Each cell is one ``entropic compare`` over 3 seeds: a task, learning rate, target or update regime
(the plant), and the same rows in every cell: ``gains: auto`` with its defaults, the authors' fixed
gains (K_p 1, K_i 0.01), a small sweep of fixed gains around the embedded preset's K_p 10, K_i 0.1
(K_i / K_p = 0.01 throughout), and AEC at the cell's target. The report checks the goals of
``gains: auto`` in every cell, each by a paired (by seed) comparison with its 95% interval:

- within 1.5x of the tracking error of the cell's best fixed gains (auto - 1.5 x best < 0), over
  CONFIRM_SEEDS seeds: once the sweep's 3 seeds have chosen the best fixed gains, a confirmation runs
  auto and those gains on more seeds in the cell's folder (3 seeds cannot tell the ratio from 1.5x);
- better than the authors' gains wherever those do not hold the entropy (error not below 10%);
- at least as precise as AEC (auto - AEC not above 0).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from entropic_rl.evaluation.statistics import below_verdict, format_ci
from entropic_rl.trainer.compare import HELD_BOUND, summarize_methods
from entropic_rl.trainer.reproduction import Experiment, by_seed, column, finished, paired, section

AUTO = "entropic:gains=auto"
AUTHORS = "entropic:kp=1.0:ki=0.01"
FIXED = (AUTHORS, "entropic:kp=3.0:ki=0.03", "entropic:kp=10.0:ki=0.1", "entropic:kp=30.0:ki=0.3")
GLOBAL = "entropic:kp=10.0:ki=0.1"  # the embedded preset's gains: one fixed gain for every cell
WITHIN = 1.5  # auto's tracking error at most this times the best fixed gains'
CONFIRM_SEEDS = 7  # auto against the best fixed gains: the seeds the 1.5x goal is judged on
PATHS = ("runs/gains-matrix", "docs/gains-matrix.md", "docs/figures/gains-matrix")  # runs, report, figures


@dataclass(frozen=True)
class Cell:
    key: str
    title: str
    config: str | None  # a YAML file; None: the embedded preset
    target: float
    overrides: tuple[str, ...] = ()
    seeds: int = 3
    rows: tuple[str, ...] = ()  # default: auto, the fixed gains, AEC at the target

    @property
    def experiment(self) -> Experiment:
        rows = self.rows or (AUTO, *FIXED, f"aec:target_entropy={self.target}")
        return Experiment(self.key, self.title, self.config, rows, self.seeds, overrides=self.overrides)


CELLS = (
    Cell("default", "The default run: 2-digit addition, target 0.3", None, 0.3),
    Cell("off-policy", "Off-policy: 4 mini-batches per rollout", "configs/off-policy.yaml", 0.3),
    Cell("lr-low", "Learning rate 3e-5 (a third of the default)", None, 0.3, ("train.lr=3e-5",)),
    Cell("lr-high", "Learning rate 3e-4 (three times the default)", None, 0.3, ("train.lr=3e-4",)),
    Cell("target-high", "Target 0.45, above where the run starts", None, 0.45, ("method.target_entropy=0.45",)),
    Cell("target-low", "Target 0.15, half-way to where GRPO falls", None, 0.15, ("method.target_entropy=0.15",)),
    Cell("countdown", "Countdown with 3 numbers", "configs/countdown.yaml", 0.3),
    Cell("worked", "Worked 3-digit addition (the LLM-like task), target 0.1", "configs/worked.yaml", 0.1),
    Cell(
        "smollm2",
        "SmolLM2-135M-Instruct on 1-digit addition, target 0.1",
        "configs/smollm2-addition.yaml",
        0.1,
        rows=(AUTO, AUTHORS, GLOBAL, "entropic:kp=30.0:ki=0.3"),  # no K_p 3 or AEC: about 35 min a run
    ),
)
EXPERIMENTS = tuple(cell.experiment for cell in CELLS)


def fixed_rows(cell: Cell) -> list[str]:
    """The cell's fixed gains: its sweep."""
    return [row for row in cell.experiment.methods if row in FIXED]


def best_fixed(cell: Cell, summaries: dict[str, list[dict]]) -> str | None:
    """The fixed gains with the lowest mean tracking error, once every fixed gain of the cell has
    finished every seed (before that, the best so far need not be the cell's best)."""
    rows = fixed_rows(cell)
    if not rows or any(len(summaries.get(row, [])) < cell.seeds for row in rows):
        return None
    return min(rows, key=lambda row: statistics.fmean(column(summaries[row], "tracking_error")))


def confirmation(cell: Cell, summaries: dict[str, list[dict]]) -> Experiment | None:
    """Auto and the cell's best fixed gains over CONFIRM_SEEDS seeds, in the cell's folder (its first
    seeds are the sweep's runs); None before the sweep (``summaries``) has chosen."""
    best = best_fixed(cell, summaries)
    if best is None:
        return None
    return Experiment(cell.key, cell.title, cell.config, (AUTO, best), CONFIRM_SEEDS, overrides=cell.overrides)


def sweep(runs: Path, cell: Cell) -> dict[str, list[dict]]:
    """The summaries of the cell's finished runs on the sweep's seeds."""
    return summarize_methods(finished(runs, cell.experiment))[0]


def confirmations(runs: Path) -> tuple[Experiment, ...]:
    """The confirmations of the cells whose sweeps have finished (``entropic reproduce`` runs them
    after the sweeps)."""
    return tuple(c for cell in CELLS if (c := confirmation(cell, sweep(runs, cell))) is not None)


def goal_lines(cell: Cell, summaries: dict[str, list[dict]], confirmed: dict[str, list[dict]]) -> list[str]:
    """The goals of ``gains: auto`` in one cell, each met, not met or not distinguishable: the 1.5x
    goal over the confirmation's seeds (``confirmed``), judged once they
    have all finished (before that its numbers are interim), the others over the sweep's (``summaries``)."""
    if AUTO not in summaries:
        return []
    auto = by_seed(summaries[AUTO], "tracking_error")
    lines = []
    best = best_fixed(cell, summaries)
    if best is None:
        done = sum(len(summaries.get(row, [])) == cell.seeds for row in fixed_rows(cell))
        lines.append(
            f"within {WITHIN}× of the best fixed gains: not judged until the sweep has finished ({done} of "
            f"{len(fixed_rows(cell))} fixed gains so far)"
        )
    else:
        pairs = confirmed or summaries
        errors = {row: by_seed(pairs[row], "tracking_error") for row in (AUTO, best)}
        seeds = errors[AUTO].keys() & errors[best].keys()
        means = [statistics.fmean(errors[row][seed] for seed in seeds) for row in (AUTO, best)]
        scaled = {seed: WITHIN * e for seed, e in errors[best].items()}
        difference, verdict = paired(errors[AUTO], scaled)
        outcome = {"lower": "met", "higher": "not met"}.get(verdict, "not distinguishable")
        if 1 < len(seeds) < CONFIRM_SEEDS:  # judged once, on every seed planned: no verdict from a peek
            outcome = f"interim: {len(seeds)} of {CONFIRM_SEEDS} seeds, not judged yet"
        lines.append(
            f"within {WITHIN}× of the best fixed gains (`{best}`, on these seeds auto {means[0]:.1%}, best "
            f"{means[1]:.1%}, ratio {means[0] / means[1]:.2f}): auto − {WITHIN} × best {difference} (**{outcome}**)"
        )

    def interim(rival: dict[int, float]) -> str | None:
        """The sweep's goals are judged once both rows have every sweep seed: no verdict from a peek."""
        seeds = len(auto.keys() & rival.keys())
        return f"interim: {seeds} of {cell.seeds} seeds, not judged yet" if seeds < cell.seeds else None

    if AUTHORS in summaries:
        authors = by_seed(summaries[AUTHORS], "tracking_error")
        if below_verdict(list(authors.values()), HELD_BOUND) == "held":
            lines.append("the authors' gains hold the entropy here: nothing to beat")
        else:
            difference, verdict = paired(auto, authors)
            outcome = interim(authors) or {"lower": "met", "higher": "not met"}.get(verdict, "not distinguishable")
            lines.append(f"better than the authors' gains, which miss: auto − authors' {difference} (**{outcome}**)")
    aec = f"aec:target_entropy={cell.target}"
    if aec in summaries:
        precise = by_seed(summaries[aec], "tracking_error")
        difference, verdict = paired(auto, precise)
        outcome = interim(precise) or ("not met" if verdict == "higher" else "met")
        lines.append(f"at least as precise as AEC: auto − AEC {difference} (**{outcome}**)")
    return lines


def summary_row(cell: Cell, summaries: dict[str, list[dict]]) -> str:
    """One line of the overview: each row's tracking error, the best fixed gains, auto's ratio to them
    and where auto's gain settled over the seeds (K_p = kappa / H_tar, the median of its last steps)."""
    rows = cell.experiment.methods
    cells = [f"`{cell.key}`", f"{cell.target:g}"]
    for row in (AUTO, *FIXED, f"aec:target_entropy={cell.target}"):
        if row in summaries:
            cells.append(format_ci(column(summaries[row], "tracking_error"), True))
        else:  # not finished, or not a row of this cell
            cells.append("-" if row in rows else "")
    best = best_fixed(cell, summaries)
    if best is not None and AUTO in summaries:
        ratio = statistics.fmean(column(summaries[AUTO], "tracking_error")) / statistics.fmean(
            column(summaries[best], "tracking_error")
        )
        cells += [best.removeprefix("entropic:"), f"{ratio:.2f}"]
    else:
        cells += ["-", "-"]
    gains = sorted(s["kappa"] / cell.target for s in summaries.get(AUTO, []) if s["kappa"] is not None)
    cells.append(f"{gains[0]:.0f}–{gains[-1]:.0f}" if gains else "-")
    return "| " + " | ".join(cells) + " |"


def listed(keys: list[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys)


def report(runs: Path, doc: Path, figures: Path) -> str:
    """Write ``doc`` (and the figures) from the finished runs under ``runs``; return its text."""
    overview, goals, sections = [], [], []
    missed, pending = [], []  # cells with a goal not met (or not distinguishable), cells not judged yet
    for cell in CELLS:
        lines, summaries, complete = section(runs, cell.experiment, doc, figures)
        sections += lines
        overview.append(summary_row(cell, summaries))
        confirm = confirmation(cell, summaries)
        confirmed = summarize_methods(finished(runs, confirm))[0] if confirm else {}
        lines = goal_lines(cell, summaries, confirmed)
        if any(not ("(**met**)" in line or "nothing to beat" in line or "not judged" in line) for line in lines):
            missed.append(cell.key)
        elif not complete or not lines or any("not judged" in line for line in lines):
            pending.append(cell.key)
        if summaries:
            goals.append(f"- `{cell.key}`: " + ("; ".join(lines) if lines else "no finished `gains: auto` runs") + ".")
    if missed:
        verdict = f"**Not met in {listed(missed)}: the condition for `gains: auto` to be the default does not hold.**"
    elif pending:
        judged = len(CELLS) - len(pending)
        verdict = f"**Not judged yet in {listed(pending)}" + (f"; met in the other {judged}" if judged else "") + ".**"
    else:
        verdict = "**Met in every cell: the condition for `gains: auto` to be the default holds.**"
    header = "| cell | target | auto | " + " | ".join(r.removeprefix("entropic:") for r in FIXED)
    text = "\n".join(
        [
            HEADER.format(runs=runs),
            "## Tracking error by cell\n",
            header + " | AEC | best fixed | auto ÷ best | auto's K_p at the end |",
            "|" + "---|" * (len(FIXED) + 7),
            *overview,
            "",
            "## The goals, cell by cell\n",
            *(goals or ["No cell has finished runs yet."]),
            "",
            verdict + "\n",
            *sections,
        ]
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return text


HEADER = """# `gains: auto` against fixed gains, cell by cell

Generated by `entropic reproduce --suite gains` from the runs in `{runs}` (do not edit by hand; the
rule and the commentary are in [control.md](control.md)). Each cell is a plant: a task, learning
rate, target or update regime; each row a controller on it, over 3 seeds (SmolLM2: no K_p 3 and no AEC
row, its runs taking about 35 minutes each). Tracking
error: mean |H − H_tar| / H_tar after settling ([compare.md](compare.md#the-summary)), mean ± the
half-width of its 95% t-interval. The fixed gains are a sweep on a ×3 grid with K_i = K_p / 100:
K_p 1, K_i 0.01 are the authors' gains, K_p 10, K_i 0.1 the embedded preset's. Goals of
`gains: auto` (issue 15), each paired by seed: within 1.5× of the cell's best fixed gains (judged
over 7 seeds: once the sweep's 3 seeds have chosen a cell's best fixed gains, the suite runs auto
and those gains on 4 more, in the cell's folder; the tables show the sweep's seeds), better than
the authors' gains where they do not hold the entropy, at least as precise as AEC. The last
column is where auto's gain settled: κ / H_tar (its K_p), the median of each seed's last 100
steps, lowest–highest over the seeds.

```bash
entropic reproduce --suite gains                    # runs what is missing (a day on 2 cores), then writes this page
entropic reproduce --suite gains --report-only      # rewrites this page from the finished runs
entropic reproduce --suite gains --only default,off-policy
```
"""
