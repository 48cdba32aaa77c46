"""The ``task`` section of a training run, and the task it names."""

from __future__ import annotations

from dataclasses import dataclass

from entropic_rl.tasks.datasets import FileTask, resolve_template
from entropic_rl.tasks.synthetic import ArithmeticTask, CountdownTask, WorkedAdditionTask
from entropic_rl.util.options import check_choice, option


@dataclass
class TaskConfig:
    name: str = option("arithmetic", "arithmetic | worked | countdown | file")
    difficulty: int = option(2, "arithmetic, worked: digits per operand; countdown: how many numbers")
    path: str | None = option(None, "file: a .jsonl or .parquet file")
    prompt_field: str | None = option(None, "file: the prompt's field; null: the first of prompt, question, problem")
    answer_field: str = option("answer", "file: the reference answer's field")
    template: str = option(
        "auto",
        "file: auto (by layout: hashes for GSM8K, boxed for MATH) | plain | boxed | hashes | a string with {prompt}",
    )
    reward: str | None = option(None, 'null: the task\'s own; a registered name or "module:function"')
    reward_timeout: float = option(10.0, "seconds a module:function reward may take per response (else it scores 0)")

    def __post_init__(self) -> None:
        check_choice("name", self.name, ("arithmetic", "worked", "countdown", "file"))
        if self.name == "file" and not self.path:
            raise ValueError("path is required when name is file")
        resolve_template(self.template)
        if not self.reward_timeout > 0:
            raise ValueError(f"reward_timeout must be > 0, got {self.reward_timeout}")


def build_task(config: TaskConfig, seed: int):
    """The task a ``task`` section names; ``seed`` picks the problems of a synthetic task and the
    order of a file's."""
    if config.name == "arithmetic":
        return ArithmeticTask(digits=config.difficulty, seed=seed)
    if config.name == "worked":
        return WorkedAdditionTask(digits=config.difficulty, seed=seed)
    if config.name == "countdown":
        return CountdownTask(n_numbers=config.difficulty, seed=seed)
    return FileTask(config.path, config.prompt_field, config.answer_field, seed=seed, template=config.template)
