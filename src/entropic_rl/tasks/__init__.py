"""Verifiable tasks: synthetic arithmetic and Countdown, and local JSONL/Parquet files.

A task is a deterministic function of a position: ``task.examples(start, count)`` returns
the examples at positions ``start .. start+count-1``, so a checkpoint stores the data
position as one integer and a resumed run sees exactly the prompts it would have seen.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from entropic_rl.tasks.safe_eval import UnsafeExpression, evaluate


@dataclass(frozen=True)
class Example:
    prompt: str  # the task text, before any chat template
    answer: str  # the reference answer
    meta: dict = field(default_factory=dict)  # task data a reward may need (e.g. Countdown's numbers)

    @property
    def demonstration(self) -> str:
        """The response the embedded model's warm start is trained on: the answer as written."""
        return self.meta.get("demonstration", self.answer)


SPACE_PROBABILITY = 0.05


def _rng(seed: int, position: int) -> random.Random:
    return random.Random(seed * 1_000_003 + position)


class ArithmeticTask:
    """``a+b:`` with ``digits``-digit operands (the difficulty knob); the response writes out the
    equation, ``a+b=c``, checked exactly with white space ignored.

    The warm-start demonstrations put a space in each gap between characters with probability
    ``SPACE_PROBABILITY``, as people do now and then. Those gaps are confident tokens with a valid
    alternative, like the many equivalent phrasings of an LLM's answer: the tokens through which
    a method that reweights confident tokens can hold entropy up (docs/training.md).
    """

    default_reward = "exact"

    def __init__(self, digits: int = 2, ops: str = "+", seed: int = 0) -> None:
        if digits < 1:
            raise ValueError(f"task.difficulty (digits) must be >= 1, got {digits}")
        if not ops or set(ops) - set("+-*"):
            raise ValueError(f"task.ops must be a non-empty string of + - *, got {ops!r}")
        self.digits, self.ops, self.seed = digits, ops, seed

    def examples(self, start: int, count: int) -> list[Example]:
        out = []
        for position in range(start, start + count):
            rng = _rng(self.seed, position)
            a, b = (rng.randrange(10**self.digits) for _ in range(2))
            op = rng.choice(self.ops)
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
            equation = f"{a}{op}{b}={value}"
            written = equation[0] + "".join(" " * (rng.random() < SPACE_PROBABILITY) + c for c in equation[1:])
            out.append(Example(f"{a}{op}{b}:", equation, {"demonstration": written}))
        return out


class CountdownTask:
    """Reach ``target`` from ``numbers`` with + - * / and parentheses, each number at most once.

    The difficulty knob is how many numbers are given (targets are built from all of them, so
    every puzzle is solvable). The model writes an expression; the reward parses it with a
    safe AST walk (never ``eval``)."""

    default_reward = "countdown"

    def __init__(self, n_numbers: int = 3, max_number: int = 20, seed: int = 0) -> None:
        if n_numbers < 2:
            raise ValueError(f"task.difficulty (numbers) must be >= 2, got {n_numbers}")
        self.n_numbers, self.max_number, self.seed = n_numbers, max_number, seed

    def examples(self, start: int, count: int) -> list[Example]:
        return [self._example(_rng(self.seed, p)) for p in range(start, start + count)]

    def _example(self, rng: random.Random) -> Example:
        while True:
            numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            expression = str(numbers[0])
            for n in numbers[1:]:
                left = f"({expression})" if not expression.isdigit() else expression
                expression = f"{left}{rng.choice('+-*')}{n}"
            target = evaluate(expression)[0]
            if target.denominator == 1 and 0 < target <= 999:
                break
        listed = " ".join(map(str, numbers))
        return Example(f"{listed}={target}:", expression, {"numbers": numbers, "target": int(target)})


PROMPT_FIELDS = ("prompt", "question", "problem")  # looked for, in this order, when none is given
TEMPLATES = {
    "plain": "{prompt}",
    "boxed": "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}.",
}


def resolve_template(template: str) -> str:
    """A template by name (``plain``, ``boxed``) or a string containing ``{prompt}``."""
    template = TEMPLATES.get(template, template)
    if "{prompt}" not in template:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)} or contain {{prompt}}, got {template!r}")
    return template


class FileTask:
    """Examples from a local JSONL or Parquet file, with configurable field names.

    With ``prompt_field=None`` the first of ``prompt``, ``question``, ``problem`` present is used.
    The default reward follows the file's layout: ``gsm8k`` when answers end in ``#### <number>``
    (GSM8K), ``math`` when prompts are in ``problem`` (MATH-500, AIME), else ``exact``.
    ``template`` wraps each prompt (see ``TEMPLATES``); a chat template, if any, comes after.
    """

    def __init__(
        self,
        path: str,
        prompt_field: str | None = None,
        answer_field: str = "answer",
        seed: int = 0,
        template: str = "plain",
        limit: int | None = None,
    ) -> None:
        self.path = Path(path)
        template = resolve_template(template)
        rows = self._read(self.path)[:limit]
        if not rows:
            raise ValueError(f"{self.path}: no examples")
        if prompt_field is None:
            prompt_field = next((f for f in PROMPT_FIELDS if f in rows[0][1]), PROMPT_FIELDS[0])
        self.examples_list = []
        for line, row in rows:
            for name in (prompt_field, answer_field):
                if name not in row:
                    raise ValueError(f"{self.path}:{line}: missing field {name!r} (fields: {sorted(row)})")
            meta = {k: v for k, v in row.items() if k not in (prompt_field, answer_field)}
            prompt = template.replace("{prompt}", str(row[prompt_field]))
            self.examples_list.append(Example(prompt, str(row[answer_field]), meta))
        if all("####" in e.answer for e in self.examples_list):
            self.default_reward = "gsm8k"
        elif prompt_field == "problem":
            self.default_reward = "math"
        else:
            self.default_reward = "exact"
        self.seed = seed
        self._epoch, self._order = -1, []

    @staticmethod
    def _read(path: Path) -> list[tuple[int, dict]]:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        if path.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
            return [(i + 1, row) for i, row in enumerate(pq.read_table(path).to_pylist())]
        if path.suffix not in (".jsonl", ".json"):
            raise ValueError(f"{path}: expected a .jsonl or .parquet file")
        rows = []
        with path.open(encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
                rows.append((line_number, row))
        return rows

    def examples(self, start: int, count: int) -> list[Example]:
        """Each epoch visits every example once, in an order shuffled per epoch."""
        n = len(self.examples_list)
        out = []
        for position in range(start, start + count):
            epoch, index = divmod(position, n)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, list(range(n))
                _rng(self.seed, epoch).shuffle(self._order)
            out.append(self.examples_list[self._order[index]])
        return out


__all__ = [
    "TEMPLATES",
    "ArithmeticTask",
    "CountdownTask",
    "Example",
    "FileTask",
    "UnsafeExpression",
    "evaluate",
    "resolve_template",
]
