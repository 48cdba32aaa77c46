"""Policies and sampling: any local Hugging Face causal LM (or SmolLM2 from its GGUF), the embedded
default and its warm start, and the sampling and log-prob functions the trainer and the evaluation
share."""

from entropic_rl.models.config import ModelConfig
from entropic_rl.models.embedded import char_tokenizer, seeded_llama
from entropic_rl.models.loading import autocast, choose_device, load_model, load_tokenizer, resolve_model_path
from entropic_rl.models.policy import load_policy
from entropic_rl.models.sampling import (
    Rollout,
    check_sampler,
    check_sampling,
    format_prompts,
    generate,
    response_logits,
)

__all__ = [
    "ModelConfig",
    "Rollout",
    "autocast",
    "char_tokenizer",
    "check_sampler",
    "check_sampling",
    "choose_device",
    "format_prompts",
    "generate",
    "load_model",
    "load_policy",
    "load_tokenizer",
    "resolve_model_path",
    "response_logits",
    "seeded_llama",
]
