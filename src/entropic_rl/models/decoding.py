"""The lean sampler: a decoding loop over a pre-allocated KV cache for the trainer's rollouts.

It draws exactly what transformers' ``generate`` draws for the settings the trainer uses
(temperature, top-p, ``min_new_tokens``, one <eos>): the same logits processing in the same order,
and a sample taken as ``generate``'s ``torch.multinomial`` takes it (``argmax(p / q)`` with
``q ~ Exp(1)`` drawn for every row of the batch, finished or not), so the random stream is
consumed identically and a run keeps its trajectory up to floating-point rounding. What it leaves
out is the work ``generate`` does for everyone:

- prompts repeated in a group (GRPO's ``group_size`` copies) are prefilled once, and their cache
  rows copied;
- the KV cache is allocated once for the longest response and written in place (``generate``'s
  dynamic cache concatenates every layer's keys and values at every token);
- rows that have finished are dropped from the forward pass (the cache is compacted when an
  eighth of its rows are done), while ``generate`` runs them to the end.

Models with layers that are not attention (state-space, linear attention) and encoder-decoders are
sampled with ``generate`` instead (``lean_supported``); a sliding window is a mask over the full cache.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer

COMPACT_FRACTION = 1 / 8  # drop finished rows once they are this share of the rows still computed


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in buffers with room for ``capacity`` positions, written in
    place; attention reads the filled part (so masks are built as for a dynamic cache)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states.new_empty((*key_states.shape[:2], self.capacity, key_states.shape[3]))
        self.values = value_states.new_empty((*value_states.shape[:2], self.capacity, value_states.shape[3]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:  # layers that share another layer's keys and values hold none
            self.keys, self.values = self.keys[indices], self.values[indices]


ATTENTION_LAYERS = {"full_attention", "sliding_attention"}  # a sliding window is a mask over the full cache


def lean_supported(model: PreTrainedModel) -> bool:
    """Whether every layer of ``model`` attends over its own keys and values (what ``PreallocatedLayer``
    holds): not state-space, recurrent or linear-attention layers, not an encoder-decoder. (Recurrent
    models that declare none of this are caught where the cache is read: ``filled``.)"""
    layer_types = getattr(model.config.get_text_config(), "layer_types", None) or ["full_attention"]
    return (
        not model.config.is_encoder_decoder
        and not getattr(model, "_is_stateful", False)
        and set(layer_types) <= ATTENTION_LAYERS
    )


def filled(cache: Cache, length: int) -> bool:
    """Whether the model wrote ``length`` positions of keys and values into ``cache`` (a recurrent
    model keeps its state elsewhere, and its prompt would be lost)."""
    return cache.get_seq_length() == length


def prompt_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, inverse): the first row holding each distinct prompt (ids and mask), and for every
    row the index of its prompt in ``first``."""
    n = len(input_ids)
    _, inverse = torch.unique(torch.cat([input_ids, attention_mask.to(input_ids.dtype)], 1), dim=0, return_inverse=True)
    rows = torch.arange(n, device=input_ids.device)
    first = torch.full((int(inverse.max()) + 1,), n, device=input_ids.device).scatter_reduce_(0, inverse, rows, "amin")
    return first, inverse


def next_token_scores(
    logits: torch.Tensor, *, temperature: float, top_p: float, suppress: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``generate``'s processing of one step's float32 logits, in its order: <eos> at -inf
    (``suppress``, while ``min_new_tokens`` holds it back), rows with NaN or +inf set to zeros
    (returned as a flag, checked once decoding is over), temperature, top-p."""
    if suppress is not None:
        logits = torch.where(suppress, -torch.inf, logits)
    bad = (torch.isnan(logits) | torch.isposinf(logits)).any(-1, keepdim=True)
    logits = logits.masked_fill(bad, 0.0)
    if temperature != 1.0:
        logits = logits / temperature
    if top_p < 1.0:
        ascending, order = torch.sort(logits, descending=False)
        remove = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[..., -1:] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(1, order, remove), -torch.inf)
    return logits, bad.any()


@torch.no_grad()
def lean_decode(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    min_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
) -> torch.Tensor:
    """Sampled responses to left-padded prompts, (N, T): ``pad_token_id`` after each row's <eos>,
    T the steps until every row has ended or ``max_new_tokens``. Non-finite logits raise
    ``FloatingPointError`` once decoding is over."""
    n, prompt_length = input_ids.shape
    device = input_ids.device
    layers = model.config.get_text_config().num_hidden_layers
    cache = Cache(layers=[PreallocatedLayer(prompt_length + max_new_tokens) for _ in range(layers)])
    mask = torch.ones((n, prompt_length + max_new_tokens), dtype=attention_mask.dtype, device=device)
    mask[:, :prompt_length] = attention_mask
    positions = attention_mask.long().cumsum(-1) - 1
    first, inverse = prompt_groups(input_ids, attention_mask)
    logits = model(
        input_ids=input_ids[first],
        attention_mask=attention_mask[first],
        position_ids=positions[first].clamp(min=0),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    if not filled(cache, prompt_length):
        raise ValueError(f"{type(model).__name__} keeps no KV cache the lean sampler can use: set sampler=generate")
    cache.batch_select_indices(inverse)
    logits = logits[inverse]
    next_position = positions[:, -1] + 1
    vocabulary = logits.shape[-1]
    eos = torch.arange(vocabulary, device=device) == eos_token_id
    responses = torch.full((n, max_new_tokens), pad_token_id, dtype=input_ids.dtype, device=device)
    rows = torch.arange(n, device=device)  # the rows the cache and ``logits`` hold, still decoding or not
    unfinished = torch.ones(n, dtype=torch.bool, device=device)
    non_finite = torch.zeros((), dtype=torch.bool, device=device)
    step = 0
    for step in range(max_new_tokens):
        scores, bad = next_token_scores(
            logits.float(), temperature=temperature, top_p=top_p, suppress=eos if step < min_new_tokens else None
        )
        non_finite |= bad
        # generate's torch.multinomial(probs, 1): argmax(p / q), q ~ Exp(1), drawn for all n rows
        exponential = torch.empty((n, vocabulary), device=device).exponential_(1)
        tokens = (scores.softmax(-1) / exponential[rows]).argmax(-1)
        tokens = torch.where(unfinished[rows], tokens, pad_token_id)
        responses[rows, step] = tokens
        unfinished[rows] &= tokens != eos_token_id
        if not bool(unfinished.any()) or step == max_new_tokens - 1:
            break
        active = unfinished[rows]
        if int(active.sum()) <= (1 - COMPACT_FRACTION) * len(rows):
            cache.batch_select_indices(active.nonzero().squeeze(1))
            rows, tokens = rows[active], tokens[active]
        length = prompt_length + step + 1
        logits = model(
            input_ids=tokens[:, None],
            attention_mask=mask[rows, :length],
            position_ids=(next_position[rows] + step)[:, None],
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
    if bool(non_finite):
        raise FloatingPointError("the model gave non-finite logits while sampling")
    return responses[:, : step + 1]
