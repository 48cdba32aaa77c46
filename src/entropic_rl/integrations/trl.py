"""EntroPIC in TRL: ``EntroPICGRPOTrainer``, a ``GRPOTrainer`` whose advantages are reweighted
per token by the EntroPIC controller (install with ``pip install entropic-rl[trl]``).

How it maps onto TRL (docs/trl.md has the user-facing version):

- The loss is TRL's own, for every ``loss_type``: on each micro-batch the advantages are multiplied
  by ``1 + alpha * sign(A) * C`` (``core.entropic_weights``, C the confident tokens under the current
  policy), which is exactly the ``entropic`` method's loss with ``normalize: exact``.
- Entropy is the one TRL already computes for its ``entropy`` metric (logits / temperature, the
  tokens the loss trains on). Its sum and count are accumulated over the micro-batches of an
  optimizer step, summed across processes at the step's last micro-batch, and fed to the
  controller once; every process computes the same alpha from the same totals.
- Alpha of optimizer step k therefore comes from the entropy measured during step k - 1 (the
  built-in trainer measures step k's rollout before step k): one step of delay, which saves a
  forward pass. The first step uses alpha = 0.
- The controller state is saved in every TRL checkpoint (``entropic_controller.json``) and
  restored by ``resume_from_checkpoint``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer

from entropic_rl.core import confident_mask, entropic_weights
from entropic_rl.methods import EntroPIC, EntroPICConfig, LossSettings, Window
from entropic_rl.trainer.checkpoint import write_atomically

CONTROLLER_FILE = "entropic_controller.json"


@dataclass
class EntroPICGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the EntroPIC fields (ALGORITHMS.md §2). Defaults are the authors' values
    for an LLM; TRL's own entropy options (``entropy_coef``, ``use_adaptive_entropy``,
    ``top_entropy_quantile``) must stay off."""

    entropic_target_entropy: float | None = field(
        default=0.1, metadata={"help": "Target entropy (nats). Set to None when giving entropic_schedule."}
    )
    entropic_schedule: dict | str | None = field(
        default=None,
        metadata={
            "help": "Target schedule instead of a constant target, as a dict or JSON, e.g. "
            '{"kind": "linear", "start": 0.5, "end": 0.1, "steps": 100}.'
        },
    )
    entropic_kp: float = field(default=1.0, metadata={"help": "Proportional gain K_p."})
    entropic_ki: float = field(default=0.01, metadata={"help": "Integral gain K_i (0: P control)."})
    entropic_alpha_min: float = field(default=-1.0, metadata={"help": "Lower bound of alpha."})
    entropic_alpha_max: float = field(default=1.0, metadata={"help": "Upper bound of alpha."})
    entropic_threshold: float = field(
        default=0.95, metadata={"help": "Confident tokens: probability under the current policy above this."}
    )
    entropic_anti_windup: bool = field(
        default=True, metadata={"help": "Do not integrate an error that pushes a saturated alpha further out."}
    )

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
        if isinstance(self.entropic_schedule, str):
            try:
                self.entropic_schedule = json.loads(self.entropic_schedule)
            except json.JSONDecodeError as exc:
                raise ValueError(f"entropic_schedule: not valid JSON: {exc}") from None
        self.method_config()  # validates every entropic_* field, naming it

    def method_config(self) -> EntroPICConfig:
        return EntroPICConfig.from_fields(self, prefix="entropic_", label="entropic_")


class EntroPICGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with EntroPIC. Takes the same arguments; ``args`` must be an
    ``EntroPICGRPOConfig``. Logs ``entropic/alpha``, ``entropic/entropy``, ``entropic/target``,
    ``entropic/error``, ``entropic/p_term``, ``entropic/i_term``, ``entropic/integral``,
    ``entropic/saturated``, ``entropic/skipped`` and ``entropic/confident_frac``."""

    def __init__(self, model, reward_funcs=None, args: EntroPICGRPOConfig | None = None, **kwargs) -> None:
        if not isinstance(args, EntroPICGRPOConfig):
            raise TypeError(
                f"args must be an EntroPICGRPOConfig (a GRPOConfig with the EntroPIC fields), got {type(args).__name__}"
            )
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self.entropic = EntroPIC(args.method_config(), LossSettings())
        self._window_totals: torch.Tensor | None = None  # entropy sum, tokens, confident tokens of this step
        self._loss_inputs: dict | None = None  # the micro-batch whose loss is being computed

    def _compute_loss(self, model, inputs):
        self._loss_inputs = inputs
        advantages = inputs["advantages"]
        try:
            return super()._compute_loss(model, inputs)
        finally:  # the same inputs are reused by later iterations (num_iterations > 1): restore them
            inputs["advantages"] = advantages
            self._loss_inputs = None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        outputs = super()._get_per_token_logps_and_entropies(*args, **kwargs)  # log-probs, entropies, ...
        if self._loss_inputs is not None:  # the loss's own forward pass (not old or reference log-probs)
            self._reweight(self._loss_inputs, outputs[0], outputs[1])
        return outputs

    def _reweight(self, inputs: dict, log_probs: torch.Tensor, entropies: torch.Tensor) -> None:
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1).expand_as(log_probs)
        confident = confident_mask(log_probs, mask, self.entropic.config.threshold)
        inputs["advantages"] = advantages * entropic_weights(advantages, confident, self.entropic.alpha)
        if not self.model.training:
            return  # evaluation never moves the controller

        totals = torch.stack([(entropies.detach() * mask).sum(), mask.sum(), confident.sum()]).float()
        self._window_totals = totals if self._window_totals is None else self._window_totals + totals
        if self.accelerator.sync_gradients:  # the optimizer step's last micro-batch
            entropy_sum, tokens, confident_tokens = self.accelerator.reduce(
                self._window_totals, reduction="sum"
            ).tolist()
            self._window_totals = None
            self.entropic.begin_step(Window(entropy_sum, tokens))  # alpha for the next optimizer step
            metrics = {**self.entropic.end_step(), "confident_frac": confident_tokens / max(tokens, 1.0)}
            for name, value in metrics.items():
                self._metrics["train"][f"entropic/{name}"].append(value)

    def _save_checkpoint(self, model, trial) -> None:
        # Written before TRL's own files, so every checkpoint that TRL can resume from has it.
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / CONTROLLER_FILE, json.dumps(self.entropic.state_dict()))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = Path(checkpoint) / CONTROLLER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no EntroPIC controller state in this checkpoint (was it written by EntroPICGRPOTrainer?)"
            )
        self.entropic.load_state_dict(json.loads(path.read_text()))
