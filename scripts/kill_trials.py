"""Kill `entropic train` with SIGKILL at random moments and check that resuming loses nothing.

Each trial starts a short run, kills it (at a random moment, or as soon as a checkpoint write has
begun), resumes it with `entropic train --resume` (or starts it again when no checkpoint was written
yet), and compares its metrics.jsonl, timings aside, with an uninterrupted run of the same seed.
Every checkpoint is written (log.save_every=1), so random kills land in rollouts, updates and
checkpoint writes alike.

    .venv/bin/python scripts/kill_trials.py --trials 20 --seeds 3      # docs/reliability.md

Prints one line per trial and a summary; exit code 1 if any trial ended with other metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

STEPS = 10
# A small, fast run of the embedded model on 1-digit addition (as the tests use).
RUN = [
    "task.difficulty=1",
    "model.warm_start_steps=130",
    "rollout.prompts_per_step=4",
    "rollout.group_size=4",
    "rollout.max_new_tokens=8",
    "train.micro_batch_size=6",
    "train.lr=3e-3",
    f"train.steps={STEPS}",
    "method.target_entropy=0.5",
    "method.kp=2",
    "log.save_every=1",
    "log.keep_last=2",
    "log.sample_every=0",
    "log.tensorboard=false",
]
ENTROPIC = [sys.executable, "-m", "entropic_rl.cli", "train"]


def untimed_metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]


def train(args: list[str]) -> None:
    subprocess.run([*ENTROPIC, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill_once(run_dir: Path, seed: int, mode: str, rng: random.Random, step_time: float) -> str:
    """Starts the run and SIGKILLs it: in ``random`` mode at a random moment of a random step (its
    rollout, update or checkpoint), in ``checkpoint`` mode during a random checkpoint write.
    Returns where it was killed."""
    process = subprocess.Popen(
        [*ENTROPIC, *RUN, f"seed={seed}", f"log.out_dir={run_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target, seen = rng.randint(0, STEPS - 1), set()
    while process.poll() is None:
        if mode == "random" and logged_steps(run_dir) >= target:
            time.sleep(rng.uniform(0, step_time))
            break
        if mode == "checkpoint":
            seen.update(p.name for p in (run_dir / "checkpoints").glob(".tmp-step_*"))
            if len(seen) > target:
                break
        time.sleep(0.001)
    writing = any((run_dir / "checkpoints").glob(".tmp-step_*"))
    process.send_signal(signal.SIGKILL)
    process.wait()
    return f"after {logged_steps(run_dir)} logged steps" + (", mid-checkpoint" if writing else "")


def trial(out: Path, index: int, seed: int, mode: str, reference: Path, step_time: float) -> dict:
    run_dir = out / f"trial{index:02d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    killed = kill_once(run_dir, seed, mode, random.Random(index), step_time)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) if run_dir.exists() else []
    if checkpoints:
        train(["--resume", str(run_dir)])
        resumed = f"resumed from the newest of {checkpoints}"
    else:  # killed before its first checkpoint: nothing to resume, start again
        shutil.rmtree(run_dir, ignore_errors=True)
        train([*RUN, f"seed={seed}", f"log.out_dir={run_dir}"])
        resumed = "no checkpoint yet: started again"
    same = untimed_metrics(run_dir) == untimed_metrics(reference)
    return {"trial": index, "seed": seed, "mode": mode, "killed": killed, "resume": resumed, "same_metrics": same}


def run_trials(out: Path, trials: int, seeds: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    references, step_times = {}, {}
    for seed in range(seeds):
        references[seed] = out / f"reference-seed{seed}"
        shutil.rmtree(references[seed], ignore_errors=True)
        train([*RUN, f"seed={seed}", f"log.out_dir={references[seed]}"])
        records = [json.loads(line) for line in (references[seed] / "metrics.jsonl").read_text().splitlines()]
        step_times[seed] = 1.5 * sum(r["perf/step_time"] for r in records) / len(records)  # with its checkpoint
    results = []
    for index in range(trials):
        seed, mode = index % seeds, ("random", "checkpoint")[index % 2]
        result = trial(out, index, seed, mode, references[seed], step_times[seed])
        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/kill-trials")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    results = run_trials(Path(args.out), args.trials, args.seeds)
    passed = sum(r["same_metrics"] for r in results)
    mid = sum("mid-checkpoint" in r["killed"] for r in results)
    print(
        f"{passed} of {len(results)} trials resumed to exactly the uninterrupted metrics ({mid} killed mid-checkpoint)"
    )
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
