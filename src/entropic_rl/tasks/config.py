"""The ``task`` section of a training run, and the task it names."""

from __future__ import annotations

from dataclasses import dataclass, replace

from entropic_rl.tasks.datasets import TEMPLATES, FileTask, resolve_template
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
        "auto (files by layout: hashes for GSM8K, boxed for MATH; synthetic tasks: plain) | plain | boxed | hashes | "
        "a string with {prompt} (synthetic tasks: for a model given by model.path)",
    )
    reward: str | None = option(None, 'null: the task\'s own; a registered name or "module:function"')
    reward_timeout: float = option(10.0, "seconds a module:function reward may take per response (else it scores 0)")

    def __post_init__(self) -> None:
        check_choice("name", self.name, ("arithmetic", "worked", "countdown", "file"))
        if self.name == "file" and not self.path:
            raise ValueError("path is required when name is file")
        resolve_template(self.template)
        fewest = 2 if self.name == "countdown" else 1  # numbers to combine; digits per operand
        if self.name != "file" and self.difficulty < fewest:
            raise ValueError(f"difficulty must be >= {fewest} for {self.name}, got {self.difficulty}")
        if not self.reward_timeout > 0:
            raise ValueError(f"reward_timeout must be > 0, got {self.reward_timeout}")

    @property
    def wraps_prompts(self) -> bool:
        """Whether the template adds text to a synthetic task's bare prompt (``auto`` there: plain)."""
        return self.template != "auto" and resolve_template(self.template) != TEMPLATES["plain"]


def build_task(config: TaskConfig, seed: int):
    """The task a ``task`` section names; ``seed`` picks the problems of a synthetic task and the
    order of a file's."""
    if config.name == "file":
        return FileTask(config.path, config.prompt_field, config.answer_field, seed=seed, template=config.template)
    if config.name == "arithmetic":
        task = ArithmeticTask(digits=config.difficulty, seed=seed)
    elif config.name == "worked":
        task = WorkedAdditionTask(digits=config.difficulty, seed=seed)
    else:
        task = CountdownTask(n_numbers=config.difficulty, seed=seed)
    return TemplatedTask(task, resolve_template(config.template)) if config.wraps_prompts else task


class TemplatedTask:
    """A synthetic task whose prompts are wrapped in a template, for an instruct model that needs
    to be told what to answer (e.g. ``hashes``: "347+285:\nAnswer with the final number after ####.")."""

    def __init__(self, task, template: str) -> None:
        self.task, self.template = task, template
        self.default_reward = task.default_reward

    def examples(self, start: int, count: int) -> list:
        return [
            replace(e, prompt=self.template.replace("{prompt}", e.prompt)) for e in self.task.examples(start, count)
        ]
