"""EntroPIC (ALGORITHMS.md §2), in the two flavours selectable by name.

- ``entropic`` (default): alpha once per optimizer step from the window entropy, exact
  normalisation (confident-token weights exactly 1 +- alpha), anti-windup, target schedules.
- ``entropic-reference``: the authors' code: alpha per micro-batch from that micro-batch's
  current-policy entropy, adjustment normalised over confident tokens (1 +- alpha*kappa), each
  micro-batch's loss a token mean of its own scaled by its share of the mini-batch, no anti-windup.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entropic_rl.core import PIController, aggregate
from entropic_rl.core.losses import NORMALIZE_MODES
from entropic_rl.methods.base import LossSettings, Method, MethodConfig, MicroBatch, Window

# The fields a framework integration exposes (normalisation is always exact there).
FRAMEWORK_FIELDS = ("target_entropy", "schedule", "kp", "ki", "alpha_min", "alpha_max", "threshold", "anti_windup")


@dataclass
class EntroPICConfig(MethodConfig):
    """Defaults are tuned for the embedded default run (docs/training.md shows each setting
    measured); the authors' values for an LLM are target 0.1, kp 1, ki 0.01, threshold 0.95
    (configs/hf-model.yaml)."""

    name: str = "entropic"
    target_entropy: float | None = 0.3  # nats; set to null when giving a schedule
    schedule: dict | None = None  # TargetSchedule fields, e.g. {kind: linear, start: 0.5, end: 0.1, steps: 100}
    kp: float = 10.0
    ki: float = 0.1
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    threshold: float = 0.8
    anti_windup: bool = True
    normalize: str = "exact"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if (self.target_entropy is None) == (self.schedule is None):
            raise ValueError(
                "target_entropy: give exactly one of target_entropy and schedule (with a schedule, set "
                "target_entropy: null)"
            )
        self.controller()  # validates the controller fields, naming them

    @classmethod
    def from_fields(cls, source, prefix: str, label: str) -> EntroPICConfig:
        """The config from a framework's config whose EntroPIC fields are ``prefix + field`` (the
        TRL and verl integrations); an error names the field as ``label + field``."""
        fields = {name: getattr(source, f"{prefix}{name}") for name in FRAMEWORK_FIELDS}
        if fields["schedule"] is not None:
            fields["schedule"] = dict(fields["schedule"])  # from Hydra: a DictConfig
        try:
            return cls(**fields)
        except ValueError as exc:
            raise ValueError(f"{label}{exc}") from None

    def controller(self) -> PIController:
        return PIController(
            self.target_entropy,
            kp=self.kp,
            ki=self.ki,
            alpha_min=self.alpha_min,
            alpha_max=self.alpha_max,
            anti_windup=self.anti_windup,
            schedule=self.schedule,
        )


@dataclass
class EntroPICReferenceConfig(EntroPICConfig):
    name: str = "entropic-reference"
    anti_windup: bool = False
    normalize: str = "reference"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule is not None:
            raise ValueError("schedule: the reference flavour uses a constant target")


class EntroPIC(Method):
    config_class = EntroPICConfig

    def __init__(self, config: EntroPICConfig, loss_settings: LossSettings) -> None:
        super().__init__(config, loss_settings)
        self.controller = config.controller()
        self.alpha = self.controller.alpha

    def begin_step(self, window: Window) -> None:
        self.alpha = self.controller.update(window.entropy, weight=window.optimizer_steps)

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._policy_loss(micro_batch, self.alpha, micro_batch.denominator)

    def _policy_loss(self, mb: MicroBatch, alpha: float, denominator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        return super()._policy_loss(mb, denominator, alpha=alpha, threshold=c.threshold, normalize=c.normalize)

    def end_step(self) -> dict[str, float]:
        return self.controller.metrics()

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.alpha = self.controller.alpha


class EntroPICReference(EntroPIC):
    config_class = EntroPICReferenceConfig

    def begin_step(self, window: Window) -> None:
        pass  # alpha comes from each micro-batch's own entropy

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        entropy = aggregate(micro_batch.entropy.detach(), micro_batch.mask, self.loss_settings.agg).item()
        # The integral grows by this micro-batch's share, so one error per optimizer step.
        alpha = self.controller.update(entropy, weight=micro_batch.share)
        loss, metrics = self._policy_loss(micro_batch, alpha, None)  # normalised within the micro-batch
        return loss * micro_batch.share, metrics
