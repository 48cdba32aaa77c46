"""``entropy-bonus`` (ALGORITHMS.md §3): the PPO loss minus a fixed multiple of the mean token
entropy, with the gradient through the entropy: ``L = L_ppo - c * agg(H_t, m)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropic_rl.core import aggregate
from entropic_rl.methods.base import Method, MethodConfig, MicroBatch
from entropic_rl.util.options import option


@dataclass
class EntropyBonusConfig(MethodConfig):
    name: str = option("entropy-bonus", "the entropy-control method")
    coef: float = option(1e-3, "c: the weight of the entropy bonus")

    def __post_init__(self) -> None:
        if not self.coef >= 0:
            raise ValueError(f"coef must be >= 0, got {self.coef}")


def bonus_term(mb: MicroBatch, entropy: torch.Tensor, agg: str) -> torch.Tensor:
    """``agg(H_t, m)`` of the micro-batch, normalised like the PPO loss (the mini-batch denominator)."""
    return aggregate(entropy, mb.mask, agg, mb.denominator)


class EntropyBonus(Method):
    config_class = EntropyBonusConfig

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, metrics = self.ppo_loss(micro_batch)
        loss = loss - self.config.coef * bonus_term(micro_batch, micro_batch.entropy, self.loss_settings.agg)
        return loss, metrics

    def metrics(self) -> dict[str, float]:
        return {"entropy-bonus/coef": self.config.coef}
