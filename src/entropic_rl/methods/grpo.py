"""``grpo``: the PPO-clip loss of ALGORITHMS.md §1 alone, no entropy control."""

from __future__ import annotations

import torch

from entropic_rl.methods.base import Method, MicroBatch


class GRPO(Method):
    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.ppo_loss(micro_batch)
