"""``nsr`` (negative sample reinforcement, ALGORITHMS.md §3): train on incorrect responses only, with
the raw advantage -1 (no group normalisation); correct responses get 0. The loss is PPO-clip."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropic_rl.methods.base import Method, MethodConfig, MicroBatch
from entropic_rl.util.options import option


@dataclass
class NSRConfig(MethodConfig):
    name: str = option("nsr", "the entropy-control method")


class NSR(Method):
    config_class = NSRConfig
    positive_advantage = 0.0  # what a correct response gets (W-REINFORCE: lambda)

    def advantages(self, rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
        """Correct (reward >= 1): the positive advantage; incorrect: -1. Not normalised per group."""
        return torch.where(rewards >= 1.0, self.positive_advantage, -1.0)

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.ppo_loss(micro_batch)
