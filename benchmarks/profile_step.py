"""Where a training step's time goes: the built-in trainer's own ``train_step``, its parts timed.

Runs ``--steps`` steps of ``entropic train``'s configuration (the ``embedded`` preset, or
``--config``, then the overrides) after ``--warmup`` untimed ones, with timers wrapped around the
functions the step calls: sampling (and, inside it, the model's forward passes: the rest is
per-token Python and framework work), rewards, the old-log-prob pass, and in the update the
policy's forward, log-probs and entropies, the method's loss, the backward pass, gradient
clipping and the optimizer. Each line is the time spent in that part and not in a part listed
under it (exclusive), as a mean per step and a share of the step; "other" is the step's time in
none of them (metrics, masks, copies, the method's controller).

    python benchmarks/profile_step.py                               # the README's main job
    python benchmarks/profile_step.py --config configs/smollm2-addition.yaml --steps 3 --warmup 1
    python benchmarks/profile_step.py rollout.sampler=generate      # transformers' generate
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import transformers
from transformers.utils import logging as hf_logging

from entropic_rl.methods import LossSettings, method_class
from entropic_rl.models import choose_device, load_policy
from entropic_rl.tasks import build_task, get_reward
from entropic_rl.trainer import load_config, loop
from entropic_rl.trainer.config import DEFAULT_PRESET


class Timers:
    """Exclusive time per call path (``sampling/model``): a part's time less its timed parts'."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [path, start, time in timed parts below]

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            path = f"{self.stack[-1][0]}/{name}" if self.stack else name
            self.stack.append([path, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                path, start, inner = self.stack.pop()
                total = time.perf_counter() - start
                self.exclusive[path] += total - inner
                if self.stack:
                    self.stack[-1][2] += total

        return timed


def patch(timers: Timers, model, optimizer, method) -> None:
    """Timers around what ``loop.train_step`` calls (module attributes and these objects' methods)."""
    for name in (
        "generate",
        "score_responses",
        "forward_batched",
        "optimizer_step",
        "policy_forward",
        "response_logits",
        "token_logprobs_and_entropy",
    ):
        setattr(loop, name, timers.wrap(name, getattr(loop, name)))
    model.forward = timers.wrap("model", model.forward)
    method.loss = timers.wrap("loss", method.loss)
    optimizer.step = timers.wrap("optimizer", optimizer.step)
    optimizer.zero_grad = timers.wrap("optimizer", optimizer.zero_grad)
    torch.Tensor.backward = timers.wrap("backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = timers.wrap("clip_grad_norm", torch.nn.utils.clip_grad_norm_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_PRESET, help="a YAML file or preset (default: embedded)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("overrides", nargs="*", help="key.sub=value, as for entropic train")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(args.config, overrides=[*args.overrides, f"log.out_dir={Path(tmp) / 'run'}"])
    torch.manual_seed(config.seed)
    device = choose_device(config.model.device)
    task = build_task(config.task, config.seed)
    reward_fn = get_reward(config.task.reward or task.default_reward, config.task.reward_timeout)
    model, tokenizer = load_policy(config.model, config.task, device)
    r, t = config.rollout, config.train
    settings = LossSettings(t.agg, t.clip_low, t.clip_high, t.clip_c, r.max_new_tokens, r.temperature)
    method = method_class(config.method.name)(config.method, settings)
    optimizer = loop.make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, loop.lr_lambda(config))
    timers, position, totals, tokens = Timers(), 0, [], []
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            patch(timers, model, optimizer, method)
        examples = task.examples(position, r.prompts_per_step)
        position += len(examples)
        start = time.perf_counter()
        with loop.autocast(config.model.autocast, device):
            metrics, _, _ = loop.train_step(
                config, model, None, tokenizer, method, optimizer, scheduler, examples, reward_fn
            )
        if step >= args.warmup:
            totals.append(time.perf_counter() - start)
            tokens.append(metrics["response/length"])
    step_time = sum(totals) / len(totals)
    print(
        f"{args.config} {' '.join(args.overrides) or '-'}: {r.prompts_per_step} x {r.group_size} completions, "
        f"{sum(tokens) / len(tokens):.1f} tokens on average (max {r.max_new_tokens}); "
        f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{device.type}, {torch.get_num_threads()} threads; mean of {args.steps} steps after {args.warmup}"
    )
    print(f"{'part (exclusive)':58} {'s/step':>8} {'share':>7}")
    print(f"{'step':58} {step_time:8.4f} {1:7.1%}")
    for path, seconds in sorted(timers.exclusive.items()):
        print(f"  {path:56} {seconds / args.steps:8.4f} {seconds / args.steps / step_time:7.1%}")
    other = step_time - sum(timers.exclusive.values()) / args.steps
    print(f"  {'other':56} {other:8.4f} {other / step_time:7.1%}")


if __name__ == "__main__":
    main()
