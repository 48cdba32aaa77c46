"""``grpo``: the PPO-clip loss of ALGORITHMS.md §1 alone, no entropy control."""

from __future__ import annotations

from dataclasses import asdict

import torch

from entropic_rl.core import policy_loss
from entropic_rl.methods.base import Method, MicroBatch, loss_metrics


class GRPO(Method):
    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mb = micro_batch
        loss, metrics = policy_loss(
            mb.log_prob,
            mb.old_log_prob,
            mb.advantages,
            mb.mask,
            normalize="exact",
            denominator=mb.denominator,
            **asdict(self.loss_settings),
        )
        return loss, loss_metrics(metrics)
