"""Synthetic verifiable tasks: arithmetic and Countdown, with a difficulty knob.

A task is a deterministic function of a position: ``task.examples(start, count)`` returns
the examples at positions ``start .. start+count-1``, so a checkpoint stores the data
position as one integer and a resumed run sees exactly the prompts it would have seen.
"""

from __future__ import annotations

import random

from entropic_rl.tasks.example import Example, position_rng
from entropic_rl.tasks.safe_eval import evaluate

SPACE_PROBABILITY = 0.05


class ArithmeticTask:
    """``a+b:`` with ``digits``-digit operands (the difficulty knob); the response writes out the
    equation, ``a+b=c``, checked exactly with white space ignored.

    The warm-start demonstrations put a space in each gap between characters with probability
    ``SPACE_PROBABILITY``, as people do now and then. Those gaps are confident tokens with a valid
    alternative, like the many equivalent phrasings of an LLM's answer: the tokens through which
    a method that reweights confident tokens can hold entropy up (docs/training.md).
    """

    default_reward = "exact"

    def __init__(self, digits: int = 2, ops: str = "+", seed: int = 0) -> None:
        if digits < 1:
            raise ValueError(f"task.difficulty (digits) must be >= 1, got {digits}")
        if not ops or set(ops) - set("+-*"):
            raise ValueError(f"task.ops must be a non-empty string of + - *, got {ops!r}")
        self.digits, self.ops, self.seed = digits, ops, seed

    def examples(self, start: int, count: int) -> list[Example]:
        out = []
        for position in range(start, start + count):
            rng = position_rng(self.seed, position)
            a, b = (rng.randrange(10**self.digits) for _ in range(2))
            op = rng.choice(self.ops)
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
            equation = f"{a}{op}{b}={value}"
            written = equation[0] + "".join(" " * (rng.random() < SPACE_PROBABILITY) + c for c in equation[1:])
            out.append(Example(f"{a}{op}{b}:", equation, {"demonstration": written}))
        return out


class WorkedAdditionTask:
    """``a+b:`` with ``digits``-digit operands; the response works the sum out column by column from
    the units, carries written out, and ends with the sum, e.g.

        347+285: 7+5=12 carry 1, 4+8+1=13 carry 1, 3+2+1=6, so 632

    Only the final number is checked. The demonstrations vary the phrasing with fixed odds, drawn
    per step: the operands' order (``5+7``, 10%), where the carry is added (``1+4+8``, 8%), how a
    carry is written (``c1``, 10%), the separator (``;``, 5%), and the closing word (``total``, 15%).
    So most of a response's tokens are confident (the common phrasing, or the arithmetic itself),
    and the entropy sits in confident tokens with acceptable alternatives, as it does in the phrasing
    of an LLM's reasoning, where EntroPIC acts. ``characters``: what the embedded model's tokenizer
    needs beyond its digits and signs.
    """

    default_reward = "gsm8k"  # the response's final number, as GSM8K's checker reads it
    characters = "aclorsty,;"
    SWAP_OPERANDS, CARRY_FIRST, SHORT_CARRY, SEMICOLON, TOTAL = 0.10, 0.08, 0.10, 0.05, 0.15

    def __init__(self, digits: int = 3, seed: int = 0) -> None:
        if digits < 1:
            raise ValueError(f"task.difficulty (digits) must be >= 1, got {digits}")
        self.digits, self.seed = digits, seed

    def examples(self, start: int, count: int) -> list[Example]:
        return [self._example(position_rng(self.seed, p)) for p in range(start, start + count)]

    def _example(self, rng: random.Random) -> Example:
        a, b = (rng.randrange(10**self.digits) for _ in range(2))
        carry, text = 0, ""
        for column in range(self.digits):
            x, y = (a // 10**column) % 10, (b // 10**column) % 10
            terms = [str(y), str(x)] if rng.random() < self.SWAP_OPERANDS else [str(x), str(y)]
            if carry:
                terms = ["1", *terms] if rng.random() < self.CARRY_FIRST else [*terms, "1"]
            total = x + y + carry
            carry = int(total >= 10)
            text += self._separator(rng, column) + "+".join(terms) + f"={total}"
            if carry:
                text += " c1" if rng.random() < self.SHORT_CARRY else " carry 1"
        closing = "total" if rng.random() < self.TOTAL else "so"
        text += self._separator(rng, self.digits) + f"{closing} {a + b}"
        return Example(f"{a}+{b}:", str(a + b), {"demonstration": text})

    def _separator(self, rng: random.Random, index: int) -> str:
        if index == 0:
            return ""
        return "; " if rng.random() < self.SEMICOLON else ", "


class CountdownTask:
    """Reach ``target`` from ``numbers`` with + - * / and parentheses, each number at most once.

    The difficulty knob is how many numbers are given (targets are built from all of them, so
    every puzzle is solvable). The model writes an expression; the reward parses it with a
    safe AST walk (never ``eval``)."""

    default_reward = "countdown"

    def __init__(self, n_numbers: int = 3, max_number: int = 20, seed: int = 0) -> None:
        if n_numbers < 2:
            raise ValueError(f"task.difficulty (numbers) must be >= 2, got {n_numbers}")
        self.n_numbers, self.max_number, self.seed = n_numbers, max_number, seed

    def examples(self, start: int, count: int) -> list[Example]:
        return [self._example(position_rng(self.seed, p)) for p in range(start, start + count)]

    def _example(self, rng: random.Random) -> Example:
        while True:
            numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            expression = str(numbers[0])
            for n in numbers[1:]:
                left = f"({expression})" if not expression.isdigit() else expression
                expression = f"{left}{rng.choice('+-*')}{n}"
            target = evaluate(expression)[0]
            if target.denominator == 1 and 0 < target <= 999:
                break
        listed = " ".join(map(str, numbers))
        return Example(f"{listed}={target}:", expression, {"numbers": numbers, "target": int(target)})
