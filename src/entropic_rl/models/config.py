"""The ``model`` section of a training run."""

from __future__ import annotations

from dataclasses import dataclass

from entropic_rl.util.options import check_at_least, check_choice, option


@dataclass
class ModelConfig:
    path: str | None = option(None, "a local Hugging Face model folder, or smollm2; null: the embedded default")
    dtype: str = option("float32", "float32 | bfloat16 | float16")
    autocast: str = option(
        "none",
        "none | bfloat16: forward passes and sampling (not with rollout.cache=static) in bfloat16 over the float32 "
        "weights (torch.autocast)",
    )
    chat_template: str = option("auto", "auto: use the tokenizer's chat template if it has one; never")
    device: str = option("auto", "auto: cuda when available, else cpu; or a torch device name")
    warm_start_steps: int = option(1000, "embedded default only: at most this many supervised steps before RL")
    warm_start_accuracy: float = option(
        0.3, "embedded default only: stop the warm start once held-out sampled accuracy reaches this"
    )

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        check_choice("autocast", self.autocast, ("none", "bfloat16"))
        check_choice("chat_template", self.chat_template, ("auto", "never"))
        check_at_least("warm_start_steps", self.warm_start_steps, 0)
        if not 0 <= self.warm_start_accuracy <= 1:
            raise ValueError(f"warm_start_accuracy must be in [0, 1], got {self.warm_start_accuracy}")
