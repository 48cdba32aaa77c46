import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entropic_rl import token_logprobs_and_entropy


def naive(logits, tokens, temperature=1.0):
    work_dtype = torch.promote_types(logits.dtype, torch.float32)  # fp64 stays fp64
    log_p = torch.log_softmax(logits.to(work_dtype) / temperature, dim=-1)
    log_probs = log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -torch.special.xlogy(log_p.exp(), log_p.exp()).sum(-1)  # 0 log 0 = 0
    return log_probs, entropy


def test_hand_computed_two_token_vocabulary():
    # p = softmax([0, ln 3]) = (1/4, 3/4): lp(token 1) = ln 3/4, H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    log_probs, entropy = token_logprobs_and_entropy(logits, torch.tensor([1]))
    assert log_probs.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert entropy.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)


def test_temperature_divides_logits():
    logits = torch.tensor([[0.0, 2.0 * math.log(3.0)]])
    at_t2 = token_logprobs_and_entropy(logits, torch.tensor([1]), temperature=2.0)
    at_t1 = token_logprobs_and_entropy(logits / 2.0, torch.tensor([1]))
    torch.testing.assert_close(at_t2, at_t1)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_chunked_equals_naive_values_and_gradients(chunk_size, temperature):
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 5, 50, generator=gen)).requires_grad_()
    tokens = torch.randint(0, 50, (4, 5), generator=gen)
    upstream_lp, upstream_h = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)

    lp, h = token_logprobs_and_entropy(logits, tokens, temperature, chunk_size)
    (grad,) = torch.autograd.grad((lp * upstream_lp).sum() + (h * upstream_h).sum(), logits)
    lp_ref, h_ref = naive(logits, tokens, temperature)
    (grad_ref,) = torch.autograd.grad((lp_ref * upstream_lp).sum() + (h_ref * upstream_h).sum(), logits)

    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=0)


def test_bfloat16_logits_are_computed_in_float32_and_grad_keeps_dtype():
    logits = torch.randn(6, 40).to(torch.bfloat16).requires_grad_()
    tokens = torch.randint(0, 40, (6,))
    lp, h = token_logprobs_and_entropy(logits, tokens, chunk_size=4)
    lp_ref, h_ref = naive(logits, tokens)
    assert lp.dtype == h.dtype == torch.float32
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
    (lp.sum() + h.sum()).backward()
    (grad_ref,) = torch.autograd.grad(lp_ref.sum() + h_ref.sum(), logits)
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.float(), grad_ref.float(), atol=1e-2, rtol=1e-2)  # bf16 resolution


def test_masked_minus_inf_logits_give_finite_entropy_and_gradient():
    kept = torch.randn(3, 5, requires_grad=True)  # the distribution without the masked entries
    logits = torch.cat([kept, torch.full((3, 3), -math.inf)], dim=1)  # vocabulary masking
    tokens = torch.tensor([0, 2, 4])
    lp, h = token_logprobs_and_entropy(logits, tokens, chunk_size=2)
    lp_ref, h_ref = naive(kept, tokens)
    torch.testing.assert_close((lp, h), (lp_ref, h_ref))
    # entropy unused: autograd feeds it a zero gradient, which must not turn into nan
    (grad_lp,) = torch.autograd.grad(lp.sum(), logits, retain_graph=True)
    assert torch.isfinite(grad_lp).all() and torch.all(grad_lp[:, 5:] == 0)
    (grad_h,) = torch.autograd.grad(h.sum(), logits)
    (grad_ref,) = torch.autograd.grad(h_ref.sum(), kept)
    torch.testing.assert_close(grad_h[:, :5], grad_ref)
    assert torch.all(grad_h[:, 5:] == 0)


def test_large_logits_are_stable():
    logits = torch.tensor([[1e4, 0.0, -1e4], [3e3, 3e3, 0.0]], requires_grad=True)
    lp, h = token_logprobs_and_entropy(logits, torch.tensor([1, 0]), temperature=0.6)
    lp_ref, h_ref = naive(logits, torch.tensor([1, 0]), 0.6)
    torch.testing.assert_close((lp, h), (lp_ref, h_ref))
    (lp.sum() + h.sum()).backward()
    assert torch.isfinite(logits.grad).all()


def test_non_contiguous_logits_are_read_in_place_and_match():
    full = torch.randn(3, 6, 11, requires_grad=True)
    logits = full[:, :-1]  # the usual shift: not viewable as (N, V)
    assert not logits.is_contiguous()
    tokens = torch.randint(0, 11, (3, 5))
    lp, h = token_logprobs_and_entropy(logits, tokens, chunk_size=3)
    (grad,) = torch.autograd.grad(lp.sum() + 2 * h.sum(), full)
    lp_ref, h_ref = naive(logits, tokens)
    (grad_ref,) = torch.autograd.grad(lp_ref.sum() + 2 * h_ref.sum(), full)
    torch.testing.assert_close((lp, h, grad), (lp_ref, h_ref, grad_ref))


def test_negative_token_ids_on_padding_are_read_as_token_zero():
    logits = torch.randn(2, 4)
    lp, _ = token_logprobs_and_entropy(logits, torch.tensor([-100, 3]))
    torch.testing.assert_close(lp, naive(logits, torch.tensor([0, 3]))[0])


def test_gradcheck_in_float64_within_float32_precision():
    # The function works in fp32 internally, so compare the analytic gradient with central
    # differences of the fp64 naive function rather than calling gradcheck on it.
    logits = torch.randn(3, 6, dtype=torch.float64)
    tokens = torch.randint(0, 6, (3,))
    x = logits.float().requires_grad_()
    lp, h = token_logprobs_and_entropy(x, tokens, temperature=0.7, chunk_size=2)
    (lp.sum() + 2 * h.sum()).backward()

    def f(z):
        a, b = naive(z, tokens, 0.7)
        return (a.sum() + 2 * b.sum()).item()

    numeric = torch.zeros_like(logits)
    eps = 1e-6
    for idx in range(logits.numel()):
        step = torch.zeros(logits.numel(), dtype=torch.float64)
        step[idx] = eps
        step = step.view_as(logits)
        numeric.view(-1)[idx] = (f(logits.double() + step) - f(logits.double() - step)) / (2 * eps)
    torch.testing.assert_close(x.grad.double(), numeric, atol=1e-5, rtol=0)


def test_empty_input():
    logits = torch.zeros(0, 7, requires_grad=True)
    lp, h = token_logprobs_and_entropy(logits, torch.zeros(0, dtype=torch.long))
    assert lp.shape == h.shape == (0,)
    (lp.sum() + h.sum()).backward()
    assert logits.grad.shape == (0, 7)


@pytest.mark.parametrize(
    ("logits", "tokens", "kwargs", "message"),
    [
        (torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), {}, "tokens shape"),
        (torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), {"temperature": 0.0}, "temperature"),
        (torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_name_the_field(logits, tokens, kwargs, message):
    with pytest.raises(ValueError, match=message):
        token_logprobs_and_entropy(logits, tokens, **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    n_tokens=st.integers(1, 30),
    vocab=st.integers(2, 64),
    chunk_size=st.integers(1, 40),
    scale=st.floats(0.1, 20.0),
    temperature=st.floats(0.3, 2.0),
    seed=st.integers(0, 2**16),
)
def test_property_chunked_equals_naive(n_tokens, vocab, chunk_size, scale, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n_tokens, vocab, generator=gen)
    tokens = torch.randint(0, vocab, (n_tokens,), generator=gen)
    lp, h = token_logprobs_and_entropy(logits, tokens, temperature, chunk_size)
    lp_ref, h_ref = naive(logits, tokens, temperature)
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    assert torch.all(h >= -1e-6) and torch.all(h <= math.log(vocab) + 1e-5)
