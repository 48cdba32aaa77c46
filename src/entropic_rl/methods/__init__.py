"""Entropy-control methods, selectable by name. Adding one is a file here and a line below."""

from entropic_rl.methods.aec import AEC, AECTRL
from entropic_rl.methods.aent import AEnt
from entropic_rl.methods.base import (
    LossSettings,
    Method,
    MethodConfig,
    MicroBatch,
    Window,
    loss_metrics,
    with_method_fields,
)
from entropic_rl.methods.clip_cov import ClipCov
from entropic_rl.methods.entropic import EntroPIC, EntroPICConfig, EntroPICReference, EntroPICReferenceConfig
from entropic_rl.methods.entropy_bonus import EntropyBonus
from entropic_rl.methods.grpo import GRPO
from entropic_rl.methods.kl_cov import KLCov
from entropic_rl.methods.nsr import NSR
from entropic_rl.methods.w_reinforce import WReinforce

METHODS: dict[str, type[Method]] = {
    "grpo": GRPO,
    "entropic": EntroPIC,
    "entropic-reference": EntroPICReference,
    "entropy-bonus": EntropyBonus,
    "aec": AEC,
    "aec-trl": AECTRL,
    "aent": AEnt,
    "clip-cov": ClipCov,
    "kl-cov": KLCov,
    "nsr": NSR,
    "w-reinforce": WReinforce,
}


def method_class(name: str) -> type[Method]:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method.name: unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


__all__ = [
    "GRPO",
    "METHODS",
    "EntroPIC",
    "EntroPICConfig",
    "EntroPICReference",
    "EntroPICReferenceConfig",
    "LossSettings",
    "Method",
    "MethodConfig",
    "MicroBatch",
    "Window",
    "loss_metrics",
    "method_class",
    "with_method_fields",
]
