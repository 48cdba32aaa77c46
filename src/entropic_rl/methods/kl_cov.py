"""``kl-cov`` (arXiv 2505.22617, ALGORITHMS.md §3): the ``max(1, floor(k * N))`` valid tokens with
the largest covariance ``Cov_t = (A_t - mean A)(lp_t - mean lp)`` get a KL-like penalty; no ratio
clipping anywhere:

    loss_t = -A_t r_t + beta |lp_t - lp_old_t|   on the selected tokens,   -A_t r_t   on the others
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropic_rl.core import aggregate, token_covariance
from entropic_rl.methods.base import Method, MethodConfig, MicroBatch
from entropic_rl.util.options import option


@dataclass
class KLCovConfig(MethodConfig):
    name: str = option("kl-cov", "the entropy-control method")
    fraction: float = option(2e-3, "k: share of the valid tokens penalised (a fraction, not per cent)")
    coef: float = option(1.0, "beta: weight of |lp - lp_old| on the selected tokens")

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")
        if not self.coef >= 0:
            raise ValueError(f"coef must be >= 0, got {self.coef}")


class KLCov(Method):
    config_class = KLCovConfig
    off_policy_only = "lp equals lp_old up to rounding, so its penalty |lp - lp_old| is 0 and it trains as grpo"

    def __init__(self, config: KLCovConfig, loss_settings=None) -> None:
        super().__init__(config, loss_settings)
        self.selected = 0.0

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mb = micro_batch
        valid = mb.mask > 0
        with torch.no_grad():
            cov = torch.where(valid, token_covariance(mb.advantages, mb.log_prob, mb.mask), -torch.inf)
            count = min(int(valid.sum().item()), max(1, int(self.config.fraction * valid.sum().item())))
            selected = torch.zeros_like(mb.mask, dtype=torch.bool).view(-1)
            selected[cov.view(-1).topk(count).indices] = True
            selected = selected.view_as(mb.mask)
        log_ratio = torch.clamp(mb.log_prob - mb.old_log_prob, -20.0, 20.0)
        per_token = -mb.advantages * torch.exp(log_ratio)
        per_token = per_token + self.config.coef * selected * (mb.log_prob - mb.old_log_prob).abs()
        self.selected = float(count)
        loss = aggregate(per_token, mb.mask, self.loss_settings.agg, mb.denominator)
        return loss, {"loss/ppo_kl": aggregate(-log_ratio.detach(), mb.mask)}

    def metrics(self) -> dict[str, float]:
        return {"kl-cov/selected": self.selected}
