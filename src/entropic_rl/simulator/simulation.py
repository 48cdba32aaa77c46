"""A fast simulator of RL with verifiable rewards, to check the theory of ALGORITHMS.md §2.

The "language model" is a linear-softmax policy over ``n_actions`` tokens. A response has
``n_decision + n_filler`` positions; at position t the logits for prompt c are ``x_c @ W_t``,
with ``x_c`` fixed random prompt features plus a bias and ``W_t`` learned. Parameters are
shared across prompts, so, as in an LLM, an update for one prompt moves the others
(ALGORITHMS.md §5).

- Decision positions decide the reward: 1 if every decision token is the prompt's answer.
- Filler positions do not affect the reward. They start confident (p > 0.95) and occur in
  right and wrong responses alike, as most tokens of an LLM's response do.
- A fraction of prompts are *misconceptions*: at one decision position the answer is the
  policy's second choice. The policy starts confidently wrong there, and a linear policy
  cannot fit every prompt, so accuracy plateaus and groups stay mixed.

Training uses the real components: groups of G samples, GRPO advantages (or the raw +-1
rewards of positive-only / negative-only training), ``token_logprobs_and_entropy``,
``policy_loss`` and ``PIController`` from ``entropic_rl.core``, plain SGD on W. Off-policy
runs split each rollout into several mini-batches (and optionally epochs), each one an
optimizer step, so the importance ratio and clipping are live. The controller updates once
per optimizer step from the current policy's entropy on that mini-batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from entropic_rl.core import PIController, policy_loss, token_logprobs_and_entropy
from entropic_rl.core.losses import NORMALIZE_MODES
from entropic_rl.util.options import option

SAMPLES = ("all", "positive", "negative")
CONTROLS = ("none", "P", "PI", "auto")


@dataclass(frozen=True)
class SimConfig:
    """One simulated training run. Defaults are the plant used in docs/theory.md."""

    n_prompts: int = option(512, "prompts of the task")
    n_features: int = option(16, "random features per prompt")
    n_actions: int = option(8, "vocabulary size")
    n_decision: int = option(3, "positions that decide the reward")
    n_filler: int = option(9, "positions that do not (confident, in right and wrong answers alike)")
    misconception_frac: float = option(0.3, "prompts whose policy starts confidently wrong at one position")
    prompt_specific: bool = option(False, "add a one-hot prompt feature: per-prompt parameters besides shared ones")
    warm_scale: float = option(4.0, "confidence of the warm-started policy at decision positions")
    filler_logit: float = option(7.0, "bias of the filler positions' default token")
    prompts_per_rollout: int = option(64, "prompts per rollout")
    group_size: int = option(8, "samples per prompt")
    steps: int = option(1000, "optimizer steps")
    mini_batches: int = option(1, "optimizer steps per rollout; > 1 or epochs > 1 is off-policy")
    epochs: int = option(1, "passes over each rollout")
    lr: float = option(60.0, "SGD learning rate")
    clip: float = option(0.2, "PPO clip range")
    samples: str = option("all", "all: GRPO; positive: A=+1 on right only; negative: A=-1 on wrong only")
    confident_only: bool = option(False, "train only on confident tokens (pi > threshold)")
    control: str = option("none", "none | P | PI | auto (PI with gains auto: kp, ki unused)")
    target_entropy: float = option(0.16, "target entropy (nats)")
    kp: float = option(10.0, "proportional gain")
    ki: float = option(0.1, "integral gain (PI only)")
    anti_windup: bool = option(True, "conditional integration while alpha is saturated")
    threshold: float = option(0.95, "confident tokens: probability above this")
    normalize: str = option("exact", "exact | reference")
    seed: int = option(0, "seed of the task and the run")

    def __post_init__(self) -> None:
        if self.samples not in SAMPLES:
            raise ValueError(f"samples must be one of {SAMPLES}, got {self.samples!r}")
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")
        for name in ("n_prompts", "n_features", "n_decision", "prompts_per_rollout", "steps", "mini_batches", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_filler < 0:
            raise ValueError(f"n_filler must be >= 0, got {self.n_filler}")
        for name in ("n_actions", "group_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.mini_batches > self.prompts_per_rollout:
            raise ValueError("mini_batches must be <= prompts_per_rollout")
        if not 0.0 <= self.misconception_frac <= 1.0:
            raise ValueError(f"misconception_frac must be in [0, 1], got {self.misconception_frac}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")

    @property
    def off_policy(self) -> bool:
        return self.mini_batches > 1 or self.epochs > 1


class Task:
    """Prompt features, answers and the warm-started policy parameters for one seed."""

    def __init__(self, cfg: SimConfig, gen: torch.Generator) -> None:
        n, d, k = cfg.n_prompts, cfg.n_features, cfg.n_actions
        features = [torch.randn(n, d, generator=gen) / math.sqrt(d), torch.ones(n, 1)]
        if cfg.prompt_specific:
            features.append(torch.eye(n))
        self.features = torch.cat(features, dim=1)
        width = self.features.shape[1]

        # The warm-started policy prefers argmax of a random linear "teacher"; the answer is
        # that preference, except at one position of each misconception prompt.
        teacher = torch.randn(cfg.n_decision, width, k, generator=gen)
        teacher = teacher / teacher.std()
        ranked = torch.einsum("pd,tdk->ptk", self.features, teacher).topk(2, dim=-1).indices
        self.answer = ranked[..., 0].clone()
        misconceived = (torch.rand(n, generator=gen) < cfg.misconception_frac).nonzero().squeeze(-1)
        position = torch.randint(0, cfg.n_decision, (n,), generator=gen)[misconceived]
        self.answer[misconceived, position] = ranked[misconceived, position, 1]

        filler = 0.5 * torch.randn(cfg.n_filler, width, k, generator=gen)
        filler[:, d, 0] += cfg.filler_logit  # feature d is the bias
        self.init_weights = torch.cat([cfg.warm_scale * teacher, filler])  # (positions, width, K)

    def logits(self, weights: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nd,ldk->nlk", self.features[prompts], weights)

    def reward(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n_decision = self.answer.shape[1]
        return (tokens[:, :n_decision] == self.answer[prompts]).all(dim=-1).float()


def advantages(rewards: torch.Tensor, group_size: int, samples: str) -> torch.Tensor:
    """Per-response advantages: GRPO, or raw +1 / -1 for positive-only / negative-only training."""
    if samples == "positive":
        return rewards.clone()
    if samples == "negative":
        return rewards - 1.0
    grouped = rewards.view(-1, group_size)
    normalised = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)
    return normalised.reshape(-1)


def simulate(cfg: SimConfig) -> list[dict[str, float]]:
    """Run one configuration; returns one metrics dict per optimizer step."""
    gen = torch.Generator().manual_seed(cfg.seed)
    task = Task(cfg, gen)
    weights = task.init_weights.clone().requires_grad_()
    controller = None
    if cfg.control != "none":
        gains = {"auto": {"gains": "auto"}, "P": {"kp": cfg.kp, "ki": 0.0}, "PI": {"kp": cfg.kp, "ki": cfg.ki}}
        controller = PIController(cfg.target_entropy, anti_windup=cfg.anti_windup, **gains[cfg.control])
    log_threshold = math.log(cfg.threshold) if cfg.threshold > 0 else -math.inf
    length = task.init_weights.shape[0]
    history: list[dict[str, float]] = []
    while len(history) < cfg.steps:
        prompts = torch.randint(0, cfg.n_prompts, (cfg.prompts_per_rollout,), generator=gen)
        prompts = prompts.repeat_interleave(cfg.group_size)
        with torch.no_grad():
            logits = task.logits(weights, prompts)
            probs = torch.softmax(logits, dim=-1).view(-1, cfg.n_actions)
            tokens = torch.multinomial(probs, 1, generator=gen).view(-1, length)
            old_log_prob, _ = token_logprobs_and_entropy(logits, tokens)
        rewards = task.reward(prompts, tokens)
        adv = advantages(rewards, cfg.group_size, cfg.samples).unsqueeze(-1).expand(-1, length)
        groups = torch.arange(cfg.prompts_per_rollout)
        for _ in range(cfg.epochs):
            for mini_batch in torch.tensor_split(groups, cfg.mini_batches):  # exactly mini_batches parts
                if len(history) == cfg.steps:
                    break
                rows = (mini_batch[:, None] * cfg.group_size + torch.arange(cfg.group_size)).reshape(-1)
                log_prob, entropy = token_logprobs_and_entropy(task.logits(weights, prompts[rows]), tokens[rows])
                measured = entropy.mean().item()
                mixed = (adv[rows, 0] != 0).float().mean().item()  # share of sequences whose group's rewards differ
                alpha = controller.update(measured, mixed=mixed) if controller else 0.0
                mask = torch.ones_like(log_prob)
                if cfg.confident_only:
                    mask = (log_prob.detach() > log_threshold).float()
                loss, metrics = policy_loss(
                    log_prob,
                    old_log_prob[rows],
                    adv[rows],
                    mask,
                    clip_low=cfg.clip,
                    clip_high=cfg.clip,
                    alpha=alpha,
                    threshold=cfg.threshold,
                    normalize=cfg.normalize,
                )
                weights.grad = None
                loss.backward()
                with torch.no_grad():
                    weights -= cfg.lr * weights.grad
                history.append(
                    {
                        "step": len(history),
                        "entropy": measured,
                        "alpha": alpha,
                        "saturated": float(controller.saturated) if controller else 0.0,
                        **({"kappa": controller.kappa} if cfg.control == "auto" else {}),
                        "accuracy": rewards.mean().item(),
                        **{name: value.item() for name, value in metrics.items()},
                    }
                )
    return history


def summarize(history: list[dict[str, float]], target: float | None, band: float = 0.05, window: int = 50) -> dict:
    """Scalar results of one run.

    initial_entropy: mean over the first 10 steps; final_entropy: over the last 10%.
    steady_state_error: mean of (entropy - target) over the last 25%, also relative to the
    target; tracking_error: mean of |entropy - target| / target over the last 25%.
    settling_step: the last step of the first ``window``-step window whose running mean of
    entropy, and every later one's, is within +-``band`` of the target (None if none is).
    final_accuracy, saturated_frac: as named.
    """
    entropy = torch.tensor([h["entropy"] for h in history])
    n = len(entropy)
    last = slice(int(0.9 * n), n)
    out = {
        "initial_entropy": entropy[:10].mean().item(),
        "final_entropy": entropy[last].mean().item(),
        "final_accuracy": sum(h["accuracy"] for h in history[last]) / len(history[last]),
        "saturated_frac": sum(h["saturated"] for h in history) / n,
    }
    if target is None:
        return out
    error = (entropy[int(0.75 * n) :] - target).mean().item()
    tracking = (entropy[int(0.75 * n) :] - target).abs().mean().item() / target
    width = min(window, n)
    running = entropy.unfold(0, width, 1).mean(-1)  # running[i] = mean of entropy[i : i + width]
    outside = ((running - target).abs() > band * target).nonzero()
    if len(outside) == 0:
        settling: int | None = width - 1
    elif int(outside[-1]) + 1 < len(running):
        settling = int(outside[-1]) + width
    else:
        settling = None
    out.update(steady_state_error=error, relative_error=error / target, tracking_error=tracking, settling_step=settling)
    return out
