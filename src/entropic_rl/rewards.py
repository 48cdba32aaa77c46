"""Reward functions: ``fn(response, example) -> float``, chosen by name or by import path."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable

from entropic_rl.tasks import Example, UnsafeExpression, evaluate

RewardFn = Callable[[str, Example], float]


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


REWARDS: dict[str, RewardFn] = {"exact": exact, "countdown": countdown}


def get_reward(name: str) -> RewardFn:
    """A registered reward by name, or ``"package.module:function"`` for your own."""
    if name in REWARDS:
        return REWARDS[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(f"task.reward: unknown reward {name!r}; use one of {sorted(REWARDS)} or 'module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"task.reward: cannot import {name!r}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"task.reward: {name!r} is not callable")
    return fn
