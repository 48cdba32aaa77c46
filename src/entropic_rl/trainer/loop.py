"""The GRPO loop: rollout -> reward -> advantage -> update -> log / checkpoint."""

from __future__ import annotations

import copy
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from entropic_rl.core import agg_denominator, aggregate, token_logprobs_and_entropy
from entropic_rl.evaluation import Sampling, data_name, validation_metrics
from entropic_rl.methods import LossSettings, MicroBatch, Window, method_class
from entropic_rl.models import autocast, choose_device, generate, load_policy, response_logits
from entropic_rl.tasks import FileTask, build_task, get_reward, score_responses
from entropic_rl.trainer.checkpoint import intact_checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from entropic_rl.trainer.config import Config, dump_config
from entropic_rl.trainer.logger import RunLogger


def train(config: Config, resume: bool = False, trail: list[str] = ()) -> Path:
    """Train with ``config``; with ``resume``, continue the run in ``config.run_dir()`` exactly.
    ``trail`` says where the configuration came from (written at the top of config.yaml)."""
    run_dir = config.run_dir()
    checkpoint = None
    if resume:
        checkpoint, damaged = intact_checkpoint(run_dir)
        if checkpoint is None:
            found = f": {'; '.join(damaged)}" if damaged else ""
            raise ValueError(f"--resume: no intact checkpoint in {run_dir / 'checkpoints'}{found}")
        for problem in damaged:
            print(f"warning: passing over a damaged checkpoint: {problem}", file=sys.stderr)
        if damaged:
            print(f"resuming from {checkpoint}", file=sys.stderr)
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ValueError(f"log.out_dir: {run_dir} already holds a run; use --resume or another log.out_dir")
    torch.manual_seed(config.seed)
    device = choose_device(config.model.device)
    task = build_task(config.task, config.seed)
    reward_fn = get_reward(config.task.reward or task.default_reward, config.task.reward_timeout)
    validation = validation_sets(config, task) if config.eval.every else {}
    model, tokenizer = load_policy(config.model, config.task, device, folder=checkpoint)
    reference = None
    if config.train.kl_coef > 0:  # the frozen initial policy
        reference = load_policy(config.model, config.task, device)[0] if checkpoint else copy.deepcopy(model)
        reference.eval().requires_grad_(False)
    t = config.train
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    r = config.rollout
    loss_settings = LossSettings(t.agg, t.clip_low, t.clip_high, t.clip_c, r.max_new_tokens, r.temperature)
    method = method_class(config.method.name)(config.method, loss_settings)
    if method.off_policy_only and not config.off_policy:
        print(
            f"warning: {config.method.name} on-policy (train.mini_batches 1, train.epochs 1): "
            f"{method.off_policy_only}; it acts with train.mini_batches > 1 or train.epochs > 1",
            file=sys.stderr,
        )
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    step, data_position, skipped, consecutive = 0, 0, 0, 0
    if checkpoint:
        state = load_checkpoint(checkpoint, optimizer=optimizer, scheduler=scheduler, device=device)
        step, data_position = state["step"], state["data_position"]
        skipped, consecutive = state["skipped_steps"], state["consecutive_skips"]
        method.load_state_dict(state["method"])
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / "config.yaml", trail)
    logger = RunLogger(run_dir, config, resumed_at=step)
    columns = (
        TextColumn("train {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    probe = (
        None  # the last rollout trained on: checks the weights before each checkpoint (none: unchanged since loaded)
    )
    with logger, Progress(*columns, transient=True) as progress:
        bar = progress.add_task(config.method.name, total=t.steps, completed=step)
        while step < t.steps:
            step += 1
            examples = task.examples(data_position, config.rollout.prompts_per_step)
            data_position += len(examples)
            try:
                with autocast(config.model.autocast, device):
                    metrics, rollout, rewards = train_step(
                        config, model, reference, tokenizer, method, optimizer, scheduler, examples, reward_fn
                    )
                consecutive, probe = 0, rollout
                description = f"entropy {metrics['entropy/mean']:.3f} accuracy {metrics['reward/accuracy']:.2f}"
            except FloatingPointError as fault:  # nothing of the step was applied
                skipped, consecutive, rollout = skipped + 1, consecutive + 1, None
                metrics, description = {"optim/skipped": 1.0}, f"skipped step {step}"
                progress.console.print(f"step {step} skipped: {fault}; weights, optimizer and method state unchanged")
                if consecutive >= t.max_consecutive_skips:
                    raise RunStopped(
                        stop_message(config, step, f"{consecutive} steps in a row skipped ({fault})")
                    ) from None
            metrics["optim/skipped_steps"] = float(skipped)
            if rollout is not None and validation and (step % config.eval.every == 0 or step == t.steps):
                with autocast(config.model.autocast, device):
                    metrics.update(validate(config, model, tokenizer, validation))
            logger.log(step, metrics)
            if rollout is not None and config.log.sample_every and step % config.log.sample_every == 0:
                logger.samples(step, examples, rollout.responses, rewards, config.rollout.group_size)
            if step % config.log.save_every == 0 or step == t.steps:
                if probe is not None and not gives_finite_logits(model, probe, t.micro_batch_size):
                    reason = "the weights give non-finite logits, so they were not saved"
                    raise RunStopped(stop_message(config, step, reason))
                try:
                    save_checkpoint(
                        run_dir,
                        step,
                        model=model,
                        tokenizer=tokenizer,
                        optimizer=optimizer,
                        scheduler=scheduler,
                        keep_last=config.log.keep_last,
                        state={
                            "data_position": data_position,
                            "method": method.state_dict(),
                            "skipped_steps": skipped,
                            "consecutive_skips": consecutive,
                        },
                    )
                except OSError as exc:  # a full disk, a lost mount: the previous checkpoint is intact
                    raise RunStopped(
                        stop_message(config, step, f"its checkpoint could not be written ({exc})", "free space")
                    ) from None
            progress.update(bar, advance=1, description=f"{config.method.name} {description}")
    return run_dir


def make_optimizer(model, config: Config) -> torch.optim.AdamW:
    """AdamW over the model's parameters with the run's learning rate and weight decay; its fused
    kernel where torch has one (one pass over all parameters instead of a loop over tensors: 4x
    faster on the embedded model's CPU update, docs/benchmarks.md)."""
    fused = model.device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay, fused=fused
    )


class RunStopped(RuntimeError):
    """The run cannot go on; the message says why and what to try. Its last checkpoint is intact."""


def stop_message(config: Config, step: int, reason: str, remedy: str | None = None) -> str:
    """Why the run stopped at ``step``, its last checkpoint, and what to try (by default: a lower
    learning rate or tighter clipping)."""
    run_dir, t = config.run_dir(), config.train
    checkpoint = latest_checkpoint(run_dir)
    last = f"the last checkpoint, {checkpoint}, is from before the fault" if checkpoint else "no checkpoint was written"
    resume = f"entropic train --resume {run_dir}"
    remedy = (
        f"{remedy}, then: {resume}"
        if remedy
        else f"Try a lower train.lr (now {t.lr:g}) or a tighter train.grad_clip (now {t.grad_clip:g}), "
        f"e.g. {resume} train.lr={t.lr / 10:g}"
    )
    return f"training stopped at step {step}: {reason}. {last}. {remedy[0].upper()}{remedy[1:]}"


def gives_finite_logits(model, rollout, micro_batch_size: int) -> bool:
    """Whether ``model`` gives finite logits on the first micro-batch of ``rollout``."""
    rows = torch.arange(min(micro_batch_size, len(rollout.sequences)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = response_logits(
            model, rollout.sequences[rows], rollout.attention_mask[rows], rollout.response_mask.shape[1]
        )
    model.train(was_training)
    return bool(torch.isfinite(logits).all())


def require_finite(what: str, *tensors: torch.Tensor) -> None:
    if not all(bool(torch.isfinite(x).all()) for x in tensors):
        raise FloatingPointError(f"non-finite {what}")


def train_step(config, model, reference, tokenizer, method, optimizer, scheduler, examples, reward_fn):
    """One rollout and its optimizer steps; returns (metrics, rollout, rewards). Non-finite logits,
    log-probs, loss or gradients raise ``FloatingPointError`` before the optimizer step they would
    spoil; that step and the rest of the rollout's are skipped, with the method's state restored."""
    start = time.perf_counter()
    r, t = config.rollout, config.train
    group_prompts = [e.prompt for e in examples for _ in range(r.group_size)]
    rollout = generate(
        model,
        tokenizer,
        group_prompts,
        temperature=r.temperature,
        top_p=r.top_p,
        max_new_tokens=r.max_new_tokens,
        min_new_tokens=r.min_new_tokens,
        chat_template=config.model.chat_template,
        sampler=r.sampler,
        cache=r.cache,
    )
    scores, checks = score_responses(reward_fn, rollout.responses, [e for e in examples for _ in range(r.group_size)])
    rewards = torch.tensor(scores)
    advantages = method.advantages(rewards, r.group_size, t.advantage).to(model.device)
    mask = rollout.response_mask.float()
    old_log_prob = old_entropy = forward = None
    with torch.no_grad():
        if not update_forward_is_old_pass(config):
            old_log_prob, old_entropy = forward_batched(model, rollout, t.micro_batch_size, r.temperature)
            require_finite("log-probs of the rollout", old_log_prob, old_entropy)
        ref_log_prob = forward_batched(reference, rollout, t.micro_batch_size, r.temperature)[0] if reference else None
    rollout_seconds = time.perf_counter() - start

    per_optimizer_step = []
    for _ in range(t.epochs):
        for groups in torch.tensor_split(torch.arange(len(examples)), t.mini_batches):
            rows = (groups[:, None] * r.group_size + torch.arange(r.group_size)).reshape(-1)
            if old_log_prob is None:  # the update's own forward pass gives the old log-probs too
                forward = policy_forward(model, rollout, rows, r.temperature)
                old_log_prob, old_entropy = (widened(x.detach(), mask.shape[1]) for x in forward[1:])
                require_finite("log-probs of the rollout", old_log_prob, old_entropy)
            state_before = copy.deepcopy(method.state_dict())
            try:
                sums = optimizer_step(
                    config, model, method, rollout, rows, advantages, old_log_prob, old_entropy, ref_log_prob, forward
                )
            except FloatingPointError:
                optimizer.zero_grad(set_to_none=True)
                method.load_state_dict(state_before)
                raise
            sums["optim/lr"] = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            per_optimizer_step.append({**sums, **method.metrics()})

    seconds = time.perf_counter() - start
    metrics = {
        name: sum(s[name] for s in per_optimizer_step) / len(per_optimizer_step) for name in per_optimizer_step[0]
    }
    metrics.update(
        {
            "entropy/mean": ((old_entropy * mask).sum() / mask.sum()).item(),
            # the share of the entropy in tokens the sampling policy was confident of (where EntroPIC acts)
            **{
                f"entropy/confident_share@{tau}": confident_share(old_entropy, old_log_prob, mask, tau)
                for tau in CONFIDENT_SHARE_THRESHOLDS
            },
            "reward/mean": rewards.mean().item(),
            "reward/accuracy": (rewards >= 1.0).float().mean().item(),
            "reward/errors": float(checks["error"]),
            "reward/timeouts": float(checks["timeout"]),
            "reward/mixed": (advantages != 0).float().mean().item(),  # sequences with a policy gradient
            "response/length": mask.sum(1).mean().item(),
            "perf/tokens_per_s": mask.sum().item() / seconds,
            "perf/step_time": seconds,
            "perf/rollout_time": rollout_seconds,  # sampling, rewards, old (and reference) log-probs
            "perf/update_time": seconds - rollout_seconds,
        }
    )
    return metrics, rollout, rewards


def optimizer_step(config, model, method, rollout, rows, advantages, old_log_prob, old_entropy, ref_log_prob, forward):
    """The gradients of one optimizer step over ``rows`` (the method's window update first), clipped;
    returns its loss metrics and gradient norm. ``forward``: the rows' policy forward, when done."""
    r, t = config.rollout, config.train
    mask = rollout.response_mask.float()
    m = mask[rows]
    tokens = m.sum().item()
    method.update(
        Window(
            (old_entropy[rows] * m).sum().item(),
            tokens,
            logprob_sum=(old_log_prob[rows] * m).sum().item(),
            mixed=(advantages[rows] != 0).float().mean().item(),
        )
    )
    denominator = agg_denominator(m, t.agg, max_len=r.max_new_tokens)
    sums, losses = defaultdict(float), []
    for micro in micro_batches(rollout, rows, t.micro_batch_size):
        logits, log_prob, entropy = forward or policy_forward(model, rollout, micro, r.temperature)
        width = log_prob.shape[1]  # the micro-batch's longest response
        micro_mask = mask[micro, :width]
        loss, loss_metrics = method.loss(
            MicroBatch(
                log_prob,
                entropy,
                old_log_prob[micro, :width],
                advantages[micro, None].expand(-1, width),
                micro_mask,
                denominator,
                len(micro) / len(rows),
                logits,
            )
        )
        if ref_log_prob is not None:  # k3 estimator of KL(policy || reference), 0 on padding
            log_ratio = (ref_log_prob[micro, :width] - log_prob) * micro_mask
            kl = torch.exp(log_ratio) - log_ratio - 1
            loss = loss + t.kl_coef * aggregate(kl, micro_mask, t.agg, denominator)
            loss_metrics["loss/kl"] = aggregate(kl.detach(), micro_mask)
        loss.backward()
        losses.append(loss.detach())
        token_share = micro_mask.sum().double() / max(tokens, 1.0)
        for name, value in loss_metrics.items():  # token means: weighted by the micro-batch's tokens
            sums[name] = sums[name] + value.detach().double() * token_share
    # checked once all micro-batches are queued (a check waits for the device): a non-finite loss
    # has spoilt only gradients, which the caller discards
    require_finite("loss", torch.stack(losses))
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or math.inf)
    require_finite("gradients", grad_norm)
    sums["optim/grad_norm"] = grad_norm
    return {name: float(value) for name, value in sums.items()}


CONFIDENT_SHARE_THRESHOLDS = (0.8, 0.95)


def confident_share(entropy: torch.Tensor, log_prob: torch.Tensor, mask: torch.Tensor, threshold: float) -> float:
    """sum(H m C) / sum(H m), C = 1 where the sampled token had probability above ``threshold``."""
    confident = (log_prob > math.log(threshold)).float()
    return ((entropy * mask * confident).sum() / (entropy * mask).sum().clamp(min=1e-12)).item()


def update_forward_is_old_pass(config: Config) -> bool:
    """On-policy, with the whole rollout in one micro-batch, the old log-probs are exactly the
    detached log-probs of the update's forward pass (same weights, same inputs): the trainer takes
    them from there instead of running that pass twice."""
    r, t = config.rollout, config.train
    return t.mini_batches == 1 and t.epochs == 1 and r.prompts_per_step * r.group_size <= t.micro_batch_size


def micro_batches(rollout, rows: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """``rows`` in micro-batches of at most ``size`` sequences. When they need several, longest
    responses first: each micro-batch is padded only to its own longest response, and the first
    is the largest."""
    if len(rows) <= size:
        return (rows,)
    lengths = rollout.response_mask[rows].sum(1)
    return torch.split(rows[torch.argsort(lengths, descending=True, stable=True)], size)


def policy_forward(model, rollout, rows: torch.Tensor, temperature: float):
    """The response logits of ``rows`` under ``model``, and their log-probs and entropies (with
    grad), up to the rows' longest response: (len(rows), L, V), (len(rows), L), (len(rows), L)."""
    sequences, attention_mask, length = rollout.trimmed(rows)
    logits = response_logits(model, sequences, attention_mask, length)
    return logits, *token_logprobs_and_entropy(logits, sequences[:, -length:], temperature)


def widened(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` (N, L) padded with zeros on the right to (N, width)."""
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))


def forward_batched(model, rollout, micro_batch_size: int, temperature: float):
    """Log-probs and entropies of all responses, (N, R), micro-batch by micro-batch (0 after each
    micro-batch's longest response)."""
    width = rollout.response_mask.shape[1]
    micro = micro_batches(rollout, torch.arange(len(rollout.sequences)), micro_batch_size)
    parts = [[widened(x, width) for x in policy_forward(model, rollout, rows, temperature)[1:]] for rows in micro]
    order = torch.cat(micro).argsort()  # back to the rollout's order
    return torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order]


def lr_lambda(config: Config):
    """Linear warm-up over ``warmup_steps`` optimizer steps, then constant or cosine to zero."""
    t = config.train
    total = t.steps * t.mini_batches * t.epochs

    def factor(i: int) -> float:
        if i < t.warmup_steps:
            return (i + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return 1.0
        progress = (i - t.warmup_steps) / max(1, total - t.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


HELD_OUT_POSITION = 10**9  # synthetic validation problems: a position training never reaches


def validation_sets(config: Config, task) -> dict:
    """``{name: (examples, reward_fn)}`` for validation: the first ``eval.problems`` of each
    ``eval.data`` file, with that file's own reward; else held-out synthetic problems."""
    e = config.eval
    if e.data:
        sets = {}
        for path in e.data:
            data = FileTask(path, seed=config.seed, template=config.task.template, limit=e.problems)
            sets[data_name(path)] = (data.examples_list, get_reward(data.default_reward))
        return sets
    if config.task.name == "file":
        raise ValueError("eval.data: give the files to validate on (training on a file has no held-out part)")
    reward_fn = get_reward(config.task.reward or task.default_reward, config.task.reward_timeout)
    return {config.task.name: (task.examples(HELD_OUT_POSITION, e.problems), reward_fn)}


def validate(config: Config, model, tokenizer, validation: dict) -> dict:
    """The validation metrics, sampled with the rollout settings on a forked RNG, so that
    validating does not change the training run."""
    r = config.rollout
    sampling = Sampling(
        config.eval.n, r.temperature, r.top_p, r.max_new_tokens, chat_template=config.model.chat_template
    )
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return validation_metrics(model, tokenizer, validation, sampling)
