"""Step time of TRL's ``GRPOTrainer`` with EntroPIC (``EntroPICGRPOTrainer``) over without.

Baseline: ``GRPOTrainer`` with ``GRPOConfig``. Candidate: ``EntroPICGRPOTrainer`` with the same
settings. Both train a small Llama built here (char tokenizer, CPU, float32) on "a+b=" prompts,
``--steps`` optimizer steps from the same seed, ``--repeats`` times, interleaved; the first
``--skip`` steps of each run are dropped. A step is TRL's ``step_time`` metric: generation,
rewards and the update. Printed: the median step time of each and the ratio.

    python benchmarks/trl_step.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.integrations.trl import EntroPICGRPOConfig, EntroPICGRPOTrainer
from entropic_rl.models import char_tokenizer


def right_sum(prompts, completions, **_) -> list[float]:
    """1 when the completion starts with the sum of the prompt's two numbers."""
    return [float(c.startswith(str(prompt_sum(p)))) for p, c in zip(prompts, completions, strict=True)]


def prompt_sum(prompt: str) -> int:
    a, b = prompt.rstrip("=").split("+")
    return int(a) + int(b)


def step_times(trainer_class, config_class, steps: int, out_dir: Path) -> list[float]:
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    args = config_class(
        output_dir=str(out_dir),
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=16,
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
        disable_tqdm=True,
    )
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(10) for b in range(10)]})
    trainer = trainer_class(model, right_sum, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the log dict of every step
    trainer.train()
    return [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    runs = {"GRPOTrainer": (GRPOTrainer, GRPOConfig), "EntroPICGRPOTrainer": (EntroPICGRPOTrainer, EntroPICGRPOConfig)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (trainer_class, config_class) in runs.items():
                run = step_times(trainer_class, config_class, args.steps, Path(tmp) / f"{name}-{repeat}")
                times[name] += run[args.skip :]
                print(f"repeat {repeat} {name}: median {statistics.median(run[args.skip :]):.4f} s", file=sys.stderr)
    base = statistics.median(times["GRPOTrainer"])
    print(f"{'trainer':<22}{'median step (s)':>16}{'ratio':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22}{median:>16.4f}{median / base:>8.3f}")


if __name__ == "__main__":
    main()
