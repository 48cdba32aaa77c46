"""The entropic-reference flavour against the authors' algorithm, transcribed here from their published
code: the PI update in their dp_actor (alpha per micro-batch from the micro-batch's entropy, integral
after alpha, weighted by the micro-batch's share), their compute_policy_loss_entropic (the adjustment
alpha * agg(-r |A|, C) with C from the float32 log(threshold)), verl 0.6's agg_loss and its loss scale
1 / gradient-accumulation steps. Same tensors in, same losses, gradients and alphas out."""

import math

import numpy as np
import pytest
import torch

from entropic_rl import AGG_MODES, agg_denominator, policy_loss
from entropic_rl.methods import EntroPICReference, EntroPICReferenceConfig, LossSettings, MicroBatch
from test_losses import rollout


def authors_agg_loss(loss_mat, loss_mask, mode):
    """verl 0.6's agg_loss, as the authors' fork calls it."""
    if mode == "token-mean":
        return (loss_mat * loss_mask).sum() / (loss_mask.sum() + 1e-8)
    if mode == "seq-mean-token-sum":
        return torch.sum(loss_mat * loss_mask, dim=-1).mean()
    if mode == "seq-mean-token-mean":
        return (torch.sum(loss_mat * loss_mask, dim=-1) / torch.sum(loss_mask, dim=-1)).mean()
    return torch.sum(loss_mat * loss_mask) / loss_mask.shape[-1]  # seq-mean-token-sum-norm


def authors_micro_batch(state, log_prob, old, adv, mask, entropy, mode, mini_batch_rows, target, kp, ki, threshold):
    """One micro-batch of the authors' update_policy: alpha, then the loss they call backward on."""
    error = authors_agg_loss(entropy, mask, mode).detach().item() - target
    alpha = float(np.clip(state["integral"] * ki + error * kp, -1.0, 1.0))
    state["integral"] += error * mask.shape[0] / mini_batch_rows
    ratio = torch.exp(torch.clamp(log_prob - old, -20.0, 20.0))
    clipped = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2))
    pg_losses = torch.where(adv < 0, torch.min(-adv * 3.0, clipped), clipped)
    prob_mask = mask * (log_prob > torch.log(torch.tensor(threshold)))
    pg_loss = authors_agg_loss(pg_losses, mask, mode) + alpha * authors_agg_loss(-ratio * adv.abs(), prob_mask, mode)
    return pg_loss * (mask.shape[0] / mini_batch_rows), alpha


def confident_in_every_row(seed):
    log_prob, old, adv, mask = rollout(seed, batch=8, length=6, on_policy=False)
    with torch.no_grad():
        log_prob[:, 0] = math.log(0.99)  # the authors' seq-mean-token-mean is nan for a row without any
    entropy = torch.rand(8, 6, generator=torch.Generator().manual_seed(seed)) * 2
    return log_prob, old, adv, mask, entropy


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_losses_gradients_and_alphas_equal_the_authors(mode, seed):
    target, kp, ki, threshold = 0.6, 1.0, 0.5, 0.95
    log_prob, old, adv, mask, entropy = confident_in_every_row(seed)
    method = EntroPICReference(
        EntroPICReferenceConfig(target_entropy=target, kp=kp, ki=ki, threshold=threshold), LossSettings(agg=mode)
    )
    state = {"integral": 0.0}
    for _ in range(2):  # two mini-batches: the integral carries over
        for rows in (slice(0, 4), slice(4, 8)):  # two micro-batches each
            lp = log_prob.detach()[rows].clone().requires_grad_()
            micro = MicroBatch(lp, entropy[rows], old[rows], adv[rows], mask[rows], agg_denominator(mask, mode), 0.5)
            ours, _ = method.loss(micro)
            theirs, alpha = authors_micro_batch(
                state, lp, old[rows], adv[rows], mask[rows], entropy[rows], mode, 8, target, kp, ki, threshold
            )
            assert method.metrics()["entropic/alpha"] == pytest.approx(alpha, abs=1e-6)
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
            grads = [torch.autograd.grad(loss, lp, retain_graph=True)[0] for loss in (ours, theirs)]
            torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-7)
    assert method.controller.integral == pytest.approx(state["integral"], abs=1e-6)


def test_confident_tokens_compare_with_the_float32_threshold():
    # log(0.95) rounded to float32 is below the exact value: the token just above it is confident for
    # the authors (and the reference flavour), not for the exact flavour.
    just_above = torch.nextafter(torch.log(torch.tensor(0.95)), torch.tensor(0.0))
    assert just_above.item() < math.log(0.95)
    log_prob = just_above.reshape(1, 1).clone().requires_grad_()
    adv, mask = torch.ones(1, 1), torch.ones(1, 1)
    _, reference = policy_loss(log_prob, log_prob.detach(), adv, mask, alpha=0.5, normalize="reference")
    _, exact = policy_loss(log_prob, log_prob.detach(), adv, mask, alpha=0.5, normalize="exact")
    assert reference["confident_frac"].item() == 1.0
    assert exact["confident_frac"].item() == 0.0
