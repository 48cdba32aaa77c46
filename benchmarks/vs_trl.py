"""The built-in trainer (``entropic train``) against TRL's ``GRPOTrainer`` on the same work, and
``EntroPICGRPOTrainer`` against ``GRPOTrainer`` (the plug-in's overhead).

Same model (built here and saved as a Hugging Face folder, or SmolLM2), prompts of the same task, group size and
completion length (full length forced on both sides: no <eos> before ``max_new_tokens``), the whole
batch in one micro-batch on both sides, same learning rate, steps and seed, no KL, float32.
Baseline: TRL's ``GRPOTrainer``. The runs are interleaved, ``--repeats`` times, in reversed order
every other time (a later run in one process tends to be slower); the first ``--skip`` steps of
each run are dropped. For each: the median rollout time (sampling, rewards and
any old-log-prob pass), update time (the rest of the step: forward, backward, optimizer), step time,
their completion tokens per second, and each ratio to the baseline's (< 1: faster).

    python benchmarks/vs_trl.py                                   # the tiny Llama on CPU
    python benchmarks/vs_trl.py --workload smollm2 --steps 3 --skip 1 --repeats 1
    python benchmarks/vs_trl.py --workload llama270m \
        --runs trl,trl-entropic,trl-static,trl-bf16,grpo,entropic,grpo-static,grpo-fast,entropic-fast  # needs a GPU

``--runs`` names the trainers (the baseline, ``trl``, always runs): ``trl`` and ``trl-entropic``
(float32, dynamic KV cache), ``trl-static`` (TRL's ``cache_implementation="static"``) and ``trl-bf16``
(TRL's ``bf16``; with both, TRL 1.16 fails: its static cache meets autocast's mixed dtypes); ``grpo`` and ``entropic``
(the built-in trainer, float32, its lean sampler) and their ``-generate`` (``rollout.sampler=generate``:
transformers' ``generate`` with a dynamic cache, as TRL samples), ``-static`` (``generate`` with
``rollout.cache=static``), ``-bf16`` (``model.autocast=bfloat16``) and ``-fast`` (``generate``, static
cache and bf16) variants. A run that fails is
reported and left out of the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
import trl
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.integrations.trl import EntroPICGRPOConfig, EntroPICGRPOTrainer
from entropic_rl.models import char_tokenizer, load_tokenizer, resolve_model_path, seeded_llama
from entropic_rl.tasks import ArithmeticTask, FileTask, get_reward
from entropic_rl.trainer import load_config, train

GSM8K = "../shared/data/gsm8k_train.jsonl"
GSM8K_TEMPLATE = "{prompt}\nAnswer with the final number after ####."


@dataclass(frozen=True)
class Workload:
    model: str  # a Llama size built here (tiny, llama270m), or smollm2
    prompts: int
    group: int
    tokens: int
    lr: float
    task: str  # arithmetic (2 digits) or gsm8k


WORKLOADS = {
    "tiny": Workload("tiny", prompts=16, group=8, tokens=32, lr=1e-4, task="arithmetic"),
    "smollm2": Workload("smollm2", prompts=2, group=4, tokens=64, lr=1e-5, task="gsm8k"),
    "llama270m": Workload("llama270m", prompts=8, group=8, tokens=256, lr=1e-6, task="arithmetic"),
}
LLAMAS = {  # hidden, intermediate, layers, heads, kv heads
    "tiny": (256, 768, 4, 4, 2),
    "small": (512, 1536, 8, 8, 4),  # 27M: benchmarks/scaling.py's middle size
    "llama270m": (1024, 4096, 16, 16, 16),
}


def model_folder(workload: Workload, root: Path) -> Path:
    """The model as a folder both trainers load: a seeded Llama with the character tokenizer, or SmolLM2."""
    if workload.model == "smollm2":
        return resolve_model_path("smollm2", "--workload")
    hidden, intermediate, layers, heads, kv_heads = LLAMAS[workload.model]
    tokenizer = char_tokenizer()
    model = seeded_llama(tokenizer, hidden, intermediate, layers, heads, kv_heads, max_position_embeddings=512)
    folder = root / workload.model
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ours(workload: Workload, folder: Path, method: str, steps: int, out_dir: Path, extra: tuple = ()) -> list[dict]:
    """Per-step rollout, update and step times of ``entropic train``."""
    n = workload.prompts * workload.group
    task = (
        ["task.name=arithmetic", "task.difficulty=2"]
        if workload.task == "arithmetic"
        else ["task.name=file", f"task.path={GSM8K}", f"task.template={GSM8K_TEMPLATE}"]
    )
    config = load_config(
        overrides=[
            f"model.path={folder}",
            *task,
            f"rollout.prompts_per_step={workload.prompts}",
            f"rollout.group_size={workload.group}",
            f"rollout.max_new_tokens={workload.tokens}",
            f"rollout.min_new_tokens={workload.tokens}",
            f"train.steps={steps}",
            f"train.lr={workload.lr}",
            f"train.micro_batch_size={n}",
            f"method.name={method}",
            f"log.out_dir={out_dir}",
            "log.sample_every=0",
            f"log.save_every={steps}",
            "log.tensorboard=false",
            *extra,
        ]
    )
    train(config)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {"rollout": r["perf/rollout_time"], "update": r["perf/update_time"], "step": r["perf/step_time"]}
        for r in records
    ]


def synchronized_clock() -> float:
    """``time.perf_counter()`` once the GPU's queued work, if any, has finished."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class StepClock(TrainerCallback):
    """Times each of a ``Trainer``'s steps, from ``on_step_begin`` to ``on_step_end``: generation,
    forward, backward and the optimizer step. (TRL's own ``step_time`` stops before the optimizer
    step and does not synchronise the GPU.)"""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._start = synchronized_clock()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.times.append(synchronized_clock() - self._start)


def theirs(
    workload: Workload, folder: Path, trainer_class, config_class, steps: int, out_dir: Path, extra: tuple = ()
) -> list[dict]:
    """Per-step rollout, update and step times of TRL's trainer: the step from the trainer's
    ``on_step_begin`` to its ``on_step_end`` (optimizer step included, the GPU synchronised at both
    ends), and the time of its generation (``_generate_and_score_completions``) measured inside it."""
    if workload.task == "arithmetic":
        examples = ArithmeticTask(digits=2, seed=0).examples(0, 10_000)
        rows = [{"prompt": e.prompt, "answer": e.answer} for e in examples]
        reward = get_reward("exact")
    else:
        examples = FileTask(GSM8K, template=GSM8K_TEMPLATE).examples_list
        rows = [{"prompt": [{"role": "user", "content": e.prompt}], "answer": e.answer} for e in examples]
        reward = get_reward("gsm8k")
    by_prompt = {e.prompt: e for e in examples}

    def score(prompts, completions, **_) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        keys = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        return [float(getattr(s, "score", s)) for s in map(reward, texts, (by_prompt[k] for k in keys))]

    args = config_class(
        output_dir=str(out_dir),
        per_device_train_batch_size=workload.prompts * workload.group,
        num_generations=workload.group,
        max_completion_length=workload.tokens,
        generation_kwargs={"min_new_tokens": workload.tokens},
        learning_rate=workload.lr,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=BF16 in extra,
        cache_implementation="static" if STATIC in extra else None,
        gradient_checkpointing=False,  # TRL's GRPOConfig turns it on; the built-in trainer's default is off
        seed=0,
        disable_tqdm=True,
    )
    trainer = trainer_class(
        str(folder), score, args=args, train_dataset=Dataset.from_list(rows), processing_class=load_tokenizer(folder)
    )
    trainer.remove_callback(PrinterCallback)  # the log dict of every step
    rollouts, generate = [], trainer._generate_and_score_completions

    def timed(*a, **k):
        start = synchronized_clock()
        out = generate(*a, **k)
        rollouts.append(synchronized_clock() - start)
        return out

    trainer._generate_and_score_completions = timed
    step_clock = StepClock()
    trainer.add_callback(step_clock)
    trainer.train()
    return [{"rollout": r, "update": s - r, "step": s} for r, s in zip(rollouts, step_clock.times, strict=True)]


STATIC, BF16, GENERATE = "rollout.cache=static", "model.autocast=bfloat16", "rollout.sampler=generate"
PARTS = ("rollout", "update", "step")


def trainers(workload: Workload, steps: int) -> dict:
    """``{key: (name, run(folder, out_dir))}`` of every trainer ``--runs`` can name."""
    runs = {
        "trl": ("TRL GRPOTrainer", lambda f, d: theirs(workload, f, GRPOTrainer, GRPOConfig, steps, d)),
        "trl-entropic": (
            "TRL EntroPICGRPOTrainer",
            lambda f, d: theirs(workload, f, EntroPICGRPOTrainer, EntroPICGRPOConfig, steps, d),
        ),
        "trl-static": (
            "TRL GRPOTrainer, static cache",
            lambda f, d: theirs(workload, f, GRPOTrainer, GRPOConfig, steps, d, STATIC),
        ),
        "trl-bf16": (
            "TRL GRPOTrainer, bf16",
            lambda f, d: theirs(workload, f, GRPOTrainer, GRPOConfig, steps, d, BF16),
        ),
    }
    for method in ("grpo", "entropic"):
        for suffix, extra, label in (
            ("", (), ""),
            ("-generate", (GENERATE,), ", generate"),
            ("-static", (GENERATE, STATIC), ", generate, static cache"),
            ("-bf16", (BF16,), ", bf16 autocast"),
            ("-fast", (GENERATE, STATIC, BF16), ", generate, bf16 autocast + static cache"),
        ):
            runs[method + suffix] = (
                f"entropic train, {method}{label}",
                lambda f, d, m=method, e=extra: ours(workload, f, m, steps, d, e),
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", default="trl,trl-entropic,grpo,entropic", help="comma-separated trainer keys")
    args = parser.parse_args()
    if args.workload == "llama270m" and not torch.cuda.is_available():
        raise SystemExit("error: --workload llama270m needs a GPU")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    workload = WORKLOADS[args.workload]
    available = trainers(workload, args.steps)
    keys = ["trl", *(k for k in args.runs.split(",") if k != "trl")]
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise SystemExit(f"error: --runs: unknown {', '.join(unknown)}; known: {', '.join(available)}")
    runs = dict(available[k] for k in keys)
    times: dict[str, list[dict]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(workload, Path(tmp))
        params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(folder).parameters())
        for repeat in range(args.repeats):
            order = list(runs.items()) if repeat % 2 == 0 else list(runs.items())[::-1]  # no favoured position
            for i, (name, run) in enumerate(order):
                try:
                    steps = run(folder, Path(tmp) / f"run-{repeat}-{i}")[args.skip :]
                except Exception:  # one trainer failing must not lose the others' numbers
                    print(f"repeat {repeat} {name}: FAILED\n{traceback.format_exc()}", file=sys.stderr)
                    continue
                times[name] += steps
                medians = " ".join(f"{p} {statistics.median(s[p] for s in steps):.3f} s" for p in PARTS)
                print(f"repeat {repeat} {name}: medians {medians}", file=sys.stderr, flush=True)

    tokens = workload.prompts * workload.group * workload.tokens
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"workload {args.workload}: {params / 1e6:.1f}M parameters, {workload.prompts} prompts x {workload.group} "
        f"samples x {workload.tokens} tokens; {device}; {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, trl {trl.__version__}; medians of {args.repeats} x "
        f"{args.steps - args.skip} steps"
    )
    if not times["TRL GRPOTrainer"]:
        raise SystemExit("error: the baseline (TRL GRPOTrainer) failed; no ratios")
    base = {part: statistics.median(s[part] for s in times["TRL GRPOTrainer"]) for part in PARTS}
    header = ["run", "rollout s", "update s", "step s", "tokens/s", "rollout ratio", "update ratio", "step ratio"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, steps in times.items():
        if not steps:
            print(f"| {name} | failed |")
            continue
        median = {part: statistics.median(s[part] for s in steps) for part in PARTS}
        cells = [name, *(f"{median[p]:.3f}" for p in PARTS), f"{tokens / median['step']:.0f}"]
        cells += [f"{median[p] / base[p]:.3f}" for p in PARTS]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
