"""PPO-clip policy loss with dual clip (ALGORITHMS.md §1) and the EntroPIC adjustment (§2).

All tensors are ``(batch, response_length)``; ``response_mask`` is 1 on valid response tokens.
"""

from __future__ import annotations

import math

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
NORMALIZE_MODES = ("reference", "exact")


def agg_denominator(mask: torch.Tensor, mode: str = "token-mean", max_len: int | None = None) -> torch.Tensor:
    """The normaliser of ``aggregate`` for a whole (mini-)batch with this mask.

    token-mean: number of valid tokens; seq-mean-token-mean and seq-mean-token-sum: number of
    sequences with at least one valid token; seq-mean-token-sum-norm: that number times
    ``max_len`` (default: the mask's length; pass the configured maximum response length so
    the normaliser is the same for every micro-batch, as Dr.GRPO intends).

    Compute it once on the full mini-batch and pass it as ``denominator`` to every
    micro-batch's ``aggregate``/``policy_loss``: the summed micro-batch gradients then equal the
    gradient of one big batch.
    """
    _check_mode(mode)
    mask = mask.float()
    if mode == "token-mean":
        return mask.sum().clamp(min=1.0)
    n_seq = (mask.sum(-1) > 0).sum().float().clamp(min=1.0)
    if mode == "seq-mean-token-sum-norm":
        return n_seq * (mask.shape[-1] if max_len is None else max_len)
    return n_seq


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    denominator: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Aggregate per-token ``values`` over ``mask`` to an fp32 scalar, the four verl modes.

    ``aggregate = numerator / denominator`` where the numerator is ``sum(x m)``, except for
    seq-mean-token-mean where each sequence's sum is first divided by its own token count.
    ``denominator`` defaults to ``agg_denominator(mask, mode)``. Masked-out entries are
    ignored even if they are nan or inf.
    """
    if denominator is None:
        denominator = agg_denominator(mask, mode)
    return (torch.where(mask > 0, values.float(), 0.0) * _token_weights(mask, mode, denominator)).sum()


def _token_weights(mask: torch.Tensor, mode: str, denominator: torch.Tensor | float) -> torch.Tensor:
    """d aggregate / d x_t: the weight each token's value gets in the aggregate."""
    _check_mode(mode)
    mask = mask.float()
    if mode == "seq-mean-token-mean":
        return mask / (mask.sum(-1, keepdim=True).clamp(min=1.0) * denominator)
    return mask / denominator


def reference_aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", max_len: int | None = None
) -> torch.Tensor:
    """The aggregation of the authors' code (verl 0.6's ``agg_loss``), used by ``normalize="reference"``.

    It differs from ``aggregate`` (ALGORITHMS.md §1) over the same mask in one mode:
    ``seq-mean-token-sum-norm`` divides the sum by the length L alone (``max_len``, default the
    mask's width), not by sequences times L. In the other modes their denominators (tokens, or the
    rows with at least one valid token, each plus 1e-8) equal ``agg_denominator``'s (clamped to at
    least 1) in float32 for any count from 1 up, and an empty mask gives 0 in both.
    """
    return (torch.where(mask > 0, values.float(), 0.0) * _reference_token_weights(mask, mode, max_len)).sum()


def _reference_token_weights(mask: torch.Tensor, mode: str, max_len: int | None) -> torch.Tensor:
    """d reference_aggregate / d x_t."""
    if mode == "seq-mean-token-sum-norm":
        return mask.float() / (mask.shape[-1] if max_len is None else max_len)
    return _token_weights(mask, mode, agg_denominator(mask, mode))


def confident_mask(log_prob: torch.Tensor, response_mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """``C = m * 1[pi > threshold]``, pi the current policy (detached); ``threshold=0``: every valid token."""
    log_threshold = math.log(threshold) if threshold > 0 else -math.inf
    return response_mask.float() * (log_prob.detach() > log_threshold).float()


def _reference_confident_mask(log_prob: torch.Tensor, response_mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """``confident_mask`` as the authors compute it: against the float32 ``log(threshold)``, which is
    below the exact value (for 0.95, tokens with pi in (0.94999999, 0.95] are confident here too)."""
    log_threshold = torch.log(torch.tensor(threshold, dtype=torch.float32))
    return response_mask.float() * (log_prob.detach() > log_threshold.to(log_prob.device)).float()


def entropic_weights(advantages: torch.Tensor, confident: torch.Tensor, alpha: float) -> torch.Tensor:
    """The per-token weights ``1 + alpha * sign(A) * C`` of the exact EntroPIC loss (detached), C
    from ``confident_mask``.

    PPO-clip with dual clip is positively homogeneous in the advantage (``pg(wA) = w pg(A)`` for
    ``w >= 0``), and with ``|alpha| <= 1`` every weight is in [0, 2], so a framework's own loss with
    the advantages multiplied by these weights IS ``policy_loss(..., normalize="exact")``: this is
    how the TRL and verl integrations apply EntroPIC without copying their loss code.
    """
    return 1.0 + alpha * torch.sign(advantages).detach() * confident


def token_covariance(advantages: torch.Tensor, log_prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Cov_t = (A_t - mean A)(lp_t - mean lp)``, the means over the valid tokens (detached; 0 on
    padding): the per-token covariance Clip-Cov and KL-Cov select tokens by (arXiv 2505.22617)."""
    mask = mask.float()
    count = mask.sum().clamp(min=1.0)
    advantages, log_prob = advantages.detach().float(), log_prob.detach().float()
    mean_advantage = torch.where(mask > 0, advantages, 0.0).sum() / count
    mean_log_prob = torch.where(mask > 0, log_prob, 0.0).sum() / count
    return torch.where(mask > 0, (advantages - mean_advantage) * (log_prob - mean_log_prob), 0.0)


def policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    alpha: float = 0.0,
    threshold: float = 0.95,
    normalize: str = "exact",
    denominator: torch.Tensor | float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip with dual clip, plus the EntroPIC adjustment on confident tokens.

    With ``alpha = 0`` this is the plain GRPO/PPO loss. Confident tokens are
    ``C = m * 1[pi > threshold]`` (pi the current policy, detached; ``threshold=0`` makes every
    valid token confident). On them the gradient weight of a positive-advantage token becomes
    ``1 + alpha * kappa`` and of a negative one ``1 - alpha * kappa``:

    - ``normalize="reference"`` (the authors' code): ``L = agg(pg, m) + alpha * agg(-r |A|, C)``,
      the adjustment averaged over confident tokens with the unclipped ratio r, so kappa =
      sum(m) / sum(C) for token-mean. Where PPO clips a token, the adjustment is its only
      gradient. As in their code, ``agg`` is ``reference_aggregate`` over this call's tensors and
      C compares with the float32 ``log(threshold)``.
    - ``normalize="exact"``: ``L = agg((1 + alpha * sign(A) * C) * pg, m)`` - on an unclipped
      token the same adjustment (``alpha * sign(A) * pg = -alpha * r |A|``), with the base loss's
      denominator and its clipping, so the weights are exactly ``1 +- alpha`` times PPO's own
      gradient everywhere, and zero where PPO clips.

    ``denominator`` (exact only) is the mini-batch normaliser of the base loss (see
    ``agg_denominator``) for gradient accumulation; with it the exact loss of summed micro-batches
    equals one big batch. The reference loss is normalised within each call, as in the authors'
    code: scale a micro-batch's loss by its share of the mini-batch. ``max_len`` is the length L of
    seq-mean-token-sum-norm (default: the mask's width).

    Returns ``(loss, metrics)``; metrics are detached scalar tensors: ``pg_clipfrac`` (ratio
    clip active), ``pg_clipfrac_lower`` (dual clip active), ``ppo_kl`` (mean of lp_old - lp),
    ``confident_frac`` (sum(C) / sum(m)), ``weight_pos`` and ``weight_neg`` (the mean
    gradient weight relative to PPO of confident positive / negative tokens, on unclipped
    tokens; 1 when there are none).
    """
    _check_shapes(log_prob, old_log_prob=old_log_prob, advantages=advantages, response_mask=response_mask)
    _check_options(clip_low, clip_high, clip_c, agg, alpha, threshold, normalize)
    mask = response_mask.float()

    # Clamp the log-ratio before exp: one token whose probability moved by e^20 must not give inf.
    log_ratio = torch.clamp(log_prob - old_log_prob, -20.0, 20.0)
    ratio = torch.exp(log_ratio)

    pg_unclipped = -advantages * ratio
    pg_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(pg_unclipped, pg_clipped)
    pg_dual = torch.minimum(pg, -advantages * clip_c)  # bounds the loss of A < 0 tokens at -A c
    pg_losses = torch.where(advantages < 0, pg_dual, pg)

    sign = torch.sign(advantages).detach()
    if normalize == "exact":
        if denominator is None:
            denominator = agg_denominator(mask, agg, max_len)
        confident = confident_mask(log_prob, mask, threshold)
        loss = aggregate(entropic_weights(advantages, confident, alpha) * pg_losses, mask, agg, denominator)
        kappa = confident  # relative weight of the adjustment: exactly 1 on confident tokens
    else:
        if denominator is not None:
            raise ValueError(
                "denominator: the reference loss is normalised within each call, as in the authors' code; "
                "scale each micro-batch's loss by its share of the mini-batch instead"
            )
        confident = _reference_confident_mask(log_prob, mask, threshold)
        loss = reference_aggregate(pg_losses, mask, agg, max_len)
        if alpha != 0.0:
            loss = loss + alpha * reference_aggregate(-ratio * advantages.abs(), confident, agg, max_len)
        adjustment_weights = _reference_token_weights(confident, agg, max_len)  # relative to the base's
        kappa = torch.where(mask > 0, adjustment_weights / _reference_token_weights(mask, agg, max_len), 0.0)

    with torch.no_grad():
        weight = 1.0 + alpha * sign * kappa
        metrics = {
            "pg_clipfrac": _masked_mean((pg_clipped > pg_unclipped).float(), mask),
            "pg_clipfrac_lower": _masked_mean(((pg > pg_dual) & (advantages < 0)).float(), mask),
            "ppo_kl": _masked_mean(-log_ratio, mask),
            "confident_frac": confident.sum() / mask.sum().clamp(min=1.0),
            "weight_pos": _mean_or_one(weight, confident * (advantages > 0).float()),
            "weight_neg": _mean_or_one(weight, confident * (advantages < 0).float()),
        }
    return loss, {k: v.detach() for k, v in metrics.items()}


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, values, 0.0).sum() / mask.sum().clamp(min=1.0)


def _mean_or_one(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.sum() > 0, _masked_mean(values, mask), 1.0)


def _check_mode(mode: str) -> None:
    if mode not in AGG_MODES:
        raise ValueError(f"agg must be one of {AGG_MODES}, got {mode!r}")


def _check_shapes(log_prob: torch.Tensor, **others: torch.Tensor) -> None:
    if log_prob.dim() != 2:
        raise ValueError(f"log_prob must be (batch, response_length), got shape {tuple(log_prob.shape)}")
    for name, tensor in others.items():
        if tensor.shape != log_prob.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} must equal log_prob shape {tuple(log_prob.shape)}")


def _check_options(clip_low, clip_high, clip_c, agg, alpha, threshold, normalize) -> None:
    if not 0.0 <= clip_low <= 1.0:
        raise ValueError(f"clip_low must be in [0, 1], got {clip_low}")
    if not clip_high >= 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if not clip_c > 1.0:
        raise ValueError(f"clip_c (dual-clip bound) must be > 1, got {clip_c}")
    _check_mode(agg)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
