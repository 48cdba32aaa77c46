"""Peak memory and time of chunked vs naive sampled-token log-prob + entropy.

Baseline ("naive"): ``log_softmax`` of the whole (tokens x vocabulary) fp32 logits at once,
then the gathered log-probs and ``-(p * log p).sum(-1)``, with autograd for the backward pass.
Candidate: ``entropic_rl.token_logprobs_and_entropy`` (token chunks, backward recomputes).

Each measurement runs in a fresh subprocess. Peak memory is the process's peak resident set
size minus its resident size after the inputs were allocated, so it is the extra memory the
computation needs. Time is the best of ``--repeats`` runs. Both are reported for the forward
pass alone (computing old log-probs and the measured entropy, under ``torch.no_grad``) and for
forward + backward (the training step), and printed as ratios chunked / naive.

    python benchmarks/entropy_memory.py                 # 4,096 tokens x 151,936 vocabulary
    python benchmarks/entropy_memory.py --tokens 512    # a quicker check
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

TEMPERATURE = 0.6


def naive(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = torch.log_softmax(logits.float() / TEMPERATURE, dim=-1)
    log_probs = log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_probs, entropy


def chunked(logits: torch.Tensor, tokens: torch.Tensor, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from entropic_rl import token_logprobs_and_entropy

    return token_logprobs_and_entropy(logits, tokens, TEMPERATURE, chunk_size)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(variant: str, mode: str, tokens: int, vocab: int, chunk_size: int | None, repeats: int) -> dict:
    """One measurement in this (fresh) process."""
    torch.manual_seed(0)
    # In place: a temporary copy here would raise the lifetime peak (ru_maxrss) before the baseline.
    logits = torch.empty(tokens, vocab).normal_(std=3.0)
    ids = torch.randint(0, vocab, (tokens,))
    fn = naive if variant == "naive" else (lambda x, t: chunked(x, t, chunk_size))
    if mode == "forward+backward":
        logits.requires_grad_()
        logits.grad = torch.zeros_like(logits)  # the gradient buffer belongs to the inputs, for both variants
    warm = logits.detach()[:2].clone().requires_grad_()  # first calls initialise thread pools and imports
    lp, h = fn(warm, ids[:2])
    (lp.sum() + h.sum()).backward()
    baseline = rss_bytes()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if mode == "forward":
            with torch.no_grad():
                log_probs, entropy = fn(logits, ids)
        else:
            log_probs, entropy = fn(logits, ids)
            (log_probs.sum() + entropy.sum()).backward()
        times.append(time.perf_counter() - start)
        del log_probs, entropy
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"seconds": min(times), "peak_extra_bytes": max(0, peak - baseline)}


def measure(variant: str, mode: str, args: argparse.Namespace, chunk_size: int | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        mode,
        "--tokens",
        str(args.tokens),
        "--vocab",
        str(args.vocab),
        "--repeats",
        str(args.repeats),
    ]
    if chunk_size is not None:
        cmd += ["--chunk-size", str(chunk_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--chunk-sizes",
        default="default",
        help="comma-separated chunk sizes to compare, 'default' for the library's choice",
    )
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.tokens, args.vocab, args.chunk_size, args.repeats)))
        return

    from entropic_rl.core.entropy import DEFAULT_CHUNK_ELEMENTS

    sizes = [None if s == "default" else int(s) for s in args.chunk_sizes.split(",")]
    print(
        f"{args.tokens} tokens x {args.vocab} vocabulary, fp32 logits ({args.tokens * args.vocab * 4 / 2**30:.2f} "
        f"GiB), T={TEMPERATURE}, torch {torch.__version__}, {torch.get_num_threads()} threads, best of "
        f"{args.repeats}"
    )
    header = (
        f"{'mode':17s} {'chunk':>7s} {'naive s':>8s} {'chunked s':>9s} {'time ratio':>10s} "
        f"{'naive MiB':>10s} {'chunked MiB':>11s} {'memory ratio':>12s}"
    )
    print(header)
    for mode in ("forward", "forward+backward"):
        base = measure("naive", mode, args)
        for size in sizes:
            cand = measure("chunked", mode, args, size)
            label = size if size is not None else max(1, DEFAULT_CHUNK_ELEMENTS // args.vocab)
            print(
                f"{mode:17s} {label:>7} {base['seconds']:8.3f} {cand['seconds']:9.3f} "
                f"{cand['seconds'] / base['seconds']:10.2f} {base['peak_extra_bytes'] / 2**20:10.0f} "
                f"{cand['peak_extra_bytes'] / 2**20:11.0f} "
                f"{cand['peak_extra_bytes'] / max(1, base['peak_extra_bytes']):12.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
