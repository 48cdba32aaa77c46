"""Kill `entropic train`, or TRL's `EntroPICGRPOTrainer`, with SIGKILL at random moments and check
that resuming loses nothing.

Each trial starts a short run, kills it (at a random moment, or in the middle of a random checkpoint
write: the run kills itself just before that checkpoint's last file, so the moment is exact however
busy the machine), resumes it (`entropic train --resume`; TRL: `train(resume_from_checkpoint=True)`), or starts
it again when no checkpoint was written yet, and compares its metrics, timings aside, with an
uninterrupted run of the same seed (TRL: its log history and the controller's final state).
Every step is checkpointed, so random kills land in rollouts, updates and checkpoint writes alike.

    .venv/bin/python scripts/kill_trials.py --trials 20 --seeds 3      # docs/reliability.md
    .venv/bin/python scripts/kill_trials.py --trainer trl --trials 10 --seeds 2

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
ENTROPIC = [sys.executable, __file__, "--entropic-worker", "train"]
KILL_AT = "KILL_TRIALS_AT_CHECKPOINT"  # the worker SIGKILLs itself inside the checkpoint write of this number


def dying_before(function, calls: list[int]):
    """``function``, but the ``KILL_AT``-th call SIGKILLs this process first (no-op without ``KILL_AT``)."""
    kill_at = int(os.environ.get(KILL_AT, 0))

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)

    return wrapped


def entropic_worker(args: list[str]) -> int:
    """`entropic train ARGS` whose checkpoint writes can kill it before their manifest (written last)."""
    from entropic_rl.cli import main
    from entropic_rl.trainer import checkpoint

    checkpoint.write_manifest = dying_before(checkpoint.write_manifest, [0])
    return main(args)


TRL_STATE = "entropic_controller.json"  # integrations/state_file.py: written last in a TRL checkpoint


def untimed_metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]


class Entropic:
    """`entropic train`: metrics.jsonl per step, checkpoints written to .tmp-step_* then renamed."""

    @staticmethod
    def command(run_dir: Path, seed: int, resume: bool) -> list[str]:
        return (
            [*ENTROPIC, "--resume", str(run_dir)]
            if resume
            else [*ENTROPIC, *RUN, f"seed={seed}", f"log.out_dir={run_dir}"]
        )

    @staticmethod
    def progress(run_dir: Path) -> int:
        path = run_dir / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    @staticmethod
    def writing(run_dir: Path) -> set[str]:
        return {p.name for p in (run_dir / "checkpoints").glob(".tmp-step_*")}

    @staticmethod
    def resumable(run_dir: Path) -> list[str]:
        return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) if run_dir.exists() else []

    result = staticmethod(untimed_metrics)

    @staticmethod
    def step_time(run_dir: Path, wall: float) -> float:
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return 1.5 * sum(r["perf/step_time"] for r in records) / len(records)  # with its checkpoint


class TRL:
    """`EntroPICGRPOTrainer` on a tiny Llama (this script's --trl-worker): checkpoint-N folders, the
    controller's state written last in each; the result is the log history and the final state."""

    @staticmethod
    def command(run_dir: Path, seed: int, resume: bool) -> list[str]:
        return [sys.executable, __file__, "--trl-worker", str(run_dir), "--seed", str(seed), *(["--resume"] * resume)]

    @staticmethod
    def progress(run_dir: Path) -> int:
        return max((int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*")), default=0)

    @staticmethod
    def writing(run_dir: Path) -> set[str]:
        return {p.name for p in run_dir.glob("checkpoint-*") if not (p / TRL_STATE).exists()}

    @staticmethod
    def resumable(run_dir: Path) -> list[str]:
        return sorted(p.name for p in run_dir.glob("checkpoint-*") if (p / TRL_STATE).exists())

    @staticmethod
    def result(run_dir: Path) -> dict:
        return json.loads((run_dir / "result.json").read_text())

    @staticmethod
    def step_time(run_dir: Path, wall: float) -> float:
        return wall / STEPS  # start-up included: the tiny model's steps take less than importing TRL


def trl_worker(run_dir: Path, seed: int, resume: bool) -> None:
    """Train (or resume) the TRL run; write its untimed log history and the controller's state."""
    from datasets import Dataset
    from transformers import TrainerState

    from entropic_rl.integrations import trl
    from entropic_rl.integrations.state_file import load_method_state
    from entropic_rl.integrations.trl import EntroPICGRPOConfig, EntroPICGRPOTrainer
    from entropic_rl.models import char_tokenizer, seeded_llama

    trl.save_method_state = dying_before(trl.save_method_state, [0])  # the controller's state: a checkpoint's last

    tokenizer = char_tokenizer()
    model = seeded_llama(tokenizer, hidden=64, intermediate=128, layers=2, heads=2, kv_heads=1)
    args = EntroPICGRPOConfig(
        output_dir=str(run_dir),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=6,
        max_steps=STEPS,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=1,
        save_total_limit=2,
        report_to="none",
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        entropic_threshold=0.05,
        entropic_kp=0.1,
    )
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(10) for b in range(10)]})
    trainer = EntroPICGRPOTrainer(model, first_digit_is_even, args=args, train_dataset=data, processing_class=tokenizer)
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    except ValueError as exc:  # killed after its last checkpoint: the run was complete
        if "nothing to train" not in str(exc):
            raise
        trainer.state = TrainerState.load_from_json(str(run_dir / f"checkpoint-{STEPS}" / "trainer_state.json"))
        load_method_state(run_dir / f"checkpoint-{STEPS}", trainer.method)
    # per step, timings aside (the closing entry, with train_runtime, sums up the last process only)
    steps = [e for e in trainer.state.log_history if "train_runtime" not in e]
    log = [{k: v for k, v in e.items() if "time" not in k and "per_second" not in k} for e in steps]
    (run_dir / "result.json").write_text(json.dumps({"log": log, "state": trainer.method.state_dict()}))


def first_digit_is_even(completions, **kwargs) -> list[float]:
    return [float(c[:1] in "02468" and c[:1] != "") for c in completions]


def train(trainer, run_dir: Path, seed: int, resume: bool = False) -> None:
    subprocess.run(
        trainer.command(run_dir, seed, resume), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kill_once(trainer, run_dir: Path, seed: int, mode: str, rng: random.Random, step_time: float) -> str:
    """Starts the run and SIGKILLs it: in ``random`` mode at a random moment of a random step (its
    rollout, update or checkpoint), in ``checkpoint`` mode inside a random checkpoint write (the run
    kills itself there). Returns where it was killed."""
    target = rng.randint(0, STEPS - 1)
    env = {**os.environ, KILL_AT: str(target + 1)} if mode == "checkpoint" else None
    process = subprocess.Popen(
        trainer.command(run_dir, seed, resume=False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    if mode == "random":
        while process.poll() is None and trainer.progress(run_dir) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, step_time))
        process.send_signal(signal.SIGKILL)
    process.wait()  # checkpoint mode: until the run has killed itself
    writing = bool(trainer.writing(run_dir))
    return f"after {trainer.progress(run_dir)} steps" + (", mid-checkpoint" if writing else "")


def trial(trainer, out: Path, index: int, seed: int, mode: str, reference: Path, step_time: float) -> dict:
    run_dir = out / f"trial{index:02d}"
    shutil.rmtree(run_dir, ignore_errors=True)
    killed = kill_once(trainer, run_dir, seed, mode, random.Random(index), step_time)
    checkpoints = trainer.resumable(run_dir)
    if checkpoints:
        train(trainer, run_dir, seed, resume=True)
        resumed = f"resumed from the newest of {checkpoints}"
    else:  # killed before its first checkpoint: nothing to resume, start again
        shutil.rmtree(run_dir, ignore_errors=True)
        train(trainer, run_dir, seed)
        resumed = "no checkpoint yet: started again"
    same = trainer.result(run_dir) == trainer.result(reference)
    return {"trial": index, "seed": seed, "mode": mode, "killed": killed, "resume": resumed, "same_metrics": same}


def run_trials(out: Path, trials: int, seeds: int, trainer=Entropic) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    references, step_times = {}, {}
    for seed in range(seeds):
        references[seed] = out / f"reference-seed{seed}"
        shutil.rmtree(references[seed], ignore_errors=True)
        start = time.perf_counter()
        train(trainer, references[seed], seed)
        step_times[seed] = trainer.step_time(references[seed], time.perf_counter() - start)
    results = []
    for index in range(trials):
        seed, mode = index % seeds, ("random", "checkpoint")[index % 2]
        result = trial(trainer, out, index, seed, mode, references[seed], step_times[seed])
        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None, help="default: runs/kill-trials (TRL: runs/kill-trials-trl)")
    parser.add_argument("--trainer", choices=["entropic", "trl"], default="entropic")
    parser.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entropic-worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.entropic_worker:
        return entropic_worker(args.entropic_worker)
    if args.trl_worker:
        trl_worker(args.trl_worker, args.seed, args.resume)
        return 0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trainer = TRL if args.trainer == "trl" else Entropic
    out = Path(args.out or ("runs/kill-trials-trl" if trainer is TRL else "runs/kill-trials"))
    results = run_trials(out, args.trials, args.seeds, trainer)
    passed = sum(r["same_metrics"] for r in results)
    mid = sum("mid-checkpoint" in r["killed"] for r in results)
    print(
        f"{passed} of {len(results)} trials resumed to exactly the uninterrupted metrics ({mid} killed mid-checkpoint)"
    )
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
