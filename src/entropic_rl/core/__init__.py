"""Framework-free core: the controller, the losses and the entropy computation (torch only)."""

from entropic_rl.core.controller import AutoGains, PIController, TargetSchedule, check_settings
from entropic_rl.core.entropy import clamped_entropy, token_logprobs_and_entropy
from entropic_rl.core.losses import (
    AGG_MODES,
    agg_denominator,
    aggregate,
    confident_mask,
    entropic_weights,
    policy_loss,
    reference_aggregate,
    token_covariance,
)

__all__ = [
    "AGG_MODES",
    "AutoGains",
    "PIController",
    "TargetSchedule",
    "agg_denominator",
    "aggregate",
    "check_settings",
    "clamped_entropy",
    "confident_mask",
    "entropic_weights",
    "policy_loss",
    "reference_aggregate",
    "token_covariance",
    "token_logprobs_and_entropy",
]
