"""The interface every entropy-control method satisfies (DESIGN.md, "methods").

The trainer and the framework integrations talk to a method only through this interface:

- ``begin_step(window)``: once per optimizer step, before its micro-batches, with the entropy
  measured on the mini-batch when its old log-probs were computed (sums and counts, so a
  distributed caller can all-reduce them first);
- ``loss(micro_batch)``: the micro-batch's loss, already scaled so that summing the micro-batch
  losses of a mini-batch gives the mini-batch loss, and its metrics;
- ``end_step()``: after the optimizer step; returns the method's metrics for the step;
- ``state_dict()`` / ``load_state_dict()``: JSON-serialisable state saved in every checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from entropic_rl.core import policy_loss


@dataclass
class MethodConfig:
    """Fields every method has. Subclasses add their own; the loader validates ``method.*``
    against the class registered for ``method.name``."""

    name: str = "entropic"


@dataclass
class LossSettings:
    """The base PPO-clip settings the trainer hands to its method (the ``train.*`` fields)."""

    agg: str = "token-mean"
    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_c: float = 3.0


@dataclass
class Window:
    """Entropy of a mini-batch under the policy that sampled it, as a sum and a count, and the
    number of optimizer steps it stands for (a framework that measures once per rollout and
    then takes several steps passes that number, so the integral grows by one error per step)."""

    entropy_sum: float
    token_count: float
    optimizer_steps: float = 1.0

    @property
    def entropy(self) -> float:
        """The token mean; nan for a window without tokens (the controller skips it)."""
        return self.entropy_sum / self.token_count if self.token_count > 0 else float("nan")


@dataclass
class MicroBatch:
    """One micro-batch of a mini-batch; all tensors are ``(sequences, response_length)``."""

    log_prob: torch.Tensor  # current policy, with grad
    entropy: torch.Tensor  # current policy, with grad
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    denominator: torch.Tensor  # agg_denominator of the whole mini-batch
    share: float  # this micro-batch's sequences / the mini-batch's sequences


class Method(ABC):
    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig, loss_settings: LossSettings) -> None:
        self.config = config
        self.loss_settings = loss_settings

    def begin_step(self, window: Window) -> None:  # noqa: B027 - optional hook, nothing to do by default
        pass

    @abstractmethod
    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def _policy_loss(self, mb: MicroBatch, denominator, **adjustment) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``policy_loss`` of the micro-batch with the trainer's PPO-clip settings; ``adjustment``
        holds the EntroPIC arguments (alpha, threshold, normalize), if any."""
        s = self.loss_settings
        return policy_loss(
            mb.log_prob,
            mb.old_log_prob,
            mb.advantages,
            mb.mask,
            clip_low=s.clip_low,
            clip_high=s.clip_high,
            clip_c=s.clip_c,
            agg=s.agg,
            denominator=denominator,
            **adjustment,
        )

    def end_step(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless by default
        pass
