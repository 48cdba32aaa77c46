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
from entropic_rl.core import reference_aggregate
from entropic_rl.methods import EntroPICReference, EntroPICReferenceConfig, LossSettings, MicroBatch
from test_losses import rollout


def masked_mean(values, mask):
    """verl's ``verl_F.masked_mean``."""
    return (values * mask).sum() / (mask.sum() + 1e-8)


def authors_agg_loss(loss_mat, loss_mask, mode):
    """verl 0.6's agg_loss, as the authors' fork calls it: the sequence means over the rows with at
    least one valid token."""
    if mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    seq_losses = torch.sum(loss_mat * loss_mask, dim=-1)
    if mode == "seq-mean-token-sum-norm":
        return torch.sum(seq_losses) / loss_mask.shape[-1]
    tokens = torch.sum(loss_mask, dim=-1)
    if mode == "seq-mean-token-mean":
        seq_losses = seq_losses / (tokens + 1e-8)
    return masked_mean(seq_losses, (tokens > 0).float())


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


def with_empty_rows(seed):
    """A rollout where one row has no valid token and others no confident token."""
    log_prob, old, adv, mask = rollout(seed, batch=8, length=6, on_policy=False)
    mask[1] = 0.0
    with torch.no_grad():
        log_prob[2:4] = math.log(0.5)  # below every threshold used here: rows without confident tokens
    entropy = torch.rand(8, 6, generator=torch.Generator().manual_seed(seed)) * 2
    return log_prob, old, adv, mask, entropy


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("seed", [0, 1])
def test_losses_gradients_and_alphas_equal_the_authors(mode, seed):
    target, kp, ki, threshold = 0.6, 1.0, 0.5, 0.95
    log_prob, old, adv, mask, entropy = with_empty_rows(seed)
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


def test_a_micro_batch_with_an_empty_row_hand_computed():
    # Three rows, seq-mean-token-mean, on-policy (r = 1), alpha 0.5, threshold 0.5. Row 1 has no valid
    # token, row 0 no confident token: the authors' means leave out the rows without tokens.
    # base: row means of -A r: row 0 -1 (A = +1), row 2 +2 (A = -2) -> (-1 + 2) / 2 = 0.5
    # adjustment: -r |A| over confident tokens (row 2's last two) -> row 2 only: -2
    # loss = 0.5 + 0.5 * -2 = -0.5 (counting every row: 1/3 + 0.5 * -2/3 = 0)
    p = torch.tensor([[0.3, 0.2, 0.9], [0.9, 0.9, 0.9], [0.3, 0.8, 0.9]])
    log_prob = p.log().requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([[1.0], [3.0], [-2.0]]).expand(3, 3)
    loss, metrics = policy_loss(
        log_prob,
        log_prob.detach(),
        adv,
        mask,
        agg="seq-mean-token-mean",
        alpha=0.5,
        threshold=0.5,
        normalize="reference",
    )
    assert loss.item() == pytest.approx(-0.5)
    # d/d log pi = -A r times the token's weight (row 0: 1/(2 tokens * 2 rows), row 2: 1/(3 * 2)), plus
    # alpha * -|A| r / (2 confident tokens * 1 row) on row 2's confident tokens
    (grad,) = torch.autograd.grad(loss, log_prob)
    expected = torch.tensor([[-0.25, -0.25, 0.0], [0.0, 0.0, 0.0], [1 / 3, 1 / 3 - 0.5, 1 / 3 - 0.5]])
    torch.testing.assert_close(grad, expected)
    assert metrics["confident_frac"].item() == pytest.approx(2 / 5)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", 8 / 3),
        ("seq-mean-token-mean", 3.0),
        ("seq-mean-token-sum", 4.0),
        ("seq-mean-token-sum-norm", 2.0),
    ],
)
def test_reference_aggregate_leaves_out_rows_without_tokens(mode, expected):
    # row 0: 1, 3; row 1: empty; row 2: 4. Means over rows 0 and 2; sum-norm divides the sum (8) by L = 4.
    values = torch.tensor([[1.0, 3.0, 9.0], [5.0, 5.0, 5.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert reference_aggregate(values, mask, mode, max_len=4).item() == pytest.approx(expected)
    assert authors_agg_loss(values, mask, mode).item() * (3 / 4 if mode == "seq-mean-token-sum-norm" else 1) == (
        pytest.approx(expected)
    )
    assert reference_aggregate(values, torch.zeros_like(mask), mode).item() == 0.0


@pytest.mark.parametrize("mode", ["seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_the_reference_flavour_in_the_trainer_equals_the_authors_update_on_its_micro_batches(
    tmp_path, monkeypatch, mode
):
    # The trainer's micro-batches (sorted by length, trimmed to their longest response) are the authors',
    # padded to the configured response length as their tensors are; alpha and loss equal theirs.
    from entropic_rl.methods import EntroPICReference as Reference
    from test_train import run

    seen, real_loss = [], Reference.loss

    def recording(self, micro):
        loss, metrics = real_loss(self, micro)
        seen.append((micro, loss.detach(), self.metrics()["entropic/alpha"]))
        return loss, metrics

    monkeypatch.setattr(Reference, "loss", recording)
    settings = ["method.target_entropy=0.5", "method.kp=2", "method.ki=0.5", "method.threshold=0.9"]
    _, config = run(tmp_path, "train.steps=2", "method.name=entropic-reference", f"train.agg={mode}", *settings)
    width, rows = config.rollout.max_new_tokens, config.rollout.prompts_per_step * config.rollout.group_size
    state, without_confident = {"integral": 0.0}, 0
    for micro, loss, alpha in seen:
        pad = [torch.nn.functional.pad(x.detach(), (0, width - x.shape[1])) for x in (micro.log_prob, micro.mask)]
        log_prob, mask = pad[0].requires_grad_(), pad[1]
        old, adv, entropy = (
            torch.nn.functional.pad(x, (0, width - x.shape[1]))
            for x in (micro.old_log_prob, micro.advantages, micro.entropy.detach())
        )
        theirs, their_alpha = authors_micro_batch(
            state, log_prob, old, adv, mask, entropy, mode, rows, 0.5, 2.0, 0.5, 0.9
        )
        assert alpha == pytest.approx(their_alpha, abs=1e-6)
        torch.testing.assert_close(loss, theirs.detach(), rtol=1e-5, atol=1e-6)
        without_confident += int((((log_prob > math.log(0.9)) & (mask > 0)).sum(-1) == 0).sum())
    assert len(seen) == 6 and micro.log_prob.shape[1] < width  # 3 micro-batches a step, trimmed
    assert without_confident > 0  # rows the authors' means leave out of the adjustment
