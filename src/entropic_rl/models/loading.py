"""Loading any local Hugging Face causal LM and its tokenizer, and choosing the device."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from entropic_rl.models.smollm2 import smollm2_folder


def resolve_model_path(path: str, field: str) -> Path:
    """A model folder, or ``smollm2`` for SmolLM2-135M-Instruct (converted once, cached)."""
    if path == "smollm2":
        return smollm2_folder()
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{field}: {folder} is not a folder (or use smollm2)")
    return folder


def choose_device(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(name: str, device: torch.device) -> torch.autocast:
    """The ``model.autocast`` context: ``bfloat16`` runs matrix products in bfloat16 over float32
    weights (log-probs and entropies are still computed in float32); ``none`` changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bfloat16")


def load_model(folder: str | Path, dtype: str, device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A causal LM and its tokenizer (left padding, the EOS token as pad when there is none)."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    return model.to(device), load_tokenizer(folder)


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved in ``folder``. One saved as a plain ``tokenizers`` file (class
    TokenizersBackend or PreTrainedTokenizerFast, like the embedded character-level one) is
    loaded as such: AutoTokenizer would rebuild it from the model type (transformers 5 does so
    for qwen2) and drop the spaces it keeps."""
    config_file = Path(folder) / "tokenizer_config.json"
    saved_class = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.is_file() else None
    if saved_class in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
