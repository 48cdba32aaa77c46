"""Step time of ``entropic`` over ``grpo`` on the same training config.

Baseline: ``method.name=grpo``. Candidate: ``method.name=entropic`` (and, with
``--methods``, any other method). Each method trains ``--steps`` rollout steps from the same
starting model with the same seed, ``--repeats`` times, methods interleaved so that slow
phases of a shared machine hit both; the first ``--skip`` steps of each run are dropped
(thread pools, caches). A step is the whole ``train_step``: sampling, rewards, old
log-probs, the update and the controller. Printed: the median step time per method and its
ratio to the baseline's median.

    python benchmarks/train_step.py                       # the embedded default config
    python benchmarks/train_step.py --steps 30 model.path=/models/qwen3-0.6b rollout.max_new_tokens=512
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from entropic_rl.trainer import load_config, train
from entropic_rl.trainer.config import DEFAULT_PRESET


def step_times(overrides: list[str], method: str, steps: int, out_dir: Path) -> list[float]:
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
    run_dir = train(config)
    return [json.loads(line)["perf/step_time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides (key.sub=value), applied to every method")
    parser.add_argument("--methods", default="entropic", help="comma-separated candidates (baseline: grpo)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    methods = ["grpo", *args.methods.split(",")]
    times: dict[str, list[float]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for method in methods:
                run = step_times(args.overrides, method, args.steps, Path(tmp) / f"{method}-{repeat}")
                times[method] += run[args.skip :]
    base = statistics.median(times["grpo"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, overrides: {' '.join(args.overrides) or '-'}")
    print(f"{args.repeats} runs x {args.steps - args.skip} timed steps per method, median step time")
    print(f"{'method':20s} {'step s':>8s} {'ratio vs grpo':>14s}")
    for method in methods:
        median = statistics.median(times[method])
        print(f"{method:20s} {median:8.3f} {median / base:14.3f}")


if __name__ == "__main__":
    main()
