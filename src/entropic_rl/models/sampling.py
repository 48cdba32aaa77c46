"""Sampling responses and recording their log-probs and entropies from the trainer's model."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import Cache, DynamicLayer

from entropic_rl.models.decoding import filled, lean_decode, lean_supported, prompt_groups
from entropic_rl.util.options import check_choice


def check_sampling(temperature: float, top_p: float) -> None:
    """A ``ValueError`` naming the setting unless ``temperature > 0`` and ``0 < top_p <= 1``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@dataclass
class Rollout:
    sequences: torch.Tensor  # (N, P + R): left-padded prompts, then responses
    attention_mask: torch.Tensor  # (N, P + R)
    response_mask: torch.Tensor  # (N, R): 1 on response tokens up to and including <eos>
    responses: list[str]

    @property
    def prompt_length(self) -> int:
        return self.sequences.shape[1] - self.response_mask.shape[1]

    def trimmed(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The sequences and attention mask of ``rows`` without the columns that are padding in all
        of them (leading prompt padding, trailing response padding), and their response length.
        Position ids follow the attention mask, so dropping leading padding does not shift them."""
        used = self.response_mask[rows].any(0).nonzero()
        length = int(used[-1]) + 1 if len(used) else 1
        start = int(self.attention_mask[rows].any(0).int().argmax())
        end = self.prompt_length + length
        return self.sequences[rows, start:end], self.attention_mask[rows, start:end], length


def format_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], chat_template: str, pad_to_multiple_of: int | None = None
) -> dict:
    """Tokenised, left-padded prompts: through the chat template when the tokenizer has one and
    ``chat_template`` is ``auto``, else as plain text with the tokenizer's special tokens."""
    padding = {"padding": True, "pad_to_multiple_of": pad_to_multiple_of}
    if chat_template == "auto" and getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        return tokenizer(texts, return_tensors="pt", add_special_tokens=False, **padding)
    return tokenizer(prompts, return_tensors="pt", **padding)


class RejectNonFinite(LogitsProcessor):
    """Notes NaN or +inf logits (top-p and min_new_tokens set -inf on purpose, so -inf passes)
    without waiting for the device at every token: such a row's scores become zeros so that the
    sampler can go on, and ``check()`` raises ``FloatingPointError`` once sampling is over."""

    def __init__(self) -> None:
        self.seen: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        bad = (torch.isnan(scores) | torch.isposinf(scores)).any(-1, keepdim=True)
        self.seen = bad.any() if self.seen is None else self.seen | bad.any()
        return scores.masked_fill(bad, 0.0)

    def check(self) -> None:
        if self.seen is not None and bool(self.seen):
            raise FloatingPointError("the model gave non-finite logits while sampling")


STATIC_PROMPT_MULTIPLE = 32


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    chat_template: str = "auto",
    sampler: str = "lean",
    cache: str = "dynamic",
) -> Rollout:
    """Sample one response per prompt (repeat prompts for groups), with the KV cache;
    ``min_new_tokens`` holds back <eos> until a response has that many tokens. Non-finite logits
    raise ``FloatingPointError``.

    ``sampler="lean"``: ``decoding.lean_decode`` (the same draws as transformers' ``generate``
    with less work; models it does not support use ``generate``); ``"generate"``: transformers'
    ``generate``, whose ``cache="static"`` is a fixed-size KV cache that transformers compiles
    decoding for on a GPU (prompts are padded to a multiple of ``STATIC_PROMPT_MULTIPLE`` tokens so
    that a few cache shapes, compilations, serve every step)."""
    check_sampler(sampler, cache)
    multiple = STATIC_PROMPT_MULTIPLE if cache == "static" else None
    encoded = format_prompts(tokenizer, prompts, chat_template, multiple).to(model.device)
    was_training = model.training
    model.eval()
    try:
        if sampler == "lean" and lean_supported(model):
            response = lean_decode(
                model,
                encoded["input_ids"],
                encoded["attention_mask"],
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        else:
            response = hf_generate(model, tokenizer, encoded, temperature, top_p, max_new_tokens, min_new_tokens, cache)
    finally:
        model.train(was_training)
    is_eos = response == tokenizer.eos_token_id
    response_mask = ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).long()  # up to and including <eos>
    attention_mask = torch.cat([encoded["attention_mask"], response_mask], dim=1)
    sequences = torch.cat([encoded["input_ids"], response], dim=1)
    first = int(attention_mask.any(0).nonzero()[0])  # padding added for the static cache: not trained on
    sequences, attention_mask = sequences[:, first:], attention_mask[:, first:]
    texts = tokenizer.batch_decode(
        response * response_mask + tokenizer.pad_token_id * (1 - response_mask), skip_special_tokens=True
    )
    return Rollout(sequences, attention_mask, response_mask, texts)


SAMPLERS = ("lean", "generate")


def check_sampler(sampler: str, cache: str) -> None:
    """A ``ValueError`` naming the setting unless ``sampler`` and ``cache`` go together."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    check_choice("cache", cache, ("dynamic", "static"))
    if cache == "static" and sampler != "generate":
        raise ValueError("cache=static is the generate sampler's KV cache: set sampler=generate too")


def hf_generate(model, tokenizer, encoded, temperature, top_p, max_new_tokens, min_new_tokens, cache) -> torch.Tensor:
    """The response tokens (N, T) of transformers' ``generate``, ``tokenizer.pad_token_id`` after <eos>."""
    # An explicit config over neutral defaults: generate fills every field left unset from the
    # model's own generation config (a repetition penalty, min_p, ...), which the log-probs do not model.
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens or None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
        cache_implementation="static" if cache == "static" else None,
    )
    # transformers' static cache holds one dtype, which autocast's mixed keys and values break:
    # with it, sampling stays in the weights' dtype
    mixed = torch.autocast(model.device.type, enabled=False) if cache == "static" else contextlib.nullcontext()
    reject = RejectNonFinite()
    own, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with mixed:
            sequences = model.generate(
                **encoded, generation_config=config, logits_processor=LogitsProcessorList([reject])
            )
    finally:
        model.generation_config = own
    reject.check()
    return sequences[:, encoded["input_ids"].shape[1] :]


def response_logits(
    model: PreTrainedModel, sequences: torch.Tensor, attention_mask: torch.Tensor, response_length: int
) -> torch.Tensor:
    """The logits that predict the response tokens, (N, R, V).

    Position ids follow the attention mask, as in generation, so left padding does not shift them.
    Only what these logits need is run: not the last token (it predicts nothing asked for), and only
    the logits of the response positions. Rows that begin with the same prompt (a GRPO group) share
    one forward pass of it: the prompt but its last token is run once per distinct prompt, its keys
    and values copied to each row (the backward pass sums their gradients), and each row runs its
    last prompt token and its response over them. The logits are those of the whole sequences up to
    floating-point rounding. Not with gradient checkpointing (no KV cache there) or where
    ``lean_supported`` says no.
    """
    sequences, attention_mask = sequences[:, :-1], attention_mask[:, :-1]
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    prefix = sequences.shape[1] - response_length  # the columns before the last prompt token
    shared = prefix > 0 and lean_supported(model) and not model.is_gradient_checkpointing
    first, inverse = prompt_groups(sequences[:, :prefix], attention_mask[:, :prefix]) if shared else (None, None)

    def whole() -> torch.Tensor:
        return model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=response_length,
            use_cache=False,
        ).logits

    if first is None or len(first) == len(sequences):
        return whole()
    layers = model.config.get_text_config().num_hidden_layers
    cache = Cache(layers=[DynamicLayer() for _ in range(layers)])
    model(
        input_ids=sequences[first, :prefix],
        attention_mask=attention_mask[first, :prefix],
        position_ids=position_ids[first, :prefix],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    if not filled(cache, prefix):  # a recurrent model: its prompt's state is not in the cache
        return whole()
    cache.batch_select_indices(inverse)
    return model(
        input_ids=sequences[:, prefix:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, prefix:],
        past_key_values=cache,
        use_cache=True,
    ).logits
