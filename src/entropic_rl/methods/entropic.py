"""EntroPIC (ALGORITHMS.md §2), in the two flavours selectable by name.

- ``entropic`` (default): alpha once per optimizer step from the window entropy, exact
  normalisation (confident-token weights exactly 1 +- alpha), anti-windup, target schedules; each
  a switch.
- ``entropic-reference``: the authors' code: alpha per micro-batch from that micro-batch's
  current-policy entropy, the adjustment normalised over confident tokens (1 +- alpha*kappa) with
  their aggregation and float32 threshold, each micro-batch's loss normalised on its own and scaled
  by its share of the mini-batch, alpha in [-1, 1], no anti-windup, a constant target.

The fields are declared once, here, with the authors' defaults for an LLM; the embedded quickstart's
values come from the ``embedded`` preset (``trainer/presets/embedded.yaml``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from entropic_rl.core import PIController, confident_mask, entropic_weights, policy_loss, reference_aggregate
from entropic_rl.core.controller import AUTHORS_GAINS, check_settings, resolve_gains
from entropic_rl.core.losses import NORMALIZE_MODES
from entropic_rl.methods.base import LossSettings, Method, MethodConfig, MicroBatch, Window, loss_metrics
from entropic_rl.util.options import check_choice, option

logger = logging.getLogger(__name__)
SECOND_ACTUATORS = ("none", "threshold")


@dataclass
class EntroPICControl(MethodConfig):
    """The fields of both flavours."""

    target_entropy: float | None = option(0.1, "target entropy H_tar in nats; null when a schedule is given")
    threshold: float = option(0.95, "confident tokens: probability under the current policy above this (tau)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")


@dataclass
class EntroPICConfig(EntroPICControl):
    name: str = option("entropic", "the entropy-control method (each method's fields are listed)")
    gains: str = option("fixed", "fixed: kp and ki; auto: the gain tunes itself to the run (docs/control.md)")
    kp: float | None = option(None, "proportional gain K_p (fixed gains; unset: the authors' 1)")
    ki: float | None = option(None, "integral gain K_i, 0: P control (fixed gains; unset: the authors' 0.01)")
    schedule: dict | None = option(
        None,
        "a target schedule instead of target_entropy, e.g. {kind: linear, start: 0.5, end: 0.1, steps: 100} "
        "(kinds: constant, linear, cosine, relative)",
    )
    alpha_min: float = option(-1.0, "lower bound of alpha")
    alpha_max: float = option(1.0, "upper bound of alpha")
    anti_windup: bool = option(True, "do not integrate an error that pushes a saturated alpha further out")
    authority_window: int = option(
        20, "optimizer steps alpha may stay pinned with the error persisting before a warning; 0: never"
    )
    normalize: str = option(
        "exact", "exact: confident-token weights 1 +- alpha; reference: the authors' 1 +- alpha*kappa"
    )
    second_actuator: str = option(
        "none",
        "none | threshold: while alpha is pinned at a bound with the error pushing it out, the threshold moves "
        "toward threshold_floor (more tokens reweighted), and back to its setting once alpha is inside its bounds",
    )
    threshold_floor: float = option(0.5, "second_actuator threshold: the lowest the threshold goes")
    threshold_windows: int = option(
        20, "second_actuator threshold: optimizer steps to move the threshold between its setting and the floor"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("second_actuator", self.second_actuator, SECOND_ACTUATORS)
        if self.second_actuator == "threshold" and not 0.0 <= self.threshold_floor <= self.threshold:
            floor, threshold = self.threshold_floor, self.threshold
            raise ValueError(f"threshold_floor must be in [0, threshold ({threshold})], got {floor}")
        if self.threshold_windows < 1:
            raise ValueError(f"threshold_windows must be >= 1, got {self.threshold_windows}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        # an explicit gains auto leaves kp and ki alone: a configuration below it may have set them
        # (e.g. a YAML file under `method.gains=auto`); they are not used, and the method says so
        if self.gains != "auto":
            self.gains, self.kp, self.ki = resolve_gains(self.gains, self.kp, self.ki)
        check_settings(
            self.target_entropy,
            *self.controller_gains,
            self.alpha_min,
            self.alpha_max,
            self.schedule,
            self.gains,
            self.authority_window,
        )

    @property
    def controller_gains(self) -> tuple[float | None, float | None]:
        """``(kp, ki)`` as the controller takes them: none under gains auto."""
        return (self.kp, self.ki) if self.gains == "fixed" else (None, None)

    def check_advantage_weights(self) -> None:
        # Weights 1 + alpha*sign(A)*C stay in [0, 2] only for alpha in [-1, 1]; a negative weight
        # flips a token's PPO clipping branch, and the framework's loss is no longer EntroPIC's.
        if self.normalize != "exact":
            raise ValueError("normalize: only exact normalisation is a per-token advantage weight")
        where = "where the weights apply to a framework's advantages"
        if self.alpha_min < -1.0:
            raise ValueError(f"alpha_min must be >= -1 {where}, got {self.alpha_min}")
        if self.alpha_max > 1.0:
            raise ValueError(f"alpha_max must be <= 1 {where}, got {self.alpha_max}")


@dataclass
class EntroPICReferenceConfig(EntroPICControl):
    name: str = option("entropic-reference", "the authors' flavour")
    kp: float = option(AUTHORS_GAINS[0], "proportional gain K_p")
    ki: float = option(AUTHORS_GAINS[1], "integral gain K_i; 0: P control")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_entropy is None:
            raise ValueError("target_entropy: the reference flavour needs a constant target")
        check_settings(self.target_entropy, self.kp, self.ki, -1.0, 1.0, None)

    def check_advantage_weights(self) -> None:
        raise ValueError("name: entropic-reference normalises by the confident tokens (1 +- alpha*kappa), not a weight")


def authority_message(controller: PIController, threshold: float) -> str:
    """What a pinned alpha means and what to try."""
    c = controller
    side, bound = ("above", "alpha_max") if c.error > 0 else ("below", "alpha_min")
    return (
        f"entropic: alpha has been pinned at {bound} ({c.alpha:g}) for {c.pinned} steps with the entropy "
        f"{side} its target ({c.entropy:.4g} against {c.window_target:.4g}): the confident tokens "
        f"(probability > threshold {threshold:g}) cannot move the entropy enough here; a larger gain cannot help. "
        "Try a lower method.threshold (or method.second_actuator=threshold, which lowers it while alpha is "
        "pinned), a target nearer the entropy the run has without control, or more on-policy updates per rollout."
    )


class EntroPIC(Method):
    config_class = EntroPICConfig

    def __init__(self, config: EntroPICConfig, loss_settings: LossSettings | None = None) -> None:
        super().__init__(config, loss_settings)
        self.controller = self._controller()
        self.alpha = self.controller.alpha
        self.threshold = config.threshold  # moved only by the second actuator
        self.warned = False  # the authority diagnostic is given once a run

    def _controller(self) -> PIController:
        c = self.config
        if c.gains == "auto" and (c.kp, c.ki) != (None, None):
            logger.warning(
                "entropic: gains auto tunes its own gain; method.kp (%s) and method.ki (%s) are not used "
                "(set gains to fixed to use them)",
                c.kp,
                c.ki,
            )
        return PIController(
            c.target_entropy,
            *c.controller_gains,
            alpha_min=c.alpha_min,
            alpha_max=c.alpha_max,
            anti_windup=c.anti_windup,
            schedule=c.schedule,
            gains=c.gains,
            authority_window=c.authority_window,
        )

    def update(self, window: Window) -> None:
        self.alpha = self.controller.update(window.entropy, weight=window.optimizer_steps, mixed=window.mixed)
        if self.moves_threshold:
            self._move_threshold(window.optimizer_steps)
        if self.controller.no_authority and not self.warned:
            self.warned = True
            logger.warning(authority_message(self.controller, self.threshold))

    def _move_threshold(self, steps: float) -> None:
        """Split-range control: the threshold is the second valve. While alpha is pinned with the error
        pushing it out, it moves toward the floor (the confident tokens widen); while alpha is inside its
        bounds, back toward its setting; at a bound with the error pulling alpha back, it holds."""
        c, ctrl = self.config, self.controller
        step = (c.threshold - c.threshold_floor) / c.threshold_windows * steps
        if ctrl.pinned > 0:
            self.threshold = max(self.threshold - step, c.threshold_floor)
        elif not ctrl.saturated:
            self.threshold = min(self.threshold + step, c.threshold)

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._loss(micro_batch, self.alpha, self.config.normalize)

    def _loss(self, mb: MicroBatch, alpha: float, normalize: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        exact = normalize == "exact"  # reference: normalised within the micro-batch, then scaled by its share
        loss, metrics = policy_loss(
            mb.log_prob,
            mb.old_log_prob,
            mb.advantages,
            mb.mask,
            alpha=alpha,
            threshold=self.threshold,
            normalize=normalize,
            denominator=mb.denominator if exact else None,
            max_len=self.loss_settings.max_len,
            **self.loss_settings.policy_loss_kwargs(),
        )
        return loss if exact else loss * mb.share, loss_metrics(metrics, "entropic")

    def advantage_weights(
        self, log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        confident = confident_mask(log_prob, mask, self.threshold)
        confident_frac = confident.sum() / mask.sum().clamp(min=1.0)
        return entropic_weights(advantages, confident, self.alpha), {"entropic/confident_frac": confident_frac}

    @property
    def moves_threshold(self) -> bool:
        return self.config.second_actuator == "threshold"

    def metrics(self) -> dict[str, float]:
        metrics = {f"entropic/{name}": value for name, value in self.controller.metrics().items()}
        return metrics | ({"entropic/threshold": self.threshold} if self.moves_threshold else {})

    def step_state(self) -> dict:
        return {"alpha": self.alpha} | ({"threshold": self.threshold} if self.moves_threshold else {})

    def load_step_state(self, state: dict) -> None:
        self.alpha = float(state["alpha"])
        self.threshold = float(state.get("threshold", self.config.threshold))

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict()} | (
            {"threshold": self.threshold} if self.moves_threshold else {}
        )

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.alpha = self.controller.alpha
        self.threshold = float(state.get("threshold", self.config.threshold))  # checkpoints before the option


class EntroPICReference(EntroPIC):
    config_class = EntroPICReferenceConfig
    advantage_weights = Method.advantage_weights  # its normalisation is not a weight: refused
    moves_threshold = False  # the authors' threshold is fixed

    def _controller(self) -> PIController:
        c = self.config
        return PIController(c.target_entropy, kp=c.kp, ki=c.ki, anti_windup=False)  # alpha in [-1, 1]

    def update(self, window: Window) -> None:
        pass  # alpha comes from each micro-batch's own entropy

    def loss(self, micro_batch: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.loss_settings
        entropy = reference_aggregate(micro_batch.entropy.detach(), micro_batch.mask, s.agg, s.max_len).item()
        # The integral grows by this micro-batch's share, so by one error per optimizer step.
        alpha = self.controller.update(entropy, weight=micro_batch.share)
        return self._loss(micro_batch, alpha, "reference")
