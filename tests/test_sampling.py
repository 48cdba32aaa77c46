"""The lean sampler against transformers' ``generate``, and the update's shared prompt pass against
the plain forward pass."""

import contextlib
import math

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from entropic_rl.models import (
    char_tokenizer,
    decoding,
    format_prompts,
    generate,
    load_policy,
    response_logits,
    sampling,
)
from entropic_rl.models.decoding import lean_supported, next_token_scores, prompt_groups
from entropic_rl.trainer import load_config
from test_train import TINY, tiny_llama

PROMPTS = ["3+4=", "3+4=", "3+4=", "12+57=", "12+57=", "9=", "3+4=", "3+4="]  # groups, left padding, a repeat later


def tiny_qwen2(tokenizer, **config):
    torch.manual_seed(0)
    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **config,
        )
    ).eval()


@pytest.fixture(scope="module")
def embedded():
    config = load_config(overrides=TINY)
    return load_policy(config.model, config.task, torch.device("cpu"))


@pytest.fixture(params=["embedded", "llama", "qwen2"])
def policy(request, embedded):
    if request.param == "embedded":
        return embedded
    tokenizer = char_tokenizer()
    return (tiny_llama if request.param == "llama" else tiny_qwen2)(tokenizer), tokenizer


def both(model, tokenizer, prompts, seed=0, **settings):
    """The rollouts of the generate and lean samplers from the same seed."""
    settings = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, **settings}
    rollouts = []
    for sampler in ("generate", "lean"):
        torch.manual_seed(seed)
        rollouts.append(generate(model, tokenizer, prompts, sampler=sampler, **settings))
    return rollouts


@pytest.mark.parametrize(
    "settings",
    [{}, {"temperature": 0.01}, {"temperature": 0.6, "top_p": 0.9}, {"temperature": 1.3, "min_new_tokens": 5}],
    ids=["T1", "near-greedy", "T0.6-top-p", "min-new-tokens"],
)
def test_the_lean_sampler_draws_what_generate_draws_from_the_same_seed(policy, settings):
    # stronger than greedy equality (the trainer only samples): the same random stream gives the
    # same tokens, so a run keeps its trajectory up to rounding
    model, tokenizer = policy
    for seed in range(3):
        reference, lean = both(model, tokenizer, PROMPTS, seed, **settings)
        assert torch.equal(lean.sequences, reference.sequences)
        assert torch.equal(lean.attention_mask, reference.attention_mask)
        assert torch.equal(lean.response_mask, reference.response_mask)
        assert lean.responses == reference.responses


def test_the_embedded_model_ends_responses_at_different_lengths(embedded):
    # what makes the equality above cover dropped rows
    model, tokenizer = embedded
    _, lean = both(model, tokenizer, [p for p in ("3+4=", "5+1=", "2+2=") for _ in range(8)], max_new_tokens=12)
    lengths = lean.response_mask.sum(1)
    assert len(set(lengths.tolist())) > 2


@contextlib.contextmanager
def forward_batches(model):
    """The batch size of each forward pass of ``model`` inside the block."""
    sizes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    try:
        yield sizes
    finally:
        hook.remove()


def test_the_lean_sampler_prefills_each_prompt_once_and_drops_finished_rows(embedded):
    model, tokenizer = embedded
    prompts = [p for p in ("3+4=", "5+5=", "1+8=") for _ in range(8)]
    torch.manual_seed(0)
    reference = generate(model, tokenizer, prompts, temperature=1.0, top_p=1.0, max_new_tokens=12, sampler="generate")
    torch.manual_seed(0)
    with forward_batches(model) as sizes:
        lean = generate(model, tokenizer, prompts, temperature=1.0, top_p=1.0, max_new_tokens=12)
    assert torch.equal(lean.sequences, reference.sequences)
    assert sizes[0] == 3  # one prefill row per distinct prompt
    unfinished = (lean.response_mask.sum(1)[None] > torch.arange(lean.response_mask.shape[1])[:, None]).sum(1)
    # each decoding step runs at most the rows still going, plus the finished ones not yet dropped
    assert all(size <= 24 for size in sizes[1:]) and sizes[-1] < 24
    assert all(sizes[1 + step] - unfinished[step + 1] <= 24 / 8 for step in range(len(sizes) - 1))


def test_prompt_groups_finds_each_distinct_prompt_and_its_first_row():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 5, 6], [0, 5, 6], [0, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]])  # the last row: a real token 0
    first, inverse = prompt_groups(ids, mask)
    assert len(first) == 3
    assert torch.equal(ids[first][inverse], ids) and torch.equal(mask[first][inverse], mask)
    assert sorted(first.tolist()) == [0, 2, 4]  # first occurrences


def test_next_token_scores_apply_min_tokens_non_finite_temperature_and_top_p_in_generates_order():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, math.nan, 0.0, 0.0]])
    eos = torch.tensor([True, False, False, False])
    scores, bad = next_token_scores(logits, temperature=0.5, top_p=0.9, suppress=eos)
    # row 0: <eos> (token 0) suppressed; logits / 0.5 = [-inf, 2, 0, -2]; probabilities 0.867, 0.117,
    # 0.016: the cumulative mass from the least likely, 0.016, 0.133, is <= 0.1 for token 3 only
    assert torch.equal(scores[0], torch.tensor([-math.inf, 2.0, 0.0, -math.inf]))
    assert torch.equal(scores[1], torch.zeros(4)) and bool(bad)  # a NaN row is flagged and made uniform
    _, clean = next_token_scores(logits[:1], temperature=1.0, top_p=1.0, suppress=None)
    assert not bool(clean)


def chi_square_critical(dof: int, z: float = 3.09) -> float:
    """The chi-square quantile at 1 - 1e-3 (z: the normal's), by Wilson and Hilferty's approximation."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.8, 0.9)])
def test_the_lean_samplers_tokens_follow_the_models_distribution(temperature, top_p):
    # 4,000 samples of a prompt's first two tokens against the model's (processed) next-token
    # distributions: a chi-square goodness-of-fit test at the 0.1% level, from a fixed seed
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    n, prompt = 4000, "3+4="
    torch.manual_seed(1)
    rollout = generate(model, tokenizer, [prompt] * n, temperature=temperature, top_p=top_p, max_new_tokens=2)
    responses = rollout.sequences[:, -2:]
    encoded = format_prompts(tokenizer, [prompt], "auto")
    first_token = int(responses[:, 0].mode().values)
    contexts = [encoded["input_ids"], torch.cat([encoded["input_ids"], torch.tensor([[first_token]])], 1)]
    samples = [responses[:, 0], responses[responses[:, 0] == first_token, 1]]
    for context, drawn in zip(contexts, samples, strict=True):
        with torch.no_grad():
            logits = model(input_ids=context).logits[:, -1].float()
        scores, _ = next_token_scores(logits, temperature=temperature, top_p=top_p, suppress=None)
        expected = scores.softmax(-1)[0] * len(drawn)
        observed = torch.bincount(drawn, minlength=len(expected)).float()
        assert observed[expected == 0].sum() == 0  # nothing drawn outside the nucleus
        kept = expected >= 5  # the test's usual validity condition; the rest pooled into one cell
        observed = torch.cat([observed[kept], observed[~kept].sum()[None]])
        expected = torch.cat([expected[kept], expected[~kept].sum()[None]])
        statistic = float(((observed - expected) ** 2 / expected.clamp(min=1e-9)).sum())
        assert statistic < chi_square_critical(int(kept.sum())), statistic


def test_a_sliding_window_is_sampled_by_the_lean_sampler_as_by_generate():
    tokenizer = char_tokenizer()
    sliding = tiny_qwen2(tokenizer, use_sliding_window=True, sliding_window=3, max_window_layers=1)
    assert set(sliding.config.layer_types) == {"full_attention", "sliding_attention"} and lean_supported(sliding)
    reference, lean = both(sliding, tokenizer, PROMPTS, max_new_tokens=10)
    assert torch.equal(lean.sequences, reference.sequences)


def test_models_without_attention_layers_are_sampled_with_generate(monkeypatch):
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    mamba = MambaForCausalLM(
        MambaConfig(vocab_size=len(tokenizer), hidden_size=16, state_size=4, num_hidden_layers=2)
    ).eval()
    assert not lean_supported(mamba)
    assert lean_supported(tiny_qwen2(tokenizer)) and lean_supported(tiny_llama(tokenizer))

    def no_lean_decode(*args, **kwargs):
        raise AssertionError("the lean sampler ran")

    monkeypatch.setattr(sampling, "lean_decode", no_lean_decode)
    generate(mamba, tokenizer, PROMPTS[:3], temperature=1.0, top_p=1.0, max_new_tokens=4)


def test_a_model_that_keeps_no_kv_cache_is_refused_by_the_lean_sampler_and_trained_without_sharing(monkeypatch):
    # a recurrent model that declares none of it (as RecurrentGemma): its prompt state is not in the cache
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    monkeypatch.setattr(decoding, "filled", lambda cache, length: False)
    monkeypatch.setattr(sampling, "filled", lambda cache, length: False)
    with pytest.raises(ValueError, match="keeps no KV cache the lean sampler can use: set sampler=generate"):
        generate(model, tokenizer, PROMPTS, temperature=1.0, top_p=1.0, max_new_tokens=4)
    rollout = generate(model, tokenizer, PROMPTS, temperature=1.0, top_p=1.0, max_new_tokens=4, sampler="generate")
    shapes = []
    hook = model.register_forward_pre_hook(lambda m, a, k: shapes.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    with torch.no_grad():
        got = response_logits(model, rollout.sequences, rollout.attention_mask, rollout.response_mask.shape[1])
    hook.remove()
    with torch.no_grad():
        expected = plain_response_logits(
            model, rollout.sequences, rollout.attention_mask, rollout.response_mask.shape[1]
        )
    # the shared pass tried (3 distinct prompts), then the whole sequences but the last token
    assert [s[0] for s in shapes] == [3, len(PROMPTS)] and shapes[1][1] == rollout.sequences.shape[1] - 1
    mask = rollout.response_mask.bool()
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_the_generate_sampler_ignores_the_models_own_generation_defaults():
    # a checkpoint's generation_config may carry a repetition penalty or min_p: the log-probs model neither
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    reference = both(model, tokenizer, PROMPTS)
    model.generation_config.repetition_penalty, model.generation_config.min_p = 1.5, 0.9
    penalised = both(model, tokenizer, PROMPTS)
    for before, after in zip(reference, penalised, strict=True):
        assert torch.equal(after.sequences, before.sequences)
    assert model.generation_config.repetition_penalty == 1.5  # the model's own config is left as it was


def test_a_static_cache_is_the_generate_samplers():
    tokenizer = char_tokenizer()
    with pytest.raises(ValueError, match="cache=static is the generate sampler's KV cache: set sampler=generate too"):
        generate(tiny_llama(tokenizer), tokenizer, ["1="], temperature=1.0, top_p=1.0, max_new_tokens=2, cache="static")
    with pytest.raises(ValueError, match="sampler must be one of lean, generate"):
        generate(tiny_llama(tokenizer), tokenizer, ["1="], temperature=1.0, top_p=1.0, max_new_tokens=2, sampler="vllm")


def plain_response_logits(model, sequences, attention_mask, response_length):
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).logits[
        :, -response_length - 1 : -1
    ]


def test_the_update_runs_a_shared_prompt_once_with_the_logits_and_gradients_of_the_whole_sequences(policy):
    model, tokenizer = policy
    _, rollout = both(model, tokenizer, PROMPTS)
    length = rollout.response_mask.shape[1]
    model.train()
    results = []
    try:
        for forward in (response_logits, plain_response_logits):
            model.zero_grad()
            with forward_batches(model) as sizes:
                logits = forward(model, rollout.sequences, rollout.attention_mask, length)
            results.append(sizes)
            weights = torch.linspace(-1, 1, logits.numel()).view_as(logits)  # a loss that reads every logit
            (logits * weights * rollout.response_mask[..., None]).sum().backward()
            results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    finally:
        model.eval()
    shared_sizes, (shared, shared_grads), plain_sizes, (plain, plain_grads) = results
    assert shared_sizes == [3, len(PROMPTS)] and plain_sizes == [len(PROMPTS)]  # 3 distinct prompts, then each row
    mask = rollout.response_mask.bool()
    torch.testing.assert_close(shared[mask], plain[mask], atol=1e-5, rtol=1e-5)
    for got, expected in zip(shared_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_distinct_prompts_and_gradient_checkpointing_take_the_plain_forward_pass(embedded):
    model, tokenizer = embedded
    _, rollout = both(model, tokenizer, ["1+1=", "2+2=", "3+3="])
    with forward_batches(model) as sizes:
        response_logits(model, rollout.sequences, rollout.attention_mask, rollout.response_mask.shape[1])
    assert sizes == [3]
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        _, grouped = both(model, tokenizer, PROMPTS)
        with forward_batches(model) as sizes:
            response_logits(model, grouped.sequences, grouped.attention_mask, grouped.response_mask.shape[1])
        assert sizes == [len(PROMPTS)]
    finally:
        model.gradient_checkpointing_disable()
