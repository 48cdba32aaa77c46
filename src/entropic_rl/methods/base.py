"""The interface every entropy-control method satisfies (DESIGN.md, "methods").

The built-in trainer, the TRL plug-in and the verl plug-in talk to a method only through this
interface. The built-in trainer first asks it for the rollout's ``advantages(rewards, ...)`` (GRPO's
by default); then, in this order for each optimizer step (the plug-ins keep their framework's
advantages):

- ``update(window)``: the window update, before the step's micro-batches, with the entropy of the
  data the step trains on under the policy that sampled it (a sum and a count, so a distributed
  caller can all-reduce them first; a caller that measures once per rollout passes the number of
  optimizer steps the rollout serves);
- for each micro-batch, either ``loss(micro_batch)``: the built-in trainer's loss, or
  ``advantage_weights(log_prob, advantages, mask)``: per-token weights on a framework's own
  advantages that turn its PPO loss into this method's loss (the method's config says with
  ``check_advantage_weights()`` whether it has that form);
- ``metrics()``: after the step, the method's metrics, named ``<method>/<quantity>``.

``step_state()`` / ``load_step_state()`` carry the values a step's loss needs (EntroPIC: alpha) from a
distributed driver to its workers; ``state_dict()`` / ``load_state_dict()`` the JSON state saved in
every checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from entropic_rl.core import policy_loss
from entropic_rl.util.options import option

LOSS_METRICS = ("pg_clipfrac", "pg_clipfrac_lower", "ppo_kl")  # policy_loss's metrics of the PPO loss itself


@dataclass
class MethodConfig:
    """Fields every method has. Subclasses add their own, each declared once with ``option``:
    ``--help``, the TRL config and the verl config derive from that declaration."""

    name: str = option("entropic", "the entropy-control method")

    def check_advantage_weights(self) -> None:
        """Raise a ``ValueError`` naming the field unless, with these settings, the method's
        adjustment is a per-token weight on the advantages (what the TRL and verl plug-ins apply)."""
        raise ValueError(f"name: {self.name} changes the loss in a way that is not an advantage weight")

    @classmethod
    def for_framework(cls, source, prefix: str = "", label: str = ""):
        """The config from the fields ``prefix + name`` of a framework's config (see
        ``with_method_fields``), checked to be a per-token advantage weight, the form in which the
        plug-ins apply a method; an error names the field as ``label + prefix + name``."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name != "name":
                value = getattr(source, prefix + field.name)
                values[field.name] = dict(value) if isinstance(value, Mapping) else value  # Hydra: DictConfig
        try:
            config = cls(**values)
            config.check_advantage_weights()
        except ValueError as exc:
            raise ValueError(f"{label}{prefix}{exc}") from None
        return config


def with_method_fields(config_class: type[MethodConfig], prefix: str = "", retype: Callable = lambda hint: hint):
    """Class decorator, applied under ``@dataclass``: adds every field of ``config_class`` (but
    ``name``) as ``prefix + name`` with the same default and help text, ``retype`` mapping its type
    hint (a framework's parser may need another). So a framework's config derives its method fields
    from the one declaration."""
    hints = typing.get_type_hints(config_class)

    def add(cls: type) -> type:
        annotations = dict(inspect.get_annotations(cls))
        for field in dataclasses.fields(config_class):
            if field.name == "name":
                continue
            annotations[prefix + field.name] = retype(hints[field.name])
            setattr(cls, prefix + field.name, dataclasses.field(default=field.default, metadata=field.metadata))
        cls.__annotations__ = annotations
        return cls

    return add


@dataclass
class LossSettings:
    """The base PPO-clip settings the trainer hands to its method (``train.*``, the configured
    response length for the aggregation modes that divide by it, and the sampling temperature)."""

    agg: str = "token-mean"
    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_c: float = 3.0
    max_len: int | None = None
    temperature: float = 1.0

    def policy_loss_kwargs(self) -> dict:
        """The arguments of ``core.policy_loss`` these settings fix."""
        return {"agg": self.agg, "clip_low": self.clip_low, "clip_high": self.clip_high, "clip_c": self.clip_c}


@dataclass
class Window:
    """Entropy of the data an optimizer step trains on, under the policy that sampled it, as a sum and
    a count, and the number of optimizer steps it stands for (a framework that measures once per
    rollout and then takes several steps passes that number, so the integral grows by one error per
    step)."""

    entropy_sum: float
    token_count: float
    optimizer_steps: float = 1.0
    logprob_sum: float = float("nan")  # of the sampled tokens, when the caller has it (AEC's estimate)
    mixed: float | None = None  # share of sequences with a non-zero advantage (auto gains freeze near 0)

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
    logits: torch.Tensor | None = None  # the response logits, with grad (for methods that need them)


class Method(ABC):
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    off_policy_only: ClassVar[str] = ""  # why the method does nothing on-policy, where that is so

    def __init__(self, config: MethodConfig, loss_settings: LossSettings | None = None) -> None:
        self.config = config
        self.loss_settings = loss_settings or LossSettings()

    def advantages(self, rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
        """Per-response advantages from rewards (groups of ``group_size`` consecutive responses):
        ``kind`` grpo, (R - mean_g) / (std_g + 1e-6), or drgrpo, R - mean_g. A method that trains on
        other advantages (NSR) overrides this."""
        return group_advantages(rewards, group_size, kind)

    def update(self, window: Window) -> None:  # noqa: B027 - a method without a controller has nothing to do
        pass

    @abstractmethod
    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The micro-batch's loss, scaled so that the micro-batch losses of a mini-batch sum to its
        loss, and its metrics (detached scalar tensors)."""

    def advantage_weights(
        self, log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Detached per-token weights for a framework's advantages, and their metrics. A method whose
        adjustment has this form overrides it, and its config's ``check_advantage_weights``."""
        self.config.check_advantage_weights()
        raise TypeError(f"{type(self).__name__}: its config allows advantage weights, but it computes none")

    def ppo_loss(
        self, mb: MicroBatch, advantages: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The PPO-clip loss of ALGORITHMS.md §1 on the micro-batch (exact normalisation by the
        mini-batch denominator), on ``advantages`` if given, and its ``loss/*`` metrics."""
        loss, metrics = policy_loss(
            mb.log_prob,
            mb.old_log_prob,
            mb.advantages if advantages is None else advantages,
            mb.mask,
            denominator=mb.denominator,
            **self.loss_settings.policy_loss_kwargs(),
        )
        return loss, loss_metrics(metrics)

    def metrics(self) -> dict[str, float]:
        return {}

    def step_state(self) -> dict:
        return {}

    def load_step_state(self, state: dict) -> None:  # noqa: B027 - nothing to load by default
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless by default
        pass


def group_advantages(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """GRPO: (R - mean_g) / (std_g + 1e-6); Dr.GRPO: R - mean_g (no std)."""
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(1, keepdim=True)
    if kind == "grpo":
        centred = centred / (grouped.std(1, keepdim=True) + 1e-6)
    return centred.reshape(-1)


def loss_metrics(metrics: dict[str, torch.Tensor], method: str | None = None) -> dict[str, torch.Tensor]:
    """``policy_loss`` metrics under the shared names: the PPO loss's as ``loss/<name>``, the
    rest (EntroPIC's confident fraction and weights) as ``<method>/<name>``, or dropped without one."""
    named = {f"loss/{name}": value for name, value in metrics.items() if name in LOSS_METRICS}
    if method is not None:
        named |= {f"{method}/{name}": value for name, value in metrics.items() if name not in LOSS_METRICS}
    return named
