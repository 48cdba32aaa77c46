"""``aent`` (arXiv 2509.03493, ALGORITHMS.md §3): an entropy bonus on the clamped entropy, with an
adaptive coefficient.

    H~_t = entropy of the softmax renormalised without the floor(p |V|) lowest logits
    L = L_ppo - beta * agg(H~_t)

and once per optimizer step after a warm-up, with H~ the step's mean clamped entropy:

    beta <- clip(beta - eta * [min(0, H~ - H_low) + max(0, H~ - H_high)], beta_min, beta_max)

The mean clamped entropy of a step is measured in its losses; the coefficient update is applied at
the next window update (the start of the next step), which is the same sequence of coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from entropic_rl.core import clamped_entropy
from entropic_rl.methods.base import Method, MethodConfig, MicroBatch, Window
from entropic_rl.methods.entropy_bonus import bonus_term
from entropic_rl.util.options import option


@dataclass
class AEntConfig(MethodConfig):
    name: str = option("aent", "the entropy-control method")
    # The defaults are the authors' released AEntConfig (AReaL recipe/AEnt/aent_args.py), with the
    # adaptive coefficient on (their adaptive_coeff flag; it is off by default there).
    coef_init: float = option(1e-3, "beta before the first update")
    clamp_fraction: float = option(0.2, "p: the fraction of the vocabulary (lowest logits) removed")
    entropy_low: float = option(0.1, "H_low: below it, beta grows")
    entropy_high: float = option(0.5, "H_high: above it, beta shrinks")
    lr: float = option(1e-3, "eta: the step of the coefficient update")
    coef_min: float = option(1e-5, "lower bound of beta")
    coef_max: float = option(1e-2, "upper bound of beta")
    warmup_steps: int = option(0, "optimizer steps before beta adapts (scale it to the run length)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.clamp_fraction < 1.0:
            raise ValueError(f"clamp_fraction must be in [0, 1), got {self.clamp_fraction}")
        if not self.entropy_low <= self.entropy_high:
            raise ValueError(f"entropy_low must be <= entropy_high, got {self.entropy_low} > {self.entropy_high}")
        if not 0 <= self.coef_min <= self.coef_max:
            raise ValueError(f"coef_min must be in [0, coef_max], got {self.coef_min}")
        if not self.coef_min <= self.coef_init <= self.coef_max:
            raise ValueError(f"coef_init must be in [coef_min, coef_max], got {self.coef_init}")
        if self.lr < 0 or self.warmup_steps < 0:
            raise ValueError("lr and warmup_steps must be >= 0")


class AEnt(Method):
    config_class = AEntConfig

    def __init__(self, config: AEntConfig, loss_settings=None) -> None:
        super().__init__(config, loss_settings)
        self.coef = config.coef_init
        self.steps = 0  # window updates so far (optimizer steps)
        self.clamped_sum = self.clamped_count = 0.0  # this step's clamped entropy, over its micro-batches
        self.clamped_mean = math.nan  # the last completed step's

    def update(self, window: Window) -> None:
        c = self.config
        if self.clamped_count > 0:
            self.clamped_mean = self.clamped_sum / self.clamped_count
            if self.steps > c.warmup_steps:
                h = self.clamped_mean
                step = min(0.0, h - c.entropy_low) + max(0.0, h - c.entropy_high)
                self.coef = min(max(self.coef - c.lr * step, c.coef_min), c.coef_max)
        self.clamped_sum = self.clamped_count = 0.0
        self.steps += 1

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if micro_batch.logits is None:
            raise ValueError("aent needs the response logits in the micro-batch")
        s = self.loss_settings
        clamped = clamped_entropy(micro_batch.logits, self.config.clamp_fraction, s.temperature)
        loss, metrics = self.ppo_loss(micro_batch)
        mask = micro_batch.mask
        self.clamped_sum += (clamped.detach() * mask).sum().item()
        self.clamped_count += mask.sum().item()
        return loss - self.coef * bonus_term(micro_batch, clamped, s.agg), metrics

    def metrics(self) -> dict[str, float]:
        step_mean = self.clamped_sum / self.clamped_count if self.clamped_count else math.nan
        return {"aent/coef": self.coef, "aent/clamped_entropy": step_mean}

    def state_dict(self) -> dict:
        # The last step's clamped entropy is part of it: the next window update adapts beta with it.
        return {
            "coef": self.coef,
            "steps": self.steps,
            "clamped_sum": self.clamped_sum,
            "clamped_count": self.clamped_count,
            "clamped_mean": None if math.isnan(self.clamped_mean) else self.clamped_mean,
        }

    def load_state_dict(self, state: dict) -> None:
        self.coef, self.steps = float(state["coef"]), int(state["steps"])
        self.clamped_sum, self.clamped_count = float(state["clamped_sum"]), float(state["clamped_count"])
        self.clamped_mean = math.nan if state["clamped_mean"] is None else state["clamped_mean"]
