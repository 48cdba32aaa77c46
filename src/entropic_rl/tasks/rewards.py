"""Reward functions: ``fn(response, example) -> float``, chosen by name or by import path."""

from __future__ import annotations

import importlib
import math
import numbers
import sys
from collections import Counter
from collections.abc import Callable

from entropic_rl.tasks.checkers import Check, check_math, check_number
from entropic_rl.tasks.example import Example
from entropic_rl.tasks.safe_eval import UnsafeExpression, evaluate
from entropic_rl.tasks.worker import Worker

RewardFn = Callable[[str, Example], "float | Check"]


def exact(response: str, example: Example) -> float:
    """1 if the response is the answer, white space ignored."""
    return float("".join(response.split()) == "".join(example.answer.split()))


def countdown(response: str, example: Example) -> float:
    """1 if the response is an expression that uses each given number at most once and equals
    the target. Parsed with a safe AST walk; anything else scores 0."""
    try:
        value, used = evaluate(response)
    except UnsafeExpression:
        return 0.0
    if Counter(used) - Counter(example.meta["numbers"]):
        return 0.0
    return float(value == example.meta["target"])


def gsm8k(response: str, example: Example) -> Check:
    """GSM8K: the response's last boxed answer, else its final number, equals the reference's
    final number (after ``####``), compared as numbers."""
    return check_number(response, example.answer)


def math_answer(response: str, example: Example) -> Check:
    """MATH-style: the response's last ``\\boxed{}`` is equivalent to the reference answer
    (math-verify, gold first, under a time limit)."""
    return check_math(response, example.answer)


REWARDS: dict[str, RewardFn] = {"exact": exact, "countdown": countdown, "gsm8k": gsm8k, "math": math_answer}
REWARD_TIMEOUT_S = 10.0  # the default time limit of a reward function given by import path, per response


class UserReward:
    """A reward function given as ``module:function``, called in a worker process (tasks/worker.py)
    under a time limit per response. A call that raises, runs past the limit, or returns anything
    but a finite number (None, NaN, a string, a list) scores 0 and counts as an error or a time-out;
    the first such fault is reported once on stderr. It never stops or stalls a run."""

    def __init__(self, name: str, fn: Callable, timeout_s: float = REWARD_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"reward_timeout must be > 0, got {timeout_s}")
        self.name, self.timeout_s = name, timeout_s
        self.worker = Worker(fn, f"reward {name}")
        self.reported = False

    def __call__(self, response: str, example: Example) -> Check:
        status, result = self.worker.call((response, example), self.timeout_s)
        if status == "timeout":
            return self.fault("timeout", f"took longer than {self.timeout_s:g} s (its time limit, reward_timeout)")
        if status == "error":
            return self.fault("error", f"raised {result}")
        score = result.score if isinstance(result, Check) else result
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            return self.fault(
                "error", f"returned {str(result)[:80]!r} of type {type(result).__name__}, not a finite number"
            )
        return result if isinstance(result, Check) else Check(float(score), "ok")

    def fault(self, status: str, what: str) -> Check:
        if not self.reported:
            self.reported = True
            print(
                f"warning: reward {self.name} {what}; such responses score 0 and are counted in "
                "reward/errors and reward/timeouts (shown once)",
                file=sys.stderr,
            )
        return Check(0.0, status)


def score_responses(reward_fn: RewardFn, responses: list[str], examples: list[Example]) -> tuple[list[float], Counter]:
    """Scores of the responses and how their checks went: ``ok``, ``no_answer``, ``error``,
    ``timeout``. A reward function that raises scores 0 and counts as an error: it never stops a
    run. Reward functions return a number or a ``Check`` (score and status)."""
    scores, statuses = [], Counter()
    for response, example in zip(responses, examples, strict=True):
        try:
            result = reward_fn(response, example)
            score, status = (result.score, result.status) if isinstance(result, Check) else (float(result), "ok")
        except Exception:
            score, status = 0.0, "error"
        scores.append(score)
        statuses[status] += 1
    return scores, statuses


def get_reward(name: str, timeout_s: float = REWARD_TIMEOUT_S, field: str = "task.reward") -> RewardFn:
    """A registered reward by name, or ``"package.module:function"`` for your own (run under a time
    limit of ``timeout_s`` seconds per response, see ``UserReward``); errors name ``field``."""
    if name in REWARDS:
        return REWARDS[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(f"{field}: unknown reward {name!r}; use one of {sorted(REWARDS)} or 'module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{field}: cannot import {name!r}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"{field}: {name!r} is not callable")
    return UserReward(name, fn, timeout_s)
