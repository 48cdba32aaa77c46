"""The embedded default policy: a 3.2M-parameter Qwen2-architecture model with a character-level
tokenizer built with ``tokenizers``, warm-started on the configured synthetic task (``warm_start``)
until its sampled accuracy on held-out prompts reaches ``model.warm_start_accuracy``, so that RL
starts at a moderate accuracy. The warm start is seeded (its own seed, whatever the run's),
deterministic on CPU (on one thread, whatever the run's: the thread count changes the float
rounding, so it would otherwise fix the cached bits by whichever run built them first), and cached
(``cache_dir()``), written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from entropic_rl.models.cache import cache_dir
from entropic_rl.models.config import ModelConfig
from entropic_rl.models.warm_start import warm_start
from entropic_rl.tasks import ArithmeticTask, CountdownTask, WorkedAdditionTask
from entropic_rl.util.files import folder_written_atomically

EMBEDDED_VERSION = 4  # bump when the embedded model or its warm start changes: invalidates caches
CHARACTERS = "0123456789+-*/()=: "
SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
WARM_START_SEED = 0  # the warm start's own seed, whatever the run's
WARM_START_EVAL_PROMPTS = 256


def char_tokenizer(extra: str = "") -> PreTrainedTokenizerFast:
    """One token per character of ``CHARACTERS`` (and of ``extra``, a task's own), and the specials."""
    vocab = {token: i for i, token in enumerate([*SPECIAL, *CHARACTERS, *extra])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tokenizer.decoder = decoders.Fuse()
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )


def seeded_llama(
    tokenizer: PreTrainedTokenizerFast, hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, **config
) -> LlamaForCausalLM:
    """A Llama for ``tokenizer`` (its special tokens), initialised from seed 0: the small stand-in
    for any Hugging Face causal LM that tests, benchmarks and scripts build."""
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **config,
        )
    )


def embedded_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return Qwen2ForCausalLM(config)


def warm_started_default(model_cfg: ModelConfig, task_name: str, difficulty: int) -> Path:
    """The cached warm-started embedded model for this task, built on first use."""
    task_class = {"arithmetic": ArithmeticTask, "worked": WorkedAdditionTask, "countdown": CountdownTask}[task_name]
    task, held_out = (task_class(difficulty, seed=seed) for seed in (WARM_START_SEED, WARM_START_SEED + 1))
    key = json.dumps(
        {
            "version": EMBEDDED_VERSION,
            "task": task_name,
            "difficulty": difficulty,
            "steps": model_cfg.warm_start_steps,
            "accuracy": model_cfg.warm_start_accuracy,
            "seed": WARM_START_SEED,
        },
        sort_keys=True,
    )
    folder = (
        cache_dir() / "models" / f"embedded-{task_name}{difficulty}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    )
    if (folder / "config.json").is_file():
        return folder
    tokenizer = char_tokenizer(getattr(task_class, "characters", ""))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(WARM_START_SEED)
            model = embedded_model(tokenizer)
            record = warm_start(
                model,
                tokenizer,
                task,
                held_out.examples(0, WARM_START_EVAL_PROMPTS),
                model_cfg.warm_start_steps,
                model_cfg.warm_start_accuracy,
            )
    finally:
        torch.set_num_threads(threads)
    with folder_written_atomically(folder) as tmp:  # another process may finish first: its copy is kept
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "warm_start.json").write_text(json.dumps({**json.loads(key), **record}, indent=1))
    return folder
