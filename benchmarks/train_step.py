"""Update time of ``entropic`` over ``grpo`` on identical replayed rollouts.

Baseline: ``method.name=grpo`` (or ``--baseline``). Candidate: ``method.name=entropic`` (and, with
``--methods``, any other method). A name ending in ``@unbucketed`` is that method with the update's
micro-batches as they were before length bucketing: rows in their rollout order, each micro-batch
padded to the rollout's longest response. A first run of the baseline records its rollouts; then
every method trains ``--steps`` steps from the same starting model on exactly those rollouts (same
responses, rewards and tokens, so sampling differences do not count), ``--repeats`` times, methods
interleaved so that slow phases of a shared machine hit both; the first ``--skip`` steps of each
run are dropped. Timed: the update of a step (``perf/update_time``: forward, loss, backward,
optimizer step and the controller; not the sampling, rewards or old log-probs). Printed: the median
per method and its ratio to the baseline's. The configuration is ``entropic train``'s with no
``--config`` (the ``embedded`` preset), then the overrides.

    python benchmarks/train_step.py                       # the embedded default config
    python benchmarks/train_step.py --steps 30 model.path=/models/qwen3-0.6b rollout.max_new_tokens=512
    python benchmarks/train_step.py --baseline grpo@unbucketed --methods grpo task.name=worked ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from entropic_rl.models.sampling import Rollout
from entropic_rl.trainer import load_config, loop, train
from entropic_rl.trainer.config import DEFAULT_PRESET


@contextlib.contextmanager
def unbucketed():
    """The update's micro-batches as before length bucketing: rows in their order, every micro-batch
    at the rollout's full width."""
    split, trimmed = loop.micro_batches, Rollout.trimmed
    loop.micro_batches = lambda rollout, rows, size: torch.split(rows, size)
    Rollout.trimmed = lambda self, rows: (self.sequences[rows], self.attention_mask[rows], self.response_mask.shape[1])
    try:
        yield
    finally:
        loop.micro_batches, Rollout.trimmed = split, trimmed


def update_times(overrides: list[str], method: str, steps: int, out_dir: Path, rollouts: list) -> list[float]:
    """Per-step update times of ``method``; the rollouts are recorded into ``rollouts`` when it is
    empty, and replayed from it otherwise."""
    record, real_generate = not rollouts, loop.generate
    replay = iter(rollouts)
    method, _, variant = method.partition("@")

    def generate(*args, **kwargs):
        if record:
            rollouts.append(real_generate(*args, **kwargs))
            return rollouts[-1]
        return next(replay)

    config = load_config(
        DEFAULT_PRESET,  # as `entropic train` with no --config
        overrides=[
            *overrides,
            f"method.name={method}",
            f"train.steps={steps}",
            f"log.out_dir={out_dir}",
            "log.sample_every=0",
            f"log.save_every={steps}",
            "log.tensorboard=false",
        ],
    )
    loop.generate = generate
    try:
        with unbucketed() if variant == "unbucketed" else contextlib.nullcontext():
            run_dir = train(config)
    finally:
        loop.generate = real_generate
    return [json.loads(line)["perf/update_time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides (key.sub=value), applied to every method")
    parser.add_argument("--baseline", default="grpo", help="the method the candidates are measured against")
    parser.add_argument("--methods", default="entropic", help="comma-separated candidates")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    methods = [args.baseline, *args.methods.split(",")]
    times: dict[str, list[float]] = {m: [] for m in methods}
    rollouts: list = []
    with tempfile.TemporaryDirectory() as tmp:
        update_times(args.overrides, args.baseline, args.steps, Path(tmp) / "record", rollouts)
        for repeat in range(args.repeats):
            for method in methods if repeat % 2 == 0 else methods[::-1]:  # no favoured position
                run = update_times(args.overrides, method, args.steps, Path(tmp) / f"{method}-{repeat}", rollouts)
                times[method] += run[args.skip :]
    base = statistics.median(times[args.baseline])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, overrides: {' '.join(args.overrides) or '-'}")
    print(f"{args.repeats} runs x {args.steps - args.skip} timed steps per method on the same replayed rollouts")
    print(f"{'method':20s} {'update s':>9s} {'ratio':>9s}  (ratio: against {args.baseline})")
    for method in methods:
        median = statistics.median(times[method])
        print(f"{method:20s} {median:9.4f} {median / base:9.3f}")


if __name__ == "__main__":
    main()
