import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from entropic_rl import AGG_MODES, agg_denominator, aggregate, policy_loss
from entropic_rl.core import confident_mask, entropic_weights

# Two sequences of length 3: the first has 3 valid tokens, the second 1.
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),
        ("seq-mean-token-mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),
        ("seq-mean-token-sum", ((1 + 2 + 3) + 4) / 2),
        ("seq-mean-token-sum-norm", (1 + 2 + 3 + 4) / (2 * 3)),
    ],
)
def test_aggregation_modes_hand_computed(mode, expected):
    assert aggregate(VALUES, MASK, mode).item() == pytest.approx(expected)


def test_sum_norm_uses_configured_max_len_and_skips_empty_rows():
    mask = torch.cat([MASK, torch.zeros(1, 3)])  # a fully padded row is not a sequence
    values = torch.cat([VALUES, torch.ones(1, 3)])
    denominator = agg_denominator(mask, "seq-mean-token-sum-norm", max_len=10)
    assert denominator.item() == 2 * 10
    assert aggregate(values, mask, "seq-mean-token-sum-norm", denominator).item() == pytest.approx(10 / 20)


def rollout(seed=0, batch=6, length=5, on_policy=True):
    gen = torch.Generator().manual_seed(seed)
    # about half the tokens confident (p > 0.95), the rest spread over (0.01, 0.91)
    u = torch.rand(batch, length, generator=gen)
    probs = torch.where(torch.rand(batch, length, generator=gen) < 0.5, 0.96 + 0.039 * u, 0.01 + 0.9 * u)
    old = torch.log(probs)
    log_prob = old.clone() if on_policy else old + 0.3 * torch.randn(batch, length, generator=gen)
    advantages = torch.randn(batch, 1, generator=gen).expand(batch, length).clone()
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length) < lengths[:, None]).float()
    return log_prob.requires_grad_(), old, advantages, mask


def test_ppo_clip_and_dual_clip_hand_computed():
    # token 0: A=+1, r=2 -> clipped at 1.2: loss -1.2
    # token 1: A=-1, r=0.5 -> max(0.5, 0.8) = 0.8 (clip at 1-0.2)
    # token 2: A=-1, r=10 -> max(10, 1.2) = 10, dual clip min(10, 3) = 3
    # token 3: A=+1, r=1 -> -1 (no clip)
    ratio = torch.tensor([[2.0, 0.5, 10.0, 1.0]])
    log_prob = torch.log(ratio) + math.log(0.5)
    old = torch.full_like(log_prob, math.log(0.5))
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    loss, metrics = policy_loss(log_prob, old, adv, torch.ones_like(adv), threshold=0.99)
    assert loss.item() == pytest.approx((-1.2 + 0.8 + 3.0 - 1.0) / 4)
    assert metrics["pg_clipfrac"].item() == pytest.approx(2 / 4)  # tokens 0 and 1
    assert metrics["pg_clipfrac_lower"].item() == pytest.approx(1 / 4)  # token 2
    assert metrics["ppo_kl"].item() == pytest.approx(-torch.log(ratio).mean().item())


def test_adjustment_hand_computed_both_normalisations():
    # On-policy (r = 1). Probabilities 0.99, 0.5, 0.97, 0.2 -> confident: tokens 0 and 2.
    probs = torch.tensor([[0.99, 0.5, 0.97, 0.2]])
    log_prob = torch.log(probs)
    adv = torch.tensor([[2.0, -1.0, -3.0, 1.0]])
    mask = torch.ones_like(adv)
    base = (-2.0 + 1.0 + 3.0 - 1.0) / 4
    alpha = 0.5
    # reference: alpha * mean over confident tokens of -|A| = 0.5 * (-(2 + 3) / 2)
    ref, m_ref = policy_loss(log_prob, log_prob, adv, mask, alpha=alpha, normalize="reference")
    assert ref.item() == pytest.approx(base + alpha * (-(2.0 + 3.0) / 2))
    # exact: same denominator as the base loss (4 tokens)
    exact, m_exact = policy_loss(log_prob, log_prob, adv, mask, alpha=alpha, normalize="exact")
    assert exact.item() == pytest.approx(base + alpha * (-(2.0 + 3.0) / 4))
    assert m_ref["confident_frac"].item() == pytest.approx(0.5)
    assert m_ref["weight_pos"].item() == pytest.approx(1 + alpha * 2)  # kappa = 4 / 2
    assert m_ref["weight_neg"].item() == pytest.approx(1 - alpha * 2)
    assert m_exact["weight_pos"].item() == pytest.approx(1 + alpha)
    assert m_exact["weight_neg"].item() == pytest.approx(1 - alpha)


def effective_weights(normalize, alpha, agg="token-mean", seed=0, threshold=0.95):
    """Per-token gradient of the EntroPIC loss divided by that of the plain loss (on-policy)."""
    log_prob, old, adv, mask = rollout(seed)
    loss, _ = policy_loss(log_prob, old, adv, mask, alpha=alpha, normalize=normalize, agg=agg, threshold=threshold)
    (grad,) = torch.autograd.grad(loss, log_prob)
    (grad_base,) = torch.autograd.grad(policy_loss(log_prob, old, adv, mask, agg=agg, normalize=normalize)[0], log_prob)
    valid = (mask > 0) & (adv != 0)
    confident = valid & (log_prob.detach() > math.log(0.95))
    return grad, grad_base, valid, confident, adv, mask


@pytest.mark.parametrize("alpha", [-0.7, 0.4])
def test_gradient_weights_reference_are_one_plus_minus_alpha_kappa(alpha):
    grad, grad_base, valid, confident, adv, mask = effective_weights("reference", alpha)
    assert confident.any() and (valid & ~confident).any()
    kappa = mask.sum() / confident.sum()
    weights = grad[valid] / grad_base[valid]
    expected = torch.where(confident[valid], 1 + alpha * kappa * torch.sign(adv[valid]), torch.ones(()))
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("alpha", [-1.0, 0.3])
def test_gradient_weights_exact_are_one_plus_minus_alpha(agg, alpha):
    grad, grad_base, valid, confident, adv, _ = effective_weights("exact", alpha, agg=agg)
    weights = grad[valid] / grad_base[valid]
    expected = torch.where(confident[valid], 1 + alpha * torch.sign(adv[valid]), torch.ones(()))
    torch.testing.assert_close(weights, expected)


def test_threshold_zero_reweights_every_token():
    grad, grad_base, valid, _, adv, _ = effective_weights("exact", 0.5, threshold=0.0)
    torch.testing.assert_close(grad[valid] / grad_base[valid], 1 + 0.5 * torch.sign(adv[valid]))


def test_zero_advantage_and_padding_tokens_get_no_gradient():
    log_prob, old, adv, mask = rollout(1)
    adv[0] = 0.0
    (grad,) = torch.autograd.grad(policy_loss(log_prob, old, adv, mask, alpha=0.8)[0], log_prob)
    assert torch.all(grad[0] == 0)
    assert torch.all(grad[mask == 0] == 0)


def test_alpha_zero_is_plain_grpo_in_both_normalisations():
    log_prob, old, adv, mask = rollout(2, on_policy=False)
    plain = policy_loss(log_prob, old, adv, mask)[0]
    for normalize in ("reference", "exact"):
        assert policy_loss(log_prob, old, adv, mask, alpha=0.0, normalize=normalize)[0].item() == plain.item()


@pytest.mark.parametrize(("adv", "old_p"), [(1.0, 0.49), (-1.0, 0.196)], ids=["ratio-clip", "dual-clip"])
def test_clipped_tokens_reference_uses_unclipped_ratio_exact_keeps_ppo_zero(adv, old_p):
    # r = 2 (A > 0: clipped at 1.2) or r = 5 (A < 0: dual-clipped at c = 3): PPO gives no gradient.
    log_prob = torch.tensor([[math.log(0.98)]], requires_grad=True)
    old = torch.tensor([[math.log(old_p)]])
    adv, mask = torch.tensor([[adv]]), torch.tensor([[1.0]])
    ratio = 0.98 / old_p
    grads = {}
    for normalize in ("reference", "exact"):
        loss, _ = policy_loss(log_prob, old, adv, mask, alpha=0.5, normalize=normalize)
        (grads[normalize],) = torch.autograd.grad(loss, log_prob)
    (g_base,) = torch.autograd.grad(policy_loss(log_prob, old, adv, mask)[0], log_prob)
    assert g_base.item() == 0.0
    # the authors': d/dlp of alpha * (-r |A|) = -alpha r |A|, even raising a negative token
    assert grads["reference"].item() == pytest.approx(-0.5 * ratio)
    assert grads["exact"].item() == 0.0  # (1 +- alpha) x PPO's zero


def entropy_after_one_step(alpha, normalize):
    """One SGD step on a softmax policy with confident tokens and mixed advantages."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.tensor([4.0, 0.5, 0.0, -0.5]).repeat(8, 1)
    logits = (logits + 0.1 * torch.randn(8, 4, generator=gen)).requires_grad_()
    tokens = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    rewards = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0])  # the confident token 0 is right and wrong
    adv = ((rewards - rewards.mean()) / rewards.std()).unsqueeze(-1)
    lp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1))
    loss, _ = policy_loss(lp, lp.detach(), adv, torch.ones_like(adv), alpha=alpha, normalize=normalize, threshold=0.9)
    loss.backward()
    new_logits = logits.detach() - 5.0 * logits.grad
    log_p = torch.log_softmax(new_logits, -1)
    return -(log_p.exp() * log_p).sum(-1).mean().item()


@pytest.mark.parametrize("normalize", ["reference", "exact"])
def test_sign_entropy_below_target_gives_negative_alpha_which_raises_entropy(normalize):
    from entropic_rl import PIController

    controller = PIController(target_entropy=1.0)
    alpha = controller.update(entropy=0.3)  # below target
    assert alpha < 0
    log_p = torch.log_softmax(torch.tensor([4.0, 0.5, 0.0, -0.5]), -1)
    h_before = -(log_p.exp() * log_p).sum().item()
    h_neg, h_zero, h_pos = (entropy_after_one_step(a, normalize) for a in (alpha, 0.0, -alpha))
    assert h_neg > h_zero > h_pos
    assert h_neg > h_before


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_micro_batch_accumulation_equals_full_batch(agg, alpha):
    log_prob, old, adv, mask = rollout(4, batch=8, length=6, on_policy=False)
    kwargs = {"agg": agg, "alpha": alpha, "normalize": "exact"}
    (full,) = torch.autograd.grad(policy_loss(log_prob, old, adv, mask, **kwargs)[0], log_prob)
    denominator = agg_denominator(mask, agg)
    accumulated = torch.zeros_like(log_prob)
    for rows in (slice(0, 3), slice(3, 4), slice(4, 8)):
        lp = log_prob.detach()[rows].clone().requires_grad_()
        loss, _ = policy_loss(lp, old[rows], adv[rows], mask[rows], denominator=denominator, **kwargs)
        (g,) = torch.autograd.grad(loss, lp)
        accumulated[rows] = g
    torch.testing.assert_close(accumulated, full)


def test_the_reference_loss_is_normalised_within_each_call():
    log_prob, old, adv, mask = rollout(5, batch=8, length=6, on_policy=False)
    with pytest.raises(ValueError, match="denominator: the reference loss is normalised within each call"):
        policy_loss(log_prob, old, adv, mask, normalize="reference", denominator=agg_denominator(mask))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip_low": 1.01}, "clip_low"),
        ({"clip_low": -0.1}, "clip_low"),
        ({"clip_high": -0.1}, "clip_high"),
        ({"clip_c": 1.0}, "clip_c"),
        ({"agg": "mean"}, "agg"),
        ({"alpha": float("nan")}, "alpha"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"normalize": "approx"}, "normalize"),
    ],
)
def test_bad_options_name_the_field(kwargs, message):
    log_prob, old, adv, mask = rollout()
    with pytest.raises(ValueError, match=message):
        policy_loss(log_prob, old, adv, mask, **kwargs)


def test_clip_ratio_one_leaves_only_the_upper_bound_two():
    # Clip-Cov's released setting (clip_low = clip_high = 1): the ratio is clipped to [0, 2], so a
    # positive-advantage token clips above 2 and a negative one never clips below (the ratio is > 0).
    ratio = torch.tensor([[3.0, 0.01]])
    log_prob = (torch.log(ratio) + math.log(0.5)).requires_grad_()
    old = torch.full_like(log_prob, math.log(0.5))
    adv = torch.tensor([[1.0, -1.0]])
    loss, metrics = policy_loss(log_prob, old, adv, torch.ones_like(adv), clip_low=1.0, clip_high=1.0, threshold=0.99)
    assert loss.item() == pytest.approx((-2.0 + 0.01) / 2)
    assert metrics["pg_clipfrac"].item() == pytest.approx(1 / 2)


def test_shape_mismatch_names_the_tensor():
    log_prob, old, adv, mask = rollout()
    with pytest.raises(ValueError, match="advantages shape"):
        policy_loss(log_prob, old, adv[:, :2], mask)


@settings(max_examples=50, deadline=None)
@given(alpha=st.floats(-1.0, 1.0), seed=st.integers(0, 10_000), agg=st.sampled_from(AGG_MODES))
def test_property_exact_gradient_is_one_plus_minus_alpha_times_ppo_off_policy(alpha, seed, agg):
    # Off-policy, with ratio- and dual-clipped tokens: every token's gradient is PPO's own times
    # 1 + alpha sign(A) on confident tokens and 1 elsewhere, so it never changes sign.
    log_prob, old, adv, mask = rollout(seed, on_policy=False)
    loss, _ = policy_loss(log_prob, old, adv, mask, alpha=alpha, normalize="exact", agg=agg)
    (grad,) = torch.autograd.grad(loss, log_prob)
    (grad_base,) = torch.autograd.grad(policy_loss(log_prob, old, adv, mask, agg=agg)[0], log_prob)
    confident = (mask > 0) & (log_prob.detach() > math.log(0.95))
    factor = torch.where(confident, 1 + alpha * torch.sign(adv), torch.ones(()))
    torch.testing.assert_close(grad, factor * grad_base)


@settings(max_examples=50, deadline=None)
@given(
    alpha=st.floats(-1.0, 1.0),
    seed=st.integers(0, 10_000),
    agg=st.sampled_from(AGG_MODES),
    threshold=st.sampled_from([0.0, 0.5, 0.95]),
)
def test_property_reweighted_advantages_give_the_exact_loss_and_gradient(alpha, seed, agg, threshold):
    # What the TRL and verl integrations rely on: the plain loss with advantages times the
    # EntroPIC weights equals the exact EntroPIC loss, value and gradient, clipped tokens included.
    log_prob, old, adv, mask = rollout(seed, on_policy=False)
    weights = entropic_weights(adv, confident_mask(log_prob, mask, threshold), alpha)
    assert weights.min() >= 0 and weights.max() <= 2 and not weights.requires_grad
    exact, _ = policy_loss(log_prob, old, adv, mask, alpha=alpha, threshold=threshold, normalize="exact", agg=agg)
    reweighted, _ = policy_loss(log_prob, old, adv * weights, mask, agg=agg)
    torch.testing.assert_close(reweighted, exact)
    grads = [torch.autograd.grad(loss, log_prob)[0] for loss in (exact, reweighted)]
    torch.testing.assert_close(grads[1], grads[0])


def test_entropic_weights_hand_computed():
    # pi = 0.99, 0.5, 0.99, 0.99 (last one padding); A = +1, +1, -1, -1; threshold 0.95, alpha 0.5
    log_prob = torch.log(torch.tensor([[0.99, 0.5, 0.99, 0.99]]))
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    weights = entropic_weights(adv, confident_mask(log_prob, mask, threshold=0.95), alpha=0.5)
    torch.testing.assert_close(weights, torch.tensor([[1.5, 1.0, 0.5, 1.0]]))


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("normalize", ["reference", "exact"])
def test_weight_metrics_are_the_mean_gradient_weights(agg, normalize):
    grad, grad_base, valid, confident, adv, mask = effective_weights(normalize, 0.4, agg=agg)
    log_prob, old, _, _ = rollout(0)
    _, metrics = policy_loss(log_prob, old, adv, mask, alpha=0.4, normalize=normalize, agg=agg)
    ratio = grad / torch.where(valid, grad_base, torch.ones(()))
    for name, side in (("weight_pos", adv > 0), ("weight_neg", adv < 0)):
        assert metrics[name].item() == pytest.approx(ratio[confident & side].mean().item(), rel=1e-5)


def test_weight_metrics_are_one_without_confident_tokens():
    log_prob, old, adv, mask = rollout(0)
    _, metrics = policy_loss(log_prob, old, adv, mask, alpha=0.7, threshold=0.999999)
    assert metrics["confident_frac"].item() == 0.0
    assert metrics["weight_pos"].item() == metrics["weight_neg"].item() == 1.0


def test_nan_and_inf_at_padded_positions_are_ignored():
    log_prob, old, adv, mask = rollout(6)
    clean, _ = policy_loss(log_prob, old, adv, mask, alpha=0.3)
    dirty_lp = torch.where(mask > 0, log_prob.detach(), torch.tensor(float("nan"))).requires_grad_()
    dirty_old = torch.where(mask > 0, old, -torch.tensor(float("inf")))
    loss, _ = policy_loss(dirty_lp, dirty_old, adv, mask, alpha=0.3)
    torch.testing.assert_close(loss, clean)
    (grad,) = torch.autograd.grad(loss, dirty_lp)
    assert torch.isfinite(grad).all()


def test_aggregate_accumulates_bfloat16_in_float32():
    values = torch.ones(1, 1001, dtype=torch.bfloat16)
    mask = torch.ones(1, 1001)
    for mode in ("token-mean", "seq-mean-token-mean"):
        assert aggregate(values, mask, mode).item() == 1.0
