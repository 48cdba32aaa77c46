"""``grpo``: the PPO-clip loss of ALGORITHMS.md §1 alone, no entropy control."""

from __future__ import annotations

import torch

from entropic_rl.core import policy_loss
from entropic_rl.methods.base import Method, MicroBatch


class GRPO(Method):
    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.loss_settings
        return policy_loss(
            micro_batch.log_prob,
            micro_batch.old_log_prob,
            micro_batch.advantages,
            micro_batch.mask,
            clip_low=s.clip_low,
            clip_high=s.clip_high,
            clip_c=s.clip_c,
            agg=s.agg,
            denominator=micro_batch.denominator,
        )
