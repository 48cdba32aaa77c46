"""Adaptive entropy control: ``aec``, Skywork-OR1's (ALGORITHMS.md §3), and ``aec-trl``, the same rule
as TRL implements it.

After each step, with the entropy estimate ``e`` of the step:

    c <- clip(c + delta if e < target else c - delta, 0, c_max)

and the bonus ``c * agg(H_t)`` is applied at the next step only if ``e < target``. ``aec`` estimates
``e = -mean(lp_old)`` over the valid tokens of the step's data (the sampled tokens), with Skywork's
settings. ``aec-trl`` is TRL 1.16's ``use_adaptive_entropy`` (``GRPOTrainer.compute_loss``,
trl/trainer/grpo_trainer.py, and its ``GRPOConfig`` defaults): ``e`` the token mean of the full-
vocabulary entropy of the step's training pass (the current policy), ``<=`` where Skywork has ``<``,
delta 5e-3 and c_max 1.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from entropic_rl.methods.base import Method, MethodConfig, MicroBatch, Window
from entropic_rl.methods.entropy_bonus import bonus_term
from entropic_rl.util.options import option


@dataclass
class AECConfig(MethodConfig):
    name: str = option("aec", "the entropy-control method")
    target_entropy: float = option(0.2, "target of the sampled-token entropy estimate -mean(lp_old) (nats)")
    delta: float = option(1e-4, "step of the coefficient per optimizer step")
    coef_max: float = option(5e-3, "upper bound of the coefficient")
    coef_init: float = option(0.0, "the coefficient before the first step")

    def __post_init__(self) -> None:
        for name in ("target_entropy", "delta", "coef_max", "coef_init"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.coef_init > self.coef_max:
            raise ValueError(f"coef_init must be <= coef_max, got {self.coef_init} > {self.coef_max}")


class AEC(Method):
    config_class = AECConfig

    def __init__(self, config: AECConfig, loss_settings=None) -> None:
        super().__init__(config, loss_settings)
        self.coef = config.coef_init  # for the next step
        self.apply_next = False  # was the last estimate below the target?
        self.coef_now, self.apply_now, self.estimate = self.coef, False, math.nan  # this step's

    def update(self, window: Window) -> None:
        # This step uses what the previous step's estimate decided; this step's data decide the next.
        self.coef_now, self.apply_now = self.coef, self.apply_next
        if window.token_count > 0 and math.isfinite(window.logprob_sum):
            c = self.config
            self.estimate = -window.logprob_sum / window.token_count
            below = self.estimate < c.target_entropy
            self.coef = min(max(self.coef + (c.delta if below else -c.delta), 0.0), c.coef_max)
            self.apply_next = below

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, metrics = self.ppo_loss(micro_batch)
        if self.apply_now:
            loss = loss - self.coef_now * bonus_term(micro_batch, micro_batch.entropy, self.loss_settings.agg)
        return loss, metrics

    def metrics(self) -> dict[str, float]:
        return {
            "aec/coef": self.coef_now if self.apply_now else 0.0,  # the coefficient this step applied
            "aec/estimate": self.estimate,
            "aec/target": self.config.target_entropy,
        }

    _STATE = ("coef", "apply_next", "coef_now", "apply_now", "estimate")

    def state_dict(self) -> dict:
        state = {name: getattr(self, name) for name in self._STATE}
        state["estimate"] = None if math.isnan(self.estimate) else self.estimate  # JSON has no nan
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self._STATE:
            setattr(self, name, state[name])
        self.estimate = math.nan if self.estimate is None else self.estimate


@dataclass
class AECTRLConfig(AECConfig):
    name: str = option("aec-trl", "the entropy-control method")
    target_entropy: float = option(0.2, "target of the training pass's mean token entropy (nats): TRL's entropy_target")
    delta: float = option(5e-3, "step of the coefficient per optimizer step: TRL's entropy_coef_delta")
    coef_max: float = option(1.0, "upper bound of the coefficient: TRL's entropy_coef_max")
    coef_init: float = option(0.0, "the coefficient before the first step: TRL's entropy_coef")


class AECTRL(AEC):
    """``aec`` as TRL measures and gates: the estimate of a step is the mean entropy of its own
    training pass, so the coefficient it decides is updated at the next step's start, before that
    step's losses; no bonus before the first measurement."""

    config_class = AECTRLConfig

    def __init__(self, config: AECTRLConfig, loss_settings=None) -> None:
        super().__init__(config, loss_settings)
        self.entropy_sum = self.entropy_count = 0.0  # this step's training pass, over its micro-batches

    def update(self, window: Window) -> None:
        if self.entropy_count > 0:
            c = self.config
            self.estimate = self.entropy_sum / self.entropy_count
            below = self.estimate <= c.target_entropy
            self.coef = min(max(self.coef + (c.delta if below else -c.delta), 0.0), c.coef_max)
            self.apply_next = below
        self.entropy_sum = self.entropy_count = 0.0
        self.coef_now, self.apply_now = self.coef, self.apply_next

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = micro_batch.mask
        self.entropy_sum += (micro_batch.entropy.detach() * mask).sum().item()
        self.entropy_count += mask.sum().item()
        return super().loss(micro_batch)

    def metrics(self) -> dict[str, float]:
        # The estimate this step's training pass gives (it decides the next step), as aec logs its own.
        this_step = self.entropy_sum / self.entropy_count if self.entropy_count else self.estimate
        return {**super().metrics(), "aec/estimate": this_step}

    _STATE = (*AEC._STATE, "entropy_sum", "entropy_count")
