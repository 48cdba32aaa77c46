"""EntroPIC with TRL on GSM8K: ``EntroPICGRPOTrainer`` in place of ``GRPOTrainer``, nothing else changes.

One process (CPU or one GPU):

    python examples/trl_gsm8k.py --model smollm2 --output_dir runs/trl-gsm8k --max_steps 20

Several GPUs (DDP, or DeepSpeed ZeRO-3 with examples/accelerate/zero3.yaml):

    accelerate launch --config_file examples/accelerate/ddp.yaml --num_processes 8 \
        examples/trl_gsm8k.py --model /path/to/Qwen2.5-Math-7B --output_dir runs/trl-gsm8k --bf16 true

Every GRPOConfig option works on the command line (or in a YAML file given with --config), plus
the EntroPIC fields (--entropic_target_entropy, --entropic_kp, ...; docs/trl.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelerate import PartialState
from datasets import load_dataset
from trl import TrlParser

from entropic_rl.integrations.trl import EntroPICGRPOConfig, EntroPICGRPOTrainer
from entropic_rl.models import load_tokenizer, resolve_model_path
from entropic_rl.tasks.checkers import check_number


@dataclass
class ScriptArguments:
    model: str = field(default="smollm2", metadata={"help": "A Hugging Face model folder, or smollm2."})
    data: str = field(
        default="../shared/data/gsm8k_train.jsonl", metadata={"help": "JSONL with question and answer (#### N)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Only the first LIMIT problems."})
    instruction: str = field(
        default="\nAnswer with the final number after ####.", metadata={"help": "Appended to each question."}
    )


def gsm8k_reward(completions, answer, **_) -> list[float]:
    """1 when the completion's final number equals the reference's (after ####), else 0."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [check_number(text, gold).score for text, gold in zip(texts, answer, strict=True)]


def main() -> None:
    script, args = TrlParser((ScriptArguments, EntroPICGRPOConfig)).parse_args_and_config()
    with PartialState().main_process_first():  # smollm2 is converted once, by the first process
        folder = resolve_model_path(script.model, "--model")
    dataset = load_dataset("json", data_files=script.data, split="train")
    if script.limit is not None:
        dataset = dataset.select(range(min(script.limit, len(dataset))))
    dataset = dataset.map(lambda row: {"prompt": [{"role": "user", "content": row["question"] + script.instruction}]})

    trainer = EntroPICGRPOTrainer(
        model=str(folder),
        reward_funcs=gsm8k_reward,
        args=args,
        train_dataset=dataset,
        processing_class=load_tokenizer(folder),
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    metrics = trainer.method.metrics()
    # Every process prints the same numbers: the controller sees entropy summed over all of them.
    print(
        f"EntroPIC controller on process {trainer.accelerator.process_index}: "
        f"alpha={metrics['entropic/alpha']:.6g} integral={metrics['entropic/integral']:.6g} "
        f"entropy={metrics['entropic/entropy']}"
    )


if __name__ == "__main__":
    main()
