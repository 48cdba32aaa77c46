"""EntroPIC in TRL: ``EntroPICGRPOTrainer``, a ``GRPOTrainer`` whose advantages are reweighted per
token by the ``entropic`` method (install with ``pip install entropic-rl[trl]``).

How it maps onto TRL (docs/trl.md has the user-facing version):

- The config's ``entropic_*`` fields are the method's own fields (``methods.EntroPICConfig``: same
  defaults, same help), prefixed.
- The loss is TRL's own, for every ``loss_type``: on each micro-batch the advantages are multiplied
  by the method's ``advantage_weights`` (``1 + alpha * sign(A) * C``, C the confident tokens under
  the current policy). TRL's per-token losses are positively homogeneous in the advantage, so this is
  TRL's loss with its per-token loss multiplied by the weights: the ``entropic`` method with
  ``normalize: exact``.
- The window update, in one of two places:
  - where TRL runs an old-log-prob pass when it generates (vLLM with importance-sampling
    correction; gradient accumulation not a multiple of ``steps_per_generation * num_iterations``,
    e.g. ``num_iterations > 1`` with the default ``steps_per_generation``), the entropies of that
    pass are requested too, and the controller is fed once per generation batch, before any step
    on it, counting the optimizer steps the batch serves (as the built-in trainer and verl do);
  - otherwise (plain on-policy runs: TRL then skips that pass), from the entropies TRL computes in
    the loss, summed over the micro-batches of an optimizer step: alpha of step k comes from step
    k - 1, and the first step uses alpha = 0. That saves a forward pass.
  Either way the sums are all-reduced across processes first, so every process holds the same alpha.
- The method's state is saved in every TRL checkpoint, after TRL's own files, and restored by
  ``resume_from_checkpoint``; ``resume_from_checkpoint=True`` skips checkpoints whose writing was
  cut short (no state file).
"""

from __future__ import annotations

import functools
import json
import operator
import typing
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.integrations.state_file import complete_checkpoint, load_method_state, save_method_state
from entropic_rl.methods import EntroPIC, EntroPICConfig, Window, with_method_fields

PREFIX = "entropic_"


def _dict_or_json(hint):
    """A dict field also takes JSON text, as TRL's own dict fields do: ``dict | str | None``, in the
    order TRL's argument parser reads as "parse a string"."""
    args = typing.get_args(hint)
    if dict not in args:
        return hint
    return functools.reduce(operator.or_, (dict, str, *(a for a in args if a is not dict)))


@dataclass
@with_method_fields(EntroPICConfig, prefix=PREFIX, retype=_dict_or_json)
class EntroPICGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the fields of the ``entropic`` method prefixed ``entropic_`` (defaults: the
    authors' values for an LLM). TRL's own entropy options (``entropy_coef``, ``use_adaptive_entropy``,
    ``top_entropy_quantile``) must stay off."""

    def __post_init__(self) -> None:
        super().__post_init__()
        own = {
            "entropy_coef": self.entropy_coef != 0.0,
            "use_adaptive_entropy": self.use_adaptive_entropy,
            "top_entropy_quantile": self.top_entropy_quantile < 1.0,
        }
        clashing = [name for name, on in own.items() if on]
        if clashing:
            raise ValueError(
                f"{', '.join(clashing)}: TRL's own entropy control cannot be combined with EntroPIC, which "
                "controls entropy itself; leave entropy_coef=0, use_adaptive_entropy=False, top_entropy_quantile=1"
            )
        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            if name.startswith(PREFIX) and dict in typing.get_args(hint) and isinstance(value, str):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{name}: not valid JSON: {exc}") from None
        self.method_config()  # checks every entropic_* field, naming it

    def method_config(self) -> EntroPICConfig:
        return EntroPICConfig.for_framework(self, prefix=PREFIX)


class EntroPICGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with EntroPIC. Takes the same arguments; ``args`` must be an
    ``EntroPICGRPOConfig``. Logs the method's metrics (``entropic/alpha``, ``entropic/entropy``,
    ``entropic/target``, ``entropic/error``, ``entropic/p_term``, ``entropic/i_term``,
    ``entropic/integral``, ``entropic/saturated``, ``entropic/skipped``) and ``entropic/confident_frac``."""

    def __init__(self, model, reward_funcs=None, args: EntroPICGRPOConfig | None = None, **kwargs) -> None:
        if not isinstance(args, EntroPICGRPOConfig):
            raise TypeError(
                f"args must be an EntroPICGRPOConfig (a GRPOConfig with the EntroPIC fields), got {type(args).__name__}"
            )
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self.method = EntroPIC(args.method_config())
        # TRL's own rule for computing old log-probs when it generates (GRPOTrainer._generate_and_score_completions).
        generate_every = args.steps_per_generation * self.num_iterations
        self.windows_before_step = args.gradient_accumulation_steps % generate_every != 0 or (
            self.use_vllm and self.vllm_importance_sampling_correction
        )
        self._steps_per_generation_batch = generate_every / args.gradient_accumulation_steps
        self._measuring = False  # the next log-prob pass is the old-log-prob pass of a generation batch
        self._generation_entropies: torch.Tensor | None = None
        self._step_totals: torch.Tensor | None = None  # this optimizer step: entropy sum, tokens, confident tokens
        self._loss_inputs: dict | None = None  # the micro-batch whose loss is being computed

    def _generate_and_score_completions(self, inputs):
        self._measuring = self.model.training and self.windows_before_step
        output = super()._generate_and_score_completions(inputs)
        if self.model.training and (self._measuring or self.windows_before_step != ("old_per_token_logps" in output)):
            raise RuntimeError("EntroPIC: TRL did not compute old log-probs where expected; check the trl version")
        if self._generation_entropies is not None:
            entropies, self._generation_entropies = self._generation_entropies, None
            mask = _trained_tokens(output)
            moving = _moving_sequences(output["advantages"])
            totals = torch.stack([(entropies * mask).sum(), mask.sum(), moving.sum(), moving.new_tensor(len(moving))])
            entropy_sum, tokens, mixed, sequences = self.accelerator.reduce(totals.float(), "sum").tolist()
            self.method.update(Window(entropy_sum, tokens, self._steps_per_generation_batch, mixed=mixed / sequences))
            self._log(self.method.metrics())
        return output

    def _compute_loss(self, model, inputs):
        self._loss_inputs = inputs
        advantages = inputs["advantages"]
        try:
            return super()._compute_loss(model, inputs)
        finally:  # the same inputs are reused by later iterations (num_iterations > 1): restore them
            inputs["advantages"] = advantages
            self._loss_inputs = None

    def _get_per_token_logps_and_entropies(self, model, *args, compute_entropy=False, **kwargs):
        measuring, self._measuring = self._measuring, False
        log_probs, entropies, aux_loss = super()._get_per_token_logps_and_entropies(
            model, *args, compute_entropy=compute_entropy or measuring, **kwargs
        )
        if measuring:  # the old-log-prob pass of a generation batch
            self._generation_entropies = entropies.detach()
            return log_probs, None, aux_loss
        if self._loss_inputs is not None:  # the loss's own forward pass (not old or reference log-probs)
            self._reweight(self._loss_inputs, log_probs, entropies)
        return log_probs, entropies, aux_loss

    def _reweight(self, inputs: dict, log_probs: torch.Tensor, entropies: torch.Tensor) -> None:
        mask = _trained_tokens(inputs)
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1).expand_as(log_probs)
        weights, metrics = self.method.advantage_weights(log_probs, advantages, mask)
        inputs["advantages"] = advantages * weights
        if not self.model.training:
            return  # evaluation never moves the controller

        tokens, moving = mask.sum(), _moving_sequences(advantages)
        totals = torch.stack(
            [
                (entropies.detach() * mask).sum(),
                tokens,
                metrics["entropic/confident_frac"] * tokens,
                moving.sum(),
                moving.new_tensor(len(moving)),
            ]
        ).float()
        self._step_totals = totals if self._step_totals is None else self._step_totals + totals
        if self.accelerator.sync_gradients:  # the optimizer step's last micro-batch
            totals = self.accelerator.reduce(self._step_totals, reduction="sum").tolist()
            entropy_sum, tokens, confident, mixed, sequences = totals
            self._step_totals = None
            if not self.windows_before_step:  # the lagged path: alpha for the next optimizer step
                self.method.update(Window(entropy_sum, tokens, mixed=mixed / sequences))
                self._log(self.method.metrics())
            self._log({"entropic/confident_frac": confident / max(tokens, 1.0)})

    def _log(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """As TRL's; ``resume_from_checkpoint=True`` takes the newest *complete* checkpoint of
        ``output_dir`` (one holding the controller's state), not merely the newest folder; a
        checkpoint already at ``max_steps`` is refused (transformers would train one step more)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = str(complete_checkpoint(Path(self.args.output_dir), PREFIX_CHECKPOINT_DIR))
        state = Path(resume_from_checkpoint or "") / "trainer_state.json"
        if resume_from_checkpoint and state.is_file() and self.args.max_steps > 0:
            step = json.loads(state.read_text())["global_step"]
            if step >= self.args.max_steps:  # transformers would train one more step
                raise ValueError(
                    f"resume_from_checkpoint: {resume_from_checkpoint} is at step {step} and max_steps is "
                    f"{self.args.max_steps}: nothing to train; raise max_steps to go on"
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        # Written after TRL's own files: a folder without it was cut short and is not resumed from.
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_method_state(folder, self.method)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            load_method_state(Path(checkpoint), self.method)


def _moving_sequences(advantages: torch.Tensor) -> torch.Tensor:
    """1.0 for each sequence with a non-zero advantage (its group's rewards differ), else 0.0."""
    return (advantages.reshape(len(advantages), -1) != 0).any(1).float()


def _trained_tokens(batch: dict) -> torch.Tensor:
    """The tokens TRL's loss trains on: the completion, without tool output."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask
