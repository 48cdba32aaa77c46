"""entropic-rl: entropy-stabilised reinforcement learning of language models (EntroPIC)."""

from entropic_rl.core import (
    AGG_MODES,
    AutoGains,
    PIController,
    TargetSchedule,
    agg_denominator,
    aggregate,
    confident_mask,
    entropic_weights,
    policy_loss,
    token_logprobs_and_entropy,
)

__version__ = "0.1.0"

__all__ = [
    "AGG_MODES",
    "AutoGains",
    "PIController",
    "TargetSchedule",
    "__version__",
    "agg_denominator",
    "aggregate",
    "confident_mask",
    "entropic_weights",
    "policy_loss",
    "token_logprobs_and_entropy",
]
