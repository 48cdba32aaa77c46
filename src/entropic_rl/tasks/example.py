"""What every task yields: examples, each a deterministic function of its position."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    prompt: str  # the task text, before any chat template
    answer: str  # the reference answer
    meta: dict = field(default_factory=dict)  # task data a reward may need (e.g. Countdown's numbers)

    @property
    def demonstration(self) -> str:
        """The response the embedded model's warm start is trained on: the answer as written."""
        return self.meta.get("demonstration", self.answer)


def position_rng(seed: int, position: int) -> random.Random:
    """The random stream of one position of a task: the same example whenever it is asked for."""
    return random.Random(seed * 1_000_003 + position)
