"""``w-reinforce`` (ALGORITHMS.md §3): like ``nsr``, but correct responses get a small positive
advantage lambda (0.1) and incorrect ones -1; PPO-clip, raw advantages."""

from __future__ import annotations

from dataclasses import dataclass

from entropic_rl.methods.base import MethodConfig
from entropic_rl.methods.nsr import NSR
from entropic_rl.util.options import option


@dataclass
class WReinforceConfig(MethodConfig):
    name: str = option("w-reinforce", "the entropy-control method")
    positive_weight: float = option(0.1, "lambda: the advantage of a correct response")

    def __post_init__(self) -> None:
        if not self.positive_weight >= 0:
            raise ValueError(f"positive_weight must be >= 0, got {self.positive_weight}")


class WReinforce(NSR):
    config_class = WReinforceConfig

    @property
    def positive_advantage(self) -> float:
        return self.config.positive_weight
