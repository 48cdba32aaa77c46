"""How step time and peak memory grow with completion length and batch, for the built-in trainer
(``entropic train``, method grpo) and TRL's ``GRPOTrainer``, on the tiny Llama of ``vs_trl.py``.

Points: completion length 32, 128, 512 at 64 completions a step (8 prompts x 8), and 16, 64, 256
completions at length 128; full-length completions forced, the whole batch in one micro-batch, the
settings of ``vs_trl.py`` otherwise. Each (trainer, point) runs ``--steps`` steps in a fresh process;
step time is the median after the first step; memory is the process's peak resident set (CPU) or
peak allocated CUDA memory (GPU), minus what it held before training. Writes a Markdown table and a
figure.

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

LENGTHS = (32, 128, 512)  # at BATCH
BATCHES = (16, 64, 256)  # at LENGTH
BATCH, LENGTH, GROUP = 64, 128, 8
TRAINERS = ("entropic train", "TRL GRPOTrainer")


def measure(trainer: str, batch: int, length: int, steps: int) -> dict:
    """Run one point in this process; step times and memory."""
    import torch
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from vs_trl import Workload, model_folder, ours, theirs

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    workload = Workload("tiny", prompts=batch // GROUP, group=GROUP, tokens=length, lr=1e-4, task="arithmetic")
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(workload, Path(tmp))
        before = _memory(torch)
        if trainer == "entropic train":
            times = ours(workload, folder, "grpo", steps, Path(tmp) / "run")
        else:
            times = theirs(workload, folder, GRPOTrainer, GRPOConfig, steps, Path(tmp) / "run")
        peak = _memory(torch, peak=True)
    return {"step": statistics.median(t["step"] for t in times[1:]), "memory_mb": (peak - before) / 2**20}


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
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: trainer,batch,length in a fresh process
    args = parser.parse_args()
    if args.point:
        trainer, batch, length = args.point.split(",")
        print(json.dumps(measure(trainer, int(batch), int(length), args.steps)))
        return

    points = sorted({(BATCH, n) for n in LENGTHS} | {(b, LENGTH) for b in BATCHES})
    results = {}
    for batch, length in points:
        for trainer in TRAINERS:
            command = [sys.executable, __file__, "--point", f"{trainer},{batch},{length}", "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[trainer, batch, length] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{trainer}, {batch} x {length}: {results[trainer, batch, length]}", file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "| completions x length | " + " | ".join(f"{t} step s | {t} peak MB" for t in TRAINERS) + " | step ratio |"
    ]
    lines.append("|" + "---|" * (2 * len(TRAINERS) + 2))
    for batch, length in points:
        cells = [f"{batch} x {length}"]
        for trainer in TRAINERS:
            r = results[trainer, batch, length]
            cells += [f"{r['step']:.2f}", f"{r['memory_mb']:.0f}"]
        ratio = results[TRAINERS[0], batch, length]["step"] / results[TRAINERS[1], batch, length]["step"]
        lines.append("| " + " | ".join([*cells, f"{ratio:.2f}"]) + " |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    (out / "scaling.json").write_text(json.dumps({f"{t}|{b}|{n}": r for (t, b, n), r in results.items()}, indent=1))
    figure(results, out / "scaling.png")
    print("\n".join(lines))


def figure(results: dict, path: Path) -> None:
    from entropic_rl.util.figures import plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for row, (quantity, label) in enumerate((("step", "step time (s)"), ("memory_mb", "peak memory (MB)"))):
        for col, (xs, key, xlabel) in enumerate(
            (
                (LENGTHS, lambda n: (BATCH, n), f"completion length ({BATCH} completions)"),
                (BATCHES, lambda b: (b, LENGTH), f"completions per step (length {LENGTH})"),
            )
        ):
            ax = axes[row, col]
            for trainer in TRAINERS:
                ax.plot(xs, [results[(trainer, *key(x))][quantity] for x in xs], marker="o", label=trainer)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
    axes[0, 0].legend()
    fig.suptitle("tiny Llama (3.2M), one optimizer step per rollout; benchmarks/scaling.py")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
