"""How step time, throughput and peak memory grow with completion length, batch and model size, for
the built-in trainer (``entropic train``, method grpo) and TRL's ``GRPOTrainer``.

Points: on the tiny Llama of ``vs_trl.py`` (3.2M), completion length 32, 128, 512 at 64
completions a step (8 prompts x 8), and 16, 64, 256 completions at length 128; at 16 completions
(2 prompts x 8) of 64 tokens, the model size: the tiny Llama, a 27M Llama (``small``) on the same
2-digit additions, and SmolLM2-135M-Instruct on GSM8K prompts (its chat template; longer prompts).
Full-length completions forced, the whole batch in one micro-batch, the settings of ``vs_trl.py``
otherwise. Each (trainer, point) runs ``--steps`` steps in a fresh process; step time is the median
after the first step; tokens/s are completion tokens per second of step; memory is the process's
peak resident set (CPU) or peak allocated CUDA memory (GPU), minus what it held before training.
Writes a Markdown table and a figure.

    python benchmarks/scaling.py --out docs/figures/benchmarks
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LENGTHS = (32, 128, 512)  # at BATCH, the tiny model
BATCHES = (16, 64, 256)  # at LENGTH, the tiny model
MODELS = ("tiny", "small", "smollm2")  # at MODEL_BATCH x MODEL_LENGTH
BATCH, LENGTH, GROUP = 64, 128, 8
MODEL_BATCH, MODEL_LENGTH = 16, 64
TRAINERS = ("entropic train", "TRL GRPOTrainer")


def measure(trainer: str, model: str, batch: int, length: int, steps: int) -> dict:
    """Run one point in this process; step times and memory."""
    import torch
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from vs_trl import Workload, model_folder, ours, theirs

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    task, lr = ("gsm8k", 1e-5) if model == "smollm2" else ("arithmetic", 1e-4)
    workload = Workload(model, prompts=batch // GROUP, group=GROUP, tokens=length, lr=lr, task=task)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(workload, Path(tmp))
        before = _memory(torch)
        if trainer == "entropic train":
            times = ours(workload, folder, "grpo", steps, Path(tmp) / "run")
        else:
            times = theirs(workload, folder, GRPOTrainer, GRPOConfig, steps, Path(tmp) / "run")
        peak = _memory(torch, peak=True)
    step = statistics.median(t["step"] for t in times[1:])
    return {"step": step, "tokens_per_s": batch * length / step, "memory_mb": (peak - before) / 2**20}


def _memory(torch, peak: bool = False) -> int:
    """Bytes: CUDA memory allocated (peak or current), else this process's resident set (VmHWM or VmRSS)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
    field = "VmHWM" if peak else "VmRSS"
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="runs/scaling", help="folder for scaling.md and scaling.png")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: trainer,model,batch,length, a fresh process
    args = parser.parse_args()
    if args.point:
        trainer, model, batch, length = args.point.split(",")
        print(json.dumps(measure(trainer, model, int(batch), int(length), args.steps)))
        return

    points = sorted(
        {("tiny", BATCH, n) for n in LENGTHS}
        | {("tiny", b, LENGTH) for b in BATCHES}
        | {(m, MODEL_BATCH, MODEL_LENGTH) for m in MODELS},
        key=lambda p: (MODELS.index(p[0]), p[1], p[2]),
    )
    results = {}
    for point in points:
        for trainer in TRAINERS:
            name = ",".join(map(str, (trainer, *point)))
            command = [sys.executable, __file__, "--point", name, "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[(trainer, *point)] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {results[(trainer, *point)]}", file=sys.stderr, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = " | ".join(f"{t} step s | {t} tokens/s | {t} peak MB" for t in TRAINERS)
    lines = [f"| model | completions x length | {cells} | step ratio |", "|" + "---|" * (3 * len(TRAINERS) + 3)]
    for point in points:
        row = [point[0], f"{point[1]} x {point[2]}"]
        for trainer in TRAINERS:
            r = results[(trainer, *point)]
            row += [f"{r['step']:.2f}", f"{r['tokens_per_s']:.0f}", f"{r['memory_mb']:.0f}"]
        ratio = results[(TRAINERS[0], *point)]["step"] / results[(TRAINERS[1], *point)]["step"]
        lines.append("| " + " | ".join([*row, f"{ratio:.2f}"]) + " |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    (out / "scaling.json").write_text(json.dumps({"|".join(map(str, k)): r for k, r in results.items()}, indent=1))
    figure(results, out / "scaling.png")
    print("\n".join(lines))


def figure(results: dict, path: Path) -> None:
    from entropic_rl.util.figures import plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for row, (quantity, label) in enumerate((("step", "step time (s)"), ("memory_mb", "peak memory (MB)"))):
        for col, (xs, key, xlabel) in enumerate(
            (
                (LENGTHS, lambda n: ("tiny", BATCH, n), f"completion length (tiny, {BATCH} completions)"),
                (BATCHES, lambda b: ("tiny", b, LENGTH), f"completions per step (tiny, length {LENGTH})"),
                (MODELS, lambda m: (m, MODEL_BATCH, MODEL_LENGTH), f"model ({MODEL_BATCH} x {MODEL_LENGTH})"),
            )
        ):
            ax = axes[row, col]
            for trainer in TRAINERS:
                ax.plot(range(len(xs)), [results[(trainer, *key(x))][quantity] for x in xs], marker="o", label=trainer)
            ax.set_yscale("log")
            ax.set_xticks(range(len(xs)), [str(x) for x in xs])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
    axes[0, 0].legend()
    fig.suptitle("one optimizer step per rollout, float32; benchmarks/scaling.py")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
