"""The baselines of ALGORITHMS.md §3 on small hand-checked tensors: token selection, coefficient
updates, the clamped-entropy renormalisation, and gradients (not only values)."""

import math

import pytest
import torch

from entropic_rl.core import agg_denominator, clamped_entropy, policy_loss, token_covariance
from entropic_rl.methods import METHODS, LossSettings, MicroBatch, Window
from entropic_rl.methods.aec import AEC, AECTRL, AECConfig, AECTRLConfig
from entropic_rl.methods.aent import AEnt, AEntConfig
from entropic_rl.methods.clip_cov import ClipCov, ClipCovConfig
from entropic_rl.methods.entropy_bonus import EntropyBonus, EntropyBonusConfig
from entropic_rl.methods.kl_cov import KLCov, KLCovConfig
from entropic_rl.methods.nsr import NSR, NSRConfig
from entropic_rl.methods.w_reinforce import WReinforce, WReinforceConfig


def micro_batch(log_prob, old, adv, mask, entropy=None, logits=None):
    log_prob = torch.tensor(log_prob, requires_grad=True)
    mask = torch.tensor(mask)
    entropy = torch.tensor(entropy if entropy is not None else torch.ones_like(mask).tolist(), requires_grad=True)
    return MicroBatch(log_prob, entropy, torch.tensor(old), torch.tensor(adv), mask, agg_denominator(mask), 1.0, logits)


# Two responses of 3 tokens; the second has 2 valid tokens.
LP = [[-0.1, -0.5, -2.0], [-0.3, -1.0, -0.2]]
ADV = [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
ENTROPY = [[0.5, 1.0, 1.5], [0.2, 0.4, 9.0]]


def ppo_gradient(mb):
    loss, _ = policy_loss(mb.log_prob, mb.old_log_prob, mb.advantages, mb.mask, denominator=mb.denominator)
    return torch.autograd.grad(loss, mb.log_prob)[0]


def test_entropy_bonus_subtracts_c_times_the_mean_entropy_with_its_gradient():
    mb = micro_batch(LP, LP, ADV, MASK, ENTROPY)
    loss, _ = EntropyBonus(EntropyBonusConfig(coef=0.1)).loss(mb)
    plain, _ = policy_loss(mb.log_prob, mb.old_log_prob, mb.advantages, mb.mask)
    mean_entropy = (0.5 + 1.0 + 1.5 + 0.2 + 0.4) / 5  # the padded 9.0 does not count
    assert loss.item() == pytest.approx(plain.item() - 0.1 * mean_entropy)
    (grad,) = torch.autograd.grad(loss, mb.entropy)
    torch.testing.assert_close(grad, -0.1 * mb.mask / 5)


def window(neg_entropy_estimate):
    """A window of 4 tokens whose sampled tokens have mean log-prob -estimate."""
    return Window(entropy_sum=1.0, token_count=4.0, logprob_sum=-4.0 * neg_entropy_estimate)


def test_aec_moves_the_coefficient_by_delta_and_applies_the_bonus_the_step_after_a_low_estimate():
    method = AEC(AECConfig(target_entropy=0.2, delta=1e-3, coef_max=2.5e-3, coef_init=0.0))
    applied = []
    for estimate in (0.1, 0.1, 0.1, 0.1, 0.3, 0.1):
        method.update(window(estimate))
        mb = micro_batch(LP, LP, ADV, MASK, ENTROPY)
        loss, _ = method.loss(mb)
        (grad,) = torch.autograd.grad(loss, mb.entropy, allow_unused=True)
        applied.append(0.0 if grad is None else -grad[0, 0].item() * 5)  # the coefficient on the bonus
        assert method.metrics()["aec/estimate"] == pytest.approx(estimate)
    # Estimates below target raise c by delta (capped at 2.5e-3), above lower it; the bonus at a step
    # uses the coefficient and the decision of the previous step's estimate.
    assert applied == pytest.approx([0.0, 1e-3, 2e-3, 2.5e-3, 2.5e-3, 0.0])
    assert method.coef == pytest.approx(2.5e-3)


def test_aec_state_round_trip():
    method = AEC(AECConfig())
    method.update(window(0.1))
    resumed = AEC(AECConfig())
    resumed.load_state_dict(method.state_dict())
    assert resumed.state_dict() == method.state_dict()


def trl_adaptive_entropy(entropies, target, delta, coef_max):
    """TRL 1.16's rule (GRPOTrainer.compute_loss, use_adaptive_entropy), transcribed: the coefficient
    applied at each optimizer step, given each step's token-mean training-pass entropy."""
    coef, last, applied = 0.0, math.inf, []
    for entropy in entropies:
        applied.append(coef if last <= target else 0.0)
        coef = min(coef + delta, coef_max) if entropy <= target else max(coef - delta, 0.0)
        last = entropy
    return applied


def test_aec_trl_coefficients_follow_trls_rule_on_the_same_entropies():
    # Each step one micro-batch whose 5 valid tokens have the same entropy; 0.2 (== target) counts as
    # below for TRL; the cap 1.2e-2 is reached.
    entropies = [0.1, 0.1, 0.2, 0.1, 0.3, 0.3, 0.1, 0.1, 0.1, 0.5]
    method = AECTRL(AECTRLConfig(target_entropy=0.2, coef_max=1.2e-2))
    applied = []
    for entropy in entropies:
        method.update(Window(0.0, 0.0))
        mb = micro_batch(LP, LP, ADV, MASK, [[entropy] * 3, [entropy, entropy, 9.0]])
        loss, _ = method.loss(mb)
        (grad,) = torch.autograd.grad(loss, mb.entropy, allow_unused=True)
        applied.append(0.0 if grad is None else -grad[0, 0].item() * 5)  # the coefficient on the bonus
    expected = trl_adaptive_entropy(entropies, 0.2, 5e-3, 1.2e-2)
    assert applied == pytest.approx(expected)
    assert max(expected) == pytest.approx(1.2e-2) and expected.count(0.0) >= 3  # both bounds and the gate acted
    assert AECTRLConfig().delta == 5e-3 and AECTRLConfig().coef_max == 1.0 and AECTRLConfig().target_entropy == 0.2


def test_aec_trl_resumes_between_a_steps_losses_and_the_next_update():
    method, resumed = AECTRL(AECTRLConfig()), AECTRL(AECTRLConfig())
    method.update(Window(0.0, 0.0))
    method.loss(micro_batch(LP, LP, ADV, MASK, ENTROPY))
    resumed.load_state_dict(method.state_dict())
    method.update(Window(0.0, 0.0))
    resumed.update(Window(0.0, 0.0))
    assert resumed.state_dict() == method.state_dict()
    assert method.coef == pytest.approx(0.0) and method.estimate == pytest.approx(3.6 / 5)


def test_clamped_entropy_renormalises_without_the_lowest_logits():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]], requires_grad=True)
    kept = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), dim=-1)  # the lowest quarter (one logit) removed
    expected = -(kept * kept.log()).sum()
    value = clamped_entropy(logits, 0.25)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert grad[0, 0] == 0.0  # the removed logit gets no gradient
    reference = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    p = torch.softmax(reference, dim=-1)
    (expected_grad,) = torch.autograd.grad(-(p * p.log()).sum(), reference)
    torch.testing.assert_close(grad[0, 1:], expected_grad)
    full = torch.softmax(logits.detach(), dim=-1)
    assert clamped_entropy(logits, 0.0).item() == pytest.approx(-(full * full.log()).sum().item(), rel=1e-6)
    assert clamped_entropy(logits / 2, 0.25, temperature=0.5).item() == pytest.approx(expected.item(), rel=1e-6)


def test_clamped_entropy_in_chunks_equals_one_chunk():
    logits = torch.randn(5, 3, 11, generator=torch.Generator().manual_seed(0), requires_grad=True)
    one, chunked = clamped_entropy(logits, 0.3), clamped_entropy(logits, 0.3, chunk_size=2)
    torch.testing.assert_close(one, chunked)
    grads = [torch.autograd.grad(v.sum(), logits)[0] for v in (one, chunked)]
    torch.testing.assert_close(grads[0], grads[1])


def test_aent_coefficient_adapts_after_warmup_towards_the_band():
    config = AEntConfig(
        coef_init=5e-4, lr=1e-3, entropy_low=0.35, entropy_high=0.62, coef_min=4e-5, coef_max=1e-3, warmup_steps=1
    )
    method = AEnt(config, LossSettings())
    coefs = []
    # Logits whose clamped entropy is well below 0.35 (confident), then well above 0.62 (flat).
    confident = torch.tensor([[[0.0, 0.0, 0.0, 8.0]] * 3] * 2)
    flat = torch.zeros(2, 3, 4)
    for logits in (confident, confident, confident, flat):
        method.update(Window(0.0, 1.0))
        method.loss(micro_batch(LP, LP, ADV, MASK, ENTROPY, logits=logits.requires_grad_()))
        coefs.append(method.coef)
    h_low = clamped_entropy(confident, 0.25)[0, 0].item()
    # Updates use the previous step's mean; the first two steps are the warm-up (steps <= 1).
    step_up = 5e-4 - 1e-3 * (h_low - 0.35)
    assert coefs[:3] == pytest.approx([5e-4, 5e-4, step_up])
    assert coefs[3] == pytest.approx(min(step_up - 1e-3 * (h_low - 0.35), 1e-3))
    method.update(Window(0.0, 1.0))  # the flat step: all logits tied, none removed, entropy log 4 > 0.62
    assert method.coef == pytest.approx(max(coefs[3] - 1e-3 * (math.log(4) - 0.62), 4e-5))


def test_aent_gradient_is_minus_beta_times_the_clamped_entropy_gradient():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    method = AEnt(AEntConfig(coef_init=1e-3), LossSettings())
    mb = micro_batch(LP, LP, ADV, MASK, ENTROPY, logits=logits)
    loss, _ = method.loss(mb)
    (grad,) = torch.autograd.grad(loss, logits)
    bonus = (clamped_entropy(logits, 0.25) * mb.mask).sum() / mb.mask.sum()
    (expected,) = torch.autograd.grad(-1e-3 * bonus, logits)
    torch.testing.assert_close(grad, expected)


def test_token_covariance_hand_computed():
    adv = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    lp = torch.tensor([[-1.0, -3.0], [-2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # means over the 3 valid tokens: A 1/3, lp -2
    expected = torch.tensor([[(2 / 3) * 1.0, (2 / 3) * -1.0], [(-4 / 3) * 0.0, 0.0]])
    torch.testing.assert_close(token_covariance(adv, lp, mask), expected)


def test_clip_cov_zeroes_the_loss_of_drawn_candidates_only():
    # A = [3, 3, 3, -1], lp = [0, 0, 2, 0]: means A 2, lp 0.5, so Cov = [-0.5, -0.5, 1.5, 1.5];
    # the candidates (1 < Cov < 5, not clipped by PPO) are tokens 2 and 3.
    log_prob = [[0.0, 0.0, 2.0, 0.0]]
    old = [[0.0, 0.0, 2.0, -0.1]]  # ratios 1 and e^0.1: inside the clip range
    adv = [[3.0, 3.0, 3.0, -1.0]]
    mask = [[1.0, 1.0, 1.0, 1.0]]
    method = ClipCov(ClipCovConfig(fraction=0.25))  # max(1, floor(0.25 * 4)) = 1 token
    torch.manual_seed(0)
    chosen = set()
    for _ in range(20):
        mb = micro_batch(log_prob, old, adv, mask)
        loss, _ = method.loss(mb)
        (grad,) = torch.autograd.grad(loss, mb.log_prob)
        zeroed = {i for i in range(4) if grad[0, i] == 0 and ppo_gradient(mb)[0, i] != 0}
        assert len(zeroed) == 1 and method.metrics()["clip-cov/selected"] == 1.0
        chosen |= zeroed
        others = [i for i in range(4) if i not in zeroed]
        torch.testing.assert_close(grad[0, others], ppo_gradient(mb)[0, others])
    assert chosen == {2, 3}  # both candidates drawn over 20 draws, never a token outside (1, 5)


def test_clip_cov_never_draws_a_token_ppo_clips():
    # Token 2 has covariance in (1, 5) but its ratio e^1 > 1.2 with A > 0: PPO clips it; token 3 is the
    # only candidate left.
    log_prob, old = [[0.0, 0.0, 2.0, 0.0]], [[0.0, 0.0, 1.0, -0.1]]
    adv, mask = [[3.0, 3.0, 3.0, -1.0]], [[1.0, 1.0, 1.0, 1.0]]
    method = ClipCov(ClipCovConfig(fraction=0.25))
    for _ in range(10):
        mb = micro_batch(log_prob, old, adv, mask)
        loss, _ = method.loss(mb)
        (grad,) = torch.autograd.grad(loss, mb.log_prob)
        assert grad[0, 3] == 0 and method.metrics()["clip-cov/candidates"] == 1.0


def test_kl_cov_penalises_the_top_covariance_tokens_without_clipping():
    log_prob = [[0.0, 0.0, 2.0, 0.0]]
    old = [[0.5, 0.0, 1.0, -2.0]]
    adv = [[3.0, 3.0, 3.0, -1.0]]
    mask = [[1.0, 1.0, 1.0, 1.0]]
    method = KLCov(KLCovConfig(fraction=0.5, coef=2.0))  # the top 2 of 4 by covariance: tokens 2 and 3
    mb = micro_batch(log_prob, old, adv, mask)
    loss, _ = method.loss(mb)
    (grad,) = torch.autograd.grad(loss, mb.log_prob)
    lp, lp_old, a = mb.log_prob.detach(), mb.old_log_prob, mb.advantages
    ratio = torch.exp(lp - lp_old)
    expected = -a * ratio + torch.tensor([[0.0, 0.0, 1.0, 1.0]]) * 2.0 * torch.sign(lp - lp_old)
    torch.testing.assert_close(grad, expected / 4)  # token mean over 4 tokens, ratio never clipped
    assert method.metrics()["kl-cov/selected"] == 2.0


def test_kl_cov_on_policy_is_plain_grpo():
    """With one optimizer step per rollout, lp equals lp_old: the penalty |lp - lp_old| is 0 with a zero
    gradient, so every token's gradient is GRPO's (docs/reproduction.md, f-baselines)."""
    method = KLCov(KLCovConfig(fraction=1.0, coef=5.0))  # every token penalised
    mb = micro_batch(LP, LP, ADV, MASK)
    loss, _ = method.loss(mb)
    torch.testing.assert_close(torch.autograd.grad(loss, mb.log_prob)[0], ppo_gradient(micro_batch(LP, LP, ADV, MASK)))
    assert method.metrics()["kl-cov/selected"] == 5.0


@pytest.mark.parametrize(
    ("method", "expected"),
    [(NSR(NSRConfig()), [0.0, -1.0, 0.0, -1.0]), (WReinforce(WReinforceConfig()), [0.1, -1.0, 0.1, -1.0])],
)
def test_negative_sample_methods_use_raw_advantages(method, expected):
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert method.advantages(rewards, 2, "grpo").tolist() == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"entropic"}))
def test_only_entropic_runs_as_advantage_weights_in_the_plug_ins(name):
    config = METHODS[name].config_class(name=name)
    with pytest.raises(ValueError, match="name: "):
        config.check_advantage_weights()
