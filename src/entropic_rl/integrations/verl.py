"""EntroPIC in verl 0.9 (``pip install entropic-rl[verl]``), loaded by verl itself through the
``verl.plugins`` entry point, so every Ray process (driver, task runner, workers) has it.

What it registers:

- the policy loss ``entropic``: verl's own ``vanilla`` PPO loss (dual clip, verl's aggregation over
  the global batch, rollout-correction weights) with the advantages multiplied per token by
  ``1 + alpha * sign(A) * C`` (``core.entropic_weights``, C the confident tokens under the current
  policy), which is exactly the ``entropic`` method's loss with ``normalize: exact``;
- ``EntroPICPolicyLossConfig``, the ``policy_loss`` config class with the EntroPIC fields (verl's
  stock one rejects unknown keys);
- the trainer ``entropic`` (``trainer.v1.trainer_mode=entropic``): verl's synchronous trainer plus
  the controller on the driver. verl computes the entropy of each batch with its old-policy
  log-probs; the controller turns its token mean (over the whole batch, every worker's share) into
  alpha once per rollout, before the update on that batch, counting the optimizer steps the batch
  serves; alpha reaches the workers in the batch's meta data, so every worker applies the same
  value. The controller state is saved in each ``global_step_N`` folder and restored on resume.

``delivery`` chooses how alpha reaches the loss:

- ``loss`` (default): the trainer installs a worker loss (verl's ``ppo_loss``, reading alpha from
  the batch) through the workers' ``set_loss_fn``; exact.
- ``advantages``: for set-ups where the workers' loss cannot be replaced. The driver multiplies the
  advantages by the weights before the update, with the confident tokens taken under the OLD
  policy (the one that computed the log-probs). Exact for the first mini-batch of an on-policy
  step; an approximation after the policy has moved (several mini-batches or epochs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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

from entropic_rl.core import confident_mask, entropic_weights
from entropic_rl.methods import EntroPIC, EntroPICConfig, LossSettings, Window
from entropic_rl.trainer.checkpoint import write_atomically

ALPHA_KEY = "entropic_alpha"  # batch meta data: the alpha of this step
CONTROLLER_FILE = "entropic_controller.json"
DELIVERIES = ("loss", "advantages")


@dataclass
class EntroPICPolicyLossConfig(PolicyLossConfig):
    """``actor_rollout_ref.actor.policy_loss`` with the EntroPIC fields (ALGORITHMS.md §2; defaults
    are the authors' values for an LLM). ``alpha`` is not a setting: the worker loss sets it from
    the batch on every micro-batch."""

    _mutable_fields = PolicyLossConfig._mutable_fields | {"alpha"}

    loss_mode: str = "entropic"
    target_entropy: float | None = 0.1
    schedule: dict | None = None
    kp: float = 1.0
    ki: float = 0.01
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    threshold: float = 0.95
    anti_windup: bool = True
    delivery: str = "loss"
    alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.loss_mode != "entropic":
            raise ValueError(f"policy_loss.loss_mode must be entropic with this config class, got {self.loss_mode!r}")
        if self.delivery not in DELIVERIES:
            raise ValueError(f"policy_loss.delivery must be one of {DELIVERIES}, got {self.delivery!r}")
        self.method_config()  # validates the EntroPIC fields, naming them

    def method_config(self) -> EntroPICConfig:
        return EntroPICConfig.from_fields(self, prefix="", label="policy_loss.")


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
    """verl's ``vanilla`` loss with the advantages reweighted by EntroPIC (alpha and threshold
    from ``config.policy_loss``)."""
    settings = config.policy_loss
    if not isinstance(settings, EntroPICPolicyLossConfig):
        raise TypeError(
            "policy_loss.loss_mode=entropic needs "
            "actor_rollout_ref.actor.policy_loss._target_=entropic_rl.integrations.verl.EntroPICPolicyLossConfig"
        )
    confident = confident_mask(log_prob, response_mask, settings.threshold)
    weights = entropic_weights(advantages, confident, settings.alpha)
    vanilla = get_policy_loss_fn("vanilla")
    loss, metrics = vanilla(
        old_log_prob, log_prob, advantages * weights, response_mask, loss_agg_mode, config, rollout_is_weights
    )
    metrics["actor/entropic_alpha"] = settings.alpha
    metrics["actor/entropic_confident_frac"] = (confident.sum() / response_mask.sum().clamp(min=1)).item()
    return loss, metrics


class EntroPICWorkerLoss:
    """The workers' loss under ``delivery: loss``: verl's ``ppo_loss`` with alpha taken from the
    batch's meta data. Built on the driver and sent to every worker with ``set_loss_fn``."""

    def __init__(self, actor_config) -> None:
        self.config = actor_config

    def __call__(self, model_output, data, dp_group=None):
        alpha = tu.get_non_tensor_data(data=data, key=ALPHA_KEY, default=None)
        if alpha is None:
            raise RuntimeError(f"no {ALPHA_KEY} in the batch: the entropic loss needs trainer.v1.trainer_mode=entropic")
        self.config.policy_loss.alpha = float(alpha)
        return ppo_loss(self.config, model_output, data, dp_group)


@register_trainer("entropic")
class EntroPICTrainer(PPOTrainerSync):
    """verl's synchronous trainer with the EntroPIC controller on the driver."""

    def __init__(self, config) -> None:
        self.policy_loss_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor.policy_loss)
        if not isinstance(self.policy_loss_config, EntroPICPolicyLossConfig):
            raise ValueError(
                "trainer.v1.trainer_mode=entropic: set "
                "actor_rollout_ref.actor.policy_loss._target_=entropic_rl.integrations.verl.EntroPICPolicyLossConfig"
            )
        if self.policy_loss_config.delivery == "loss" and is_distillation_enabled(config.get("distillation")):
            raise ValueError(
                "distillation.enabled: its worker loss would be replaced by EntroPIC's; use "
                "actor_rollout_ref.actor.policy_loss.delivery=advantages with distillation"
            )
        self.entropic = EntroPIC(self.policy_loss_config.method_config(), LossSettings())
        self._window: Window | None = None  # entropy of the batch being trained on
        # verl switches on trainer_mode == "sync" in several places (and reads trainer.v1.sync.*);
        # this trainer is that one, plus the controller.
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)

    def on_init_end(self) -> None:
        if self.policy_loss_config.delivery == "loss":
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
        # Alpha for the update on this batch, from this batch's entropy under the policy that sampled
        # it (here, not when it is measured: no update during critic warm-up, no integration either).
        self.entropic.begin_step(self._window)
        metrics.update({f"entropic/{name}": value for name, value in self.entropic.end_step().items()})
        if self.policy_loss_config.delivery == "loss":
            batch.extra_info[ALPHA_KEY] = self.entropic.alpha
        else:
            self._reweight_advantages(batch)
        return super()._update_actor(batch, metrics)

    def _reweight_advantages(self, batch) -> None:
        fields = ["advantages", "old_log_probs", "response_mask"]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        padded = data.to_padded_tensor()  # verl stores responses as nested (jagged) tensors
        # The old policy's confident tokens: the current one is not known on the driver.
        confident = confident_mask(padded["old_log_probs"], padded["response_mask"], self.entropic.config.threshold)
        weights = entropic_weights(padded["advantages"], confident, self.entropic.alpha)
        advantages = response_to_nested(padded["advantages"] * weights, data["response_mask"])
        fields = TensorDict({"advantages": advantages}, batch_size=data.batch_size)
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)

    def _save_checkpoint(self) -> None:
        # Written before verl's files, so every checkpoint verl marks as the latest has it.
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / CONTROLLER_FILE, json.dumps(self.entropic.state_dict()))
        super()._save_checkpoint()

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        if self.global_steps == 0:
            return  # training from scratch
        trainer = self.config.trainer
        folder = trainer.resume_from_path if trainer.resume_mode == "resume_path" else None
        folder = Path(folder or Path(trainer.default_local_dir) / f"global_step_{self.global_steps}")
        path = folder / CONTROLLER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no EntroPIC controller state in this checkpoint")
        self.entropic.load_state_dict(json.loads(path.read_text()))
