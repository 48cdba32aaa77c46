"""Sampled-token log-probabilities and full-vocabulary entropy (ALGORITHMS.md, notation).

    log p_t = log_softmax(logits_t / T),   lp_t = log p_t[y_t],   H_t = -sum_v p_t,v log p_t,v

(the same H_t as ALGORITHMS.md's logsumexp(z) - sum_v softmax(z)_v z_v, written without the
cancellation between two large terms; entries with p = 0, such as -inf logits from vocabulary
masking, contribute 0).

A naive implementation materialises the fp32 log-softmax of every token at once:
4,096 tokens x 151,936 vocabulary entries is 2.5 GB per copy, and autograd keeps several
copies. Here the tokens are processed in chunks, in the forward pass and again in the
backward pass (which recomputes the softmax of a chunk instead of storing it), so at most a
chunk's worth of fp32 work memory is alive at any time. Non-contiguous logits (such as
``logits[:, :-1]``) are read through views, never copied whole. The only full-size tensor
created is the gradient of the logits, which autograd needs in any case.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint

# Elements (tokens x vocabulary) per chunk when chunk_size is None: 2**22 fp32 = 16 MiB per
# buffer, 27 tokens of a 151,936-entry vocabulary. benchmarks/entropy_memory.py (CPU): buffers
# above glibc's 32 MiB mmap ceiling are mapped afresh on every allocation, and 64-token chunks
# run 2-3x slower than 8- or 27-token ones (docs/benchmarks.md).
DEFAULT_CHUNK_ELEMENTS = 2**22


def token_logprobs_and_entropy(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each sampled token and the entropy of its full distribution.

    Args:
        logits: ``(..., V)`` raw logits, any floating dtype; work is done in fp32.
        tokens: ``(...)`` sampled token ids, same leading shape as ``logits``. Negative ids (such
            as the -100 ignore index on padding) are read as token 0: mask those positions.
        temperature: the sampling temperature T; logits are divided by it.
        chunk_size: tokens per chunk; ``None`` picks one from the vocabulary size.

    Returns:
        ``(log_probs, entropy)``, both fp32 with the shape of ``tokens``. Both are
        differentiable with respect to ``logits``.
    """
    if logits.dim() < 1 or logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"tokens shape {tuple(tokens.shape)} must equal logits shape without the "
            f"vocabulary dimension, got logits {tuple(logits.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_CHUNK_ELEMENTS // max(1, logits.shape[-1]))
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    return _ChunkedLogProbEntropy.apply(logits, tokens, float(temperature), int(chunk_size))


def _row_blocks(x: torch.Tensor) -> list[torch.Tensor]:
    """Views of ``x`` as 2-D (rows, V) blocks covering its leading dimensions in order.

    One block when ``x`` can be viewed as (N, V); otherwise split along the first dimension,
    so a slice like ``logits[:, :-1]`` is read as B views instead of being copied.
    """
    try:
        return [x.view(-1, x.shape[-1])]
    except RuntimeError:
        return [block for sub in x.unbind(0) for block in _row_blocks(sub)]


def _chunks(x: torch.Tensor, chunk_size: int):
    """(first row, 2-D view) chunks of at most ``chunk_size`` rows, in row order."""
    offset = 0
    for block in _row_blocks(x):
        for start in range(0, block.shape[0], chunk_size):
            yield offset + start, block[start : start + chunk_size]
        offset += block.shape[0]


def _log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def _entropy(probs: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    # p log p -> 0 as p -> 0: a -inf logit must not turn 0 * -inf into nan
    return -torch.where(probs > 0, probs * log_p, 0.0).sum(-1)


class _ChunkedLogProbEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, tokens, temperature, chunk_size):
        flat_tokens = tokens.reshape(-1).long().clamp(min=0)
        log_probs = torch.empty(flat_tokens.shape, dtype=torch.float32, device=logits.device)
        entropy = torch.empty_like(log_probs)
        for start, chunk in _chunks(logits, chunk_size):
            rows = slice(start, start + chunk.shape[0])
            log_p = _log_softmax(chunk, temperature)
            log_probs[rows] = log_p.gather(-1, flat_tokens[rows].unsqueeze(-1)).squeeze(-1)
            entropy[rows] = _entropy(log_p.exp(), log_p)
        ctx.save_for_backward(logits, flat_tokens)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return log_probs.view(tokens.shape), entropy.view(tokens.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_log_probs, grad_entropy):
        logits, flat_tokens = ctx.saved_tensors
        temperature = ctx.temperature
        grad_lp = grad_log_probs.reshape(-1, 1).float()
        grad_h = grad_entropy.reshape(-1, 1).float()
        grad_logits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        flat_grad = grad_logits.view(-1, logits.shape[-1])
        for start, chunk in _chunks(logits, ctx.chunk_size):
            rows = slice(start, start + chunk.shape[0])
            log_p = _log_softmax(chunk, temperature)
            probs = log_p.exp()
            entropy = _entropy(probs, log_p).unsqueeze(-1)
            # d lp_y / dz_j = 1[j = y] - p_j   and   dH / dz_j = -p_j (log p_j + H)  (0 where p_j = 0)
            surprise = torch.where(probs > 0, log_p + entropy, 0.0)
            grad_z = -probs * (grad_lp[rows] + grad_h[rows] * surprise)
            grad_z.scatter_add_(-1, flat_tokens[rows].unsqueeze(-1), grad_lp[rows])
            flat_grad[rows] = grad_z / temperature
        return grad_logits, None, None, None


def clamped_entropy(
    logits: torch.Tensor, fraction: float, temperature: float = 1.0, chunk_size: int | None = None
) -> torch.Tensor:
    """AEnt's clamped entropy (arXiv 2509.03493, ALGORITHMS.md §3): the entropy of the softmax of
    ``logits / T`` renormalised over the vocabulary without its ``floor(fraction * V)`` lowest
    logits.

    The removed set is chosen with a threshold on the accelerator (``kthvalue``: every logit below
    the (k+1)-th lowest is removed), not a top-k on the CPU; logits tied at the boundary are kept, so
    with ties fewer than k go (all-equal logits keep the whole vocabulary). Differentiable with
    respect to ``logits`` (the threshold is not). Tokens are
    processed in chunks whose softmax is recomputed in the backward pass, so the memory of the
    (tokens x vocabulary) work stays at one chunk's.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    removed = int(fraction * logits.shape[-1])
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_CHUNK_ELEMENTS // max(1, logits.shape[-1]))

    def chunk_entropy(chunk: torch.Tensor) -> torch.Tensor:
        z = chunk.float() / temperature
        kept = torch.ones_like(z, dtype=torch.bool)
        if removed > 0:
            kept = z.detach() >= z.detach().kthvalue(removed + 1, dim=-1, keepdim=True).values
        log_p = torch.log_softmax(z.masked_fill(~kept, -torch.inf), dim=-1)
        log_p = torch.where(kept, log_p, 0.0)  # no -inf left for the backward pass to multiply by 0
        return -(torch.where(kept, log_p.exp(), 0.0) * log_p).sum(-1)

    flat = logits.reshape(-1, logits.shape[-1])
    parts = [
        torch.utils.checkpoint.checkpoint(chunk_entropy, flat[start : start + chunk_size], use_reentrant=False)
        for start in range(0, flat.shape[0], chunk_size)
    ]
    return torch.cat(parts).view(logits.shape[:-1])
