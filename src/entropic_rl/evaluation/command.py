"""``entropic eval``: its configuration (the same ``key=value`` overrides as every command) and its run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from entropic_rl.evaluation.passk import ks_up_to
from entropic_rl.evaluation.runner import Sampling, data_name, evaluate_examples, markdown_table, mean_row
from entropic_rl.models import choose_device, load_model
from entropic_rl.tasks import FileTask, get_reward, resolve_template
from entropic_rl.tasks.rewards import REWARD_TIMEOUT_S
from entropic_rl.util.options import check_at_least, check_choice, option


@dataclass
class EvalCommand:
    model: str | None = option(None, "a Hugging Face model folder, a checkpoint, a run directory, or smollm2")
    data: list[str] = option(factory=list, help="JSONL or Parquet files, e.g. data=a.jsonl or data=[a.jsonl,b.jsonl]")
    k: list[int] | None = option(None, "k of pass@k, e.g. k=1,4,8; null: 1, 2, 4, ... up to sampling.n")
    limit: int | None = option(None, "only the first this many problems of each file")
    template: str = option(
        "auto", "auto (by layout: hashes for GSM8K, boxed for MATH) | plain | boxed | hashes | a string with {prompt}"
    )
    prompt_field: str | None = option(None, "null: the first of prompt, question, problem")
    answer_field: str = option("answer", "the reference answer's field")
    reward: str | None = option(None, "checker by name or module:function; null: from the file's layout")
    reward_timeout: float = option(REWARD_TIMEOUT_S, "seconds a module:function reward may take per response (else 0)")
    sampling: Sampling = option(factory=Sampling, help="how answers are sampled")
    dtype: str = option("float32", "float32 | bfloat16 | float16")
    device: str = option("auto", "auto: cuda when available, else cpu")
    seed: int = option(0, "seed of the sampling (the same for each file)")
    out: str | None = option(None, "output folder; null: evals/<model folder name>")

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        resolve_template(self.template)
        if not self.reward_timeout > 0:
            raise ValueError(f"reward_timeout must be > 0, got {self.reward_timeout}")
        if self.limit is not None:
            check_at_least("limit", self.limit, 1)
        if self.k is not None and any(not 1 <= k <= self.sampling.n for k in self.k):
            raise ValueError(f"k must be between 1 and sampling.n={self.sampling.n}, got {self.k}")


def run_eval(config: EvalCommand, model_dir: Path) -> tuple[Path, str]:
    """Evaluate the model in ``model_dir``; write results.json, results.md and samples.jsonl.
    Returns the output folder and the markdown table."""
    if not config.data:
        raise ValueError("data: required, e.g. data=../shared/data/gsm8k_test.jsonl")
    datasets = {}
    for path in config.data:
        data = FileTask(path, config.prompt_field, config.answer_field, template=config.template, limit=config.limit)
        datasets[data_name(path)] = (
            data.examples_list,
            get_reward(config.reward or data.default_reward, config.reward_timeout, field="reward"),
        )
    model, tokenizer = load_model(model_dir, config.dtype, choose_device(config.device))
    results = {}
    for name, (examples, reward_fn) in datasets.items():
        torch.manual_seed(config.seed)
        ks = config.k or ks_up_to(config.sampling.n)
        results[name] = evaluate_examples(model, tokenizer, examples, reward_fn, config.sampling, ks, label=name)

    out = Path(config.out or f"evals/{model_dir.name}")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.jsonl").open("w") as f:
        for name, result in results.items():
            for sample in result.pop("samples"):
                f.write(json.dumps({"data": name, **sample}) + "\n")
    report = {"model": str(model_dir), "settings": asdict(config), "results": results}
    if len(results) > 1:
        report["mean"] = mean_row(results)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    table = markdown_table(results)
    (out / "results.md").write_text(f"# {model_dir}\n\n{table}")
    return out, table
