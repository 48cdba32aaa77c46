"""EntroPIC in verl 0.9 (``pip install entropic-rl[verl]``), loaded by verl itself through the
``verl.plugins`` entry point, so every Ray process (driver, task runner, workers) has it. It imports
verl, the core and the method, nothing of the built-in trainer.

What it registers:

- the policy loss ``entropic``: verl's own ``vanilla`` PPO loss (dual clip, verl's aggregation over
  the global batch, rollout-correction weights) with the advantages multiplied by the method's
  ``advantage_weights`` (``1 + alpha * sign(A) * C``, C the confident tokens under the current
  policy): the ``entropic`` method with ``normalize: exact``. It refuses to run before the trainer
  has delivered the step's alpha, so a job without ``trainer.v1.trainer_mode=entropic`` fails
  instead of running plain PPO;
- ``EntroPICPolicyLossConfig``, the ``policy_loss`` config class whose fields are the method's own
  (``methods.EntroPICConfig``: same defaults, same help), as verl's stock one rejects unknown keys;
- the trainer ``entropic`` (``trainer.v1.trainer_mode=entropic``): verl's synchronous trainer plus
  the method on the driver. verl computes the entropy of each batch with its old-policy log-probs;
  the method's window update takes its token mean (over the whole batch, every worker's share)
  once per rollout, before the update on that batch, counting the optimizer steps the batch serves.
  The method's step state (alpha) reaches the workers in the batch's meta data, so every worker
  applies the same value. The method's state is saved in each ``global_step_N`` folder and
  restored on resume.

``delivery`` chooses how alpha reaches the loss:

- ``loss`` (default): the trainer installs a worker loss (verl's ``ppo_loss`` with the step state
  from the batch) through the workers' ``set_loss_fn``; exact.
- ``advantages``: for set-ups where the workers' loss cannot be replaced. The driver multiplies the
  advantages by the weights before the update, with the confident tokens taken under the OLD
  policy (the one that computed the log-probs), and the workers run verl's ``vanilla`` loss. Exact
  for the first mini-batch of an on-policy step; an approximation after the policy has moved
  (several mini-batches or epochs).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import transfer_queue as tq
from omegaconf import open_dict
from tensordict import TensorDict
from verl.trainer.distillation import is_distillation_enabled
from verl.trainer.ppo.core_algos import get_policy_loss_fn, register_policy_loss
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import PolicyLossConfig
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import response_to_nested

from entropic_rl.integrations.state_file import load_method_state, save_method_state
from entropic_rl.methods import EntroPIC, EntroPICConfig, Window, with_method_fields
from entropic_rl.util.options import option

STEP_STATE_KEY = "entropic_step_state"  # batch meta data: the method's step state, as JSON
DELIVERIES = ("loss", "advantages")
NOT_DELIVERED = (
    "policy_loss.loss_mode=entropic: the trainer never delivered alpha to this loss (plain PPO would run "
    "instead); set trainer.v1.trainer_mode=entropic, the trainer that runs the EntroPIC controller"
)


@dataclass
@with_method_fields(EntroPICConfig)
class EntroPICPolicyLossConfig(PolicyLossConfig):
    """``actor_rollout_ref.actor.policy_loss`` with the fields of the ``entropic`` method (defaults:
    the authors' values for an LLM) and ``delivery``. ``step_state`` is not a setting: the worker loss
    sets it from each batch."""

    _mutable_fields = PolicyLossConfig._mutable_fields | {"step_state"}

    loss_mode: str = option("entropic", "entropic; the trainer sets vanilla for delivery=advantages")
    delivery: str = option("loss", "how alpha reaches the loss: loss (exact) or advantages (fallback)")
    step_state: str | None = option(None, "the method's step state for this batch (JSON), set by the worker loss")

    def __post_init__(self) -> None:
        expected = ("entropic", "vanilla") if self.delivery == "advantages" else ("entropic",)
        if self.loss_mode not in expected:
            raise ValueError(f"policy_loss.loss_mode must be entropic with this config class, got {self.loss_mode!r}")
        if self.delivery not in DELIVERIES:
            raise ValueError(f"policy_loss.delivery must be one of {DELIVERIES}, got {self.delivery!r}")
        self.method_config()  # checks the method's fields, naming them

    def method_config(self) -> EntroPICConfig:
        return EntroPICConfig.for_framework(self, label="policy_loss.")

    @functools.cached_property
    def method(self) -> EntroPIC:
        """The method on a worker: the weights of the step state the trainer delivered."""
        return EntroPIC(self.method_config())


@register_policy_loss("entropic")
def compute_policy_loss_entropic(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """verl's ``vanilla`` loss with the advantages reweighted by the method, with the step state
    delivered in ``config.policy_loss.step_state``."""
    settings = config.policy_loss
    if not isinstance(settings, EntroPICPolicyLossConfig):
        raise TypeError(
            "policy_loss.loss_mode=entropic needs "
            "actor_rollout_ref.actor.policy_loss._target_=entropic_rl.integrations.verl.EntroPICPolicyLossConfig"
        )
    if settings.step_state is None:
        raise RuntimeError(NOT_DELIVERED)
    settings.method.load_step_state(json.loads(settings.step_state))
    weights, weight_metrics = settings.method.advantage_weights(log_prob, advantages, response_mask)
    vanilla = get_policy_loss_fn("vanilla")
    loss, metrics = vanilla(
        old_log_prob, log_prob, advantages * weights, response_mask, loss_agg_mode, config, rollout_is_weights
    )
    metrics.update({name: value.item() for name, value in weight_metrics.items()})
    return loss, metrics


class EntroPICWorkerLoss:
    """The workers' loss under ``delivery: loss``: verl's ``ppo_loss`` with the method's step state
    taken from the batch's meta data. Built on the driver and sent to every worker with ``set_loss_fn``."""

    def __init__(self, actor_config) -> None:
        self.config = actor_config

    def __call__(self, model_output, data, dp_group=None):
        state = tu.get_non_tensor_data(data=data, key=STEP_STATE_KEY, default=None)
        if state is None:
            raise RuntimeError(f"no {STEP_STATE_KEY} in the batch: " + NOT_DELIVERED)
        self.config.policy_loss.step_state = state
        return ppo_loss(self.config, model_output, data, dp_group)


@register_trainer("entropic")
class EntroPICTrainer(PPOTrainerSync):
    """verl's synchronous trainer with the EntroPIC method on the driver."""

    def __init__(self, config) -> None:
        settings = omega_conf_to_dataclass(config.actor_rollout_ref.actor.policy_loss)
        if not isinstance(settings, EntroPICPolicyLossConfig):
            raise ValueError(
                "trainer.v1.trainer_mode=entropic: set "
                "actor_rollout_ref.actor.policy_loss._target_=entropic_rl.integrations.verl.EntroPICPolicyLossConfig"
            )
        self.delivery = settings.delivery
        if self.delivery == "loss" and is_distillation_enabled(config.get("distillation")):
            raise ValueError(
                "distillation.enabled: its worker loss would be replaced by EntroPIC's; use "
                "actor_rollout_ref.actor.policy_loss.delivery=advantages with distillation"
            )
        self.method = EntroPIC(settings.method_config())
        self._window: Window | None = None  # entropy of the batch being trained on
        with open_dict(config):
            # verl switches on trainer_mode == "sync" in several places (and reads trainer.v1.sync.*);
            # this trainer is that one, plus the controller.
            config.trainer.v1.trainer_mode = "sync"
            if self.delivery == "advantages":  # the driver reweights; the workers run verl's own loss
                config.actor_rollout_ref.actor.policy_loss.loss_mode = "vanilla"
        super().__init__(config)

    def on_init_end(self) -> None:
        if self.delivery == "loss":
            actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
            self.actor_rollout_wg.set_loss_fn(EntroPICWorkerLoss(actor_config))
        super().on_init_end()

    def _compute_old_log_prob(self, batch, metrics: dict):
        batch = super()._compute_old_log_prob(batch, metrics)
        if "actor/entropy" not in metrics:
            raise ValueError(
                "EntroPIC needs the old-policy entropy, which verl does not compute in rollout-correction "
                "bypass mode: set algorithm.rollout_correction.bypass_mode=false"
            )
        # The token mean of the entropies verl just computed, whatever loss_agg_mode is.
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["entropy", "response_mask"]
        )
        padded = data.to_padded_tensor()  # verl stores responses as nested (jagged) tensors
        mask = padded["response_mask"].float()
        actor = self.config.actor_rollout_ref.actor
        mini_batch = actor.ppo_mini_batch_size * self.config.actor_rollout_ref.rollout.n
        steps = max(1, data.batch_size[0] // mini_batch) * actor.ppo_epochs  # optimizer steps on this batch
        self._window = Window((padded["entropy"].float() * mask).sum().item(), mask.sum().item(), steps)
        return batch

    def _update_actor(self, batch, metrics: dict):
        # The window update for this batch, from its entropy under the policy that sampled it (here, not
        # when it is measured: no update during critic warm-up, no integration either), with the share of
        # its sequences that carry a non-zero advantage (gains auto adapts only where there is one).
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages", "response_mask"]
        )
        padded = data.to_padded_tensor()
        mixed = ((padded["advantages"] != 0) & padded["response_mask"].bool()).any(1).float().mean().item()
        self.method.update(replace(self._window, mixed=mixed))
        metrics.update(self.method.metrics())
        if self.delivery == "loss":
            batch.extra_info[STEP_STATE_KEY] = json.dumps(self.method.step_state())
        else:
            self._reweight_advantages(batch)
        return super()._update_actor(batch, metrics)

    def _reweight_advantages(self, batch) -> None:
        fields = ["advantages", "old_log_probs", "response_mask"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        padded = data.to_padded_tensor()  # verl stores responses as nested (jagged) tensors
        # The old policy's confident tokens: the current one is not known on the driver.
        weights, _ = self.method.advantage_weights(
            padded["old_log_probs"], padded["advantages"], padded["response_mask"].float()
        )
        advantages = response_to_nested(padded["advantages"] * weights, data["response_mask"])
        fields = TensorDict({"advantages": advantages}, batch_size=data.batch_size)
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def _save_checkpoint(self) -> None:
        # Written before verl's files, so every checkpoint verl marks as the latest has it.
        save_method_state(Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}", self.method)
        super()._save_checkpoint()

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        if self.global_steps == 0:
            return  # training from scratch
        trainer = self.config.trainer
        folder = trainer.resume_from_path if trainer.resume_mode == "resume_path" else None
        load_method_state(
            Path(folder or Path(trainer.default_local_dir) / f"global_step_{self.global_steps}"), self.method
        )
