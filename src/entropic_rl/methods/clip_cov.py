"""``clip-cov`` (arXiv 2505.22617, ALGORITHMS.md §3): among the valid tokens that PPO does not clip
already and whose covariance ``Cov_t = (A_t - mean A)(lp_t - mean lp)`` lies in (cov_low, cov_high),
draw ``max(1, floor(fraction * N))`` uniformly at random (N valid tokens) and zero their loss.

Zeroing a token's loss is a weight 0 on its advantage (PPO-clip is positively homogeneous in it), so
the loss is the PPO loss on the advantages times the selection's weights. The draw uses torch's
global generator, which checkpoints save and restore.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropic_rl.core import token_covariance
from entropic_rl.methods.base import Method, MethodConfig, MicroBatch
from entropic_rl.util.options import option


@dataclass
class ClipCovConfig(MethodConfig):
    name: str = option("clip-cov", "the entropy-control method")
    fraction: float = option(2e-4, "share of the valid tokens whose loss is zeroed")
    cov_low: float = option(1.0, "only tokens with covariance above this")
    cov_high: float = option(5.0, "and below this")

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")
        if not self.cov_low < self.cov_high:
            raise ValueError(f"cov_low must be < cov_high, got {self.cov_low} >= {self.cov_high}")


class ClipCov(Method):
    config_class = ClipCovConfig

    def __init__(self, config: ClipCovConfig, loss_settings=None) -> None:
        super().__init__(config, loss_settings)
        self.selected = self.candidates = 0.0

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mb, c, s = micro_batch, self.config, self.loss_settings
        valid = mb.mask > 0
        with torch.no_grad():
            ratio = torch.exp(torch.clamp(mb.log_prob - mb.old_log_prob, -20.0, 20.0))
            clipped = (mb.advantages * torch.clamp(ratio, 1 - s.clip_low, 1 + s.clip_high)) < mb.advantages * ratio
            cov = token_covariance(mb.advantages, mb.log_prob, mb.mask)
            candidates = (valid & ~clipped & (cov > c.cov_low) & (cov < c.cov_high)).nonzero()
            count = min(len(candidates), max(1, int(c.fraction * valid.sum().item())))
            chosen = candidates[torch.randperm(len(candidates), device=candidates.device)[:count]]
            weights = torch.ones_like(mb.advantages)
            weights[chosen[:, 0], chosen[:, 1]] = 0.0
        self.selected, self.candidates = float(count), float(len(candidates))
        return self.ppo_loss(mb, mb.advantages * weights)

    def metrics(self) -> dict[str, float]:
        return {"clip-cov/selected": self.selected, "clip-cov/candidates": self.candidates}
