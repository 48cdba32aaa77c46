"""Answer extraction and checking for math rewards and evaluation (ALGORITHMS.md §4).

A check returns a score and a status, so that an evaluation can count the answers it could not check instead of
silently folding them into the wrong ones. Checks never raise on anything a model writes and never hang: math
answers are compared by math-verify in a worker process that is killed when it runs past its time limit.
Model output is only ever parsed, never evaluated.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from entropic_rl.tasks.worker import Worker

STATUSES = ("ok", "no_answer", "error", "timeout")


@dataclass(frozen=True)
class Check:
    """Outcome of one check. ``status`` is "ok" (checked: right or wrong), "no_answer" (nothing to extract),
    "error" (the checker raised) or "timeout" (the checker ran past its limit); ``score`` is 1.0 only when right."""

    score: float
    status: str


# ---------------------------------------------------------------------------------------------------------------
# Extraction


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")  # not \boxedsomething, a different macro


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the brace closing the one at ``start``; escaped braces \\{ \\} are content, not grouping."""
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip the escaped character: \{, \}, \\
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{…}`` or ``\\fbox{…}`` (nested braces matched), or the token after
    ``\\boxed 5`` (MATH's convention: up to white space or ``$``). ``""`` for an empty box; None when there is no
    box or the last one never closes (a truncated generation has no final answer)."""
    answer = None
    pos = 0
    while match := _BOX.search(text, pos):
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        if text.startswith("{", start):
            end = _closing_brace(text, start)
            if end is None:
                return None
            answer, pos = text[start + 1 : end], end + 1
        elif start > match.end() and (token := re.match(r"[^\s$]+", text[start:])):
            answer, pos = token.group(), start + token.end()
        else:  # "\boxed" at the end, or followed by "$": not an answer
            pos = match.end()
    return answer


# A number as written in GSM8K answers: thousands groups "1,234,567" or plain digits, optional decimals. A minus
# is a sign unless it directly follows a word or a bracket, where it is more likely a subtraction ("10-5").
_SIGN = r"(?:(?<![\w)\]}])-)?"
_NUMBER = re.compile(rf"{_SIGN}(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?|{_SIGN}\.\d+")
_HASHES = re.compile(rf"####\s*({_NUMBER.pattern})")
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3})")  # 1{,}234 and 1\,234, as LaTeX-trained models write


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def extract_final_number(text: str) -> str | None:
    """The final numeric answer, GSM8K style: the number after the last ``#### ``, else the last number in the last
    ``\\boxed{}``, else the last number in the text. Thousands commas and ``$`` are dropped, a minus and decimals
    kept ("#### $1,234.50" -> "1234.50"); "72.0" stays as written, ``check_number`` compares by value."""
    text = _LATEX_THOUSANDS.sub(",", text.replace("$", ""))
    if hashes := _HASHES.findall(text):
        return hashes[-1].replace(",", "")
    boxed = extract_boxed(text)
    if boxed is not None and (number := _last_number(boxed)) is not None:
        return number
    return _last_number(text)


# ---------------------------------------------------------------------------------------------------------------
# GSM8K: numbers


def check_number(response: str, gold: str) -> Check:
    """1 if the final number of ``response`` equals ``gold``'s by value (72 == 72.0, compared as fractions, not
    floats). ``gold`` may be a whole GSM8K solution ending in ``#### 72`` or a bare number; a gold without a number
    is a data error and scores 0 with status "error"."""
    gold_number = extract_final_number(gold)
    if gold_number is None:
        return Check(0.0, "error")
    answer = extract_final_number(response)
    if answer is None:
        return Check(0.0, "no_answer")
    try:
        right = Fraction(answer) == Fraction(gold_number)
    except (ValueError, ZeroDivisionError):  # e.g. more digits than Python converts to int by default (4300)
        return Check(0.0, "error")
    return Check(float(right), "ok")


# ---------------------------------------------------------------------------------------------------------------
# MATH: math-verify in a worker process (tasks/worker.py says why a process)
#
# math-verify bounds its own work with signal.alarm, which works only in the main thread and only interrupts
# Python bytecode: for an answer such as \boxed{10^{10^{10}}} sympy computes a huge integer inside one C call that
# holds the GIL (measured: still running after 60 s). So it runs with its own time-outs off in a worker that is
# killed past the time limit. Its exceptions are never formatted: str() of a huge sympy expression can itself hang.


@lru_cache(maxsize=1 << 14)
def _parse(latex: str) -> tuple:
    """math-verify's parse, cached: golds repeat N times per problem and sampled answers often coincide."""
    import math_verify

    return tuple(math_verify.parse(latex, parsing_timeout=None, raise_on_error=True))


def _verify(gold: str, answer: str) -> bool:
    import math_verify

    # Gold first: math-verify is not symmetric (it simplifies assignments and intervals on the gold side).
    return bool(math_verify.verify(list(_parse(gold)), list(_parse(answer)), timeout_seconds=None, raise_on_error=True))


def _quiet_math_verify() -> None:
    import math_verify  # noqa: F401  (a spawned worker imports it before it says it is ready)

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" warning: we enforce our own


_WORKER = Worker(_verify, "math-verify", setup=_quiet_math_verify, describe=False)


def shutdown() -> None:
    """Stop the math-verify worker process now (it also stops when Python exits); the next check starts another."""
    _WORKER.shutdown()


def _require_math_verify() -> None:
    try:
        import math_verify  # noqa: F401
    except ImportError as exc:  # a set-up problem, not a wrong answer: say so instead of scoring everything 0
        raise ImportError("check_math needs math-verify: pip install 'math-verify>=0.9'") from exc


def check_math(response: str, gold: str, timeout_s: float = 5.0) -> Check:
    """1 if the last boxed answer of ``response`` equals ``gold`` by math-verify, within ``timeout_s`` seconds.

    ``gold`` is a bare answer (MATH-500's ``answer`` field) or a solution with a boxed answer. Both sides are
    wrapped in ``\\boxed{}`` because math-verify only reads LaTeX inside delimiters (bare, ``\\left( 3, \\frac{\\pi}{2}
    \\right)`` parses as ``3``). Never raises on model output and never waits much past ``timeout_s``.
    """
    if not timeout_s > 0:
        raise ValueError(f"check_math: timeout_s must be > 0, got {timeout_s!r}")
    _require_math_verify()
    answer = extract_boxed(response)
    if answer is None or not answer.strip():
        return Check(0.0, "no_answer")
    gold_answer = extract_boxed(gold)
    if gold_answer is None:
        gold_answer = gold
    if not gold_answer.strip():
        return Check(0.0, "error")
    status, right = _WORKER.call((f"\\boxed{{{gold_answer}}}", f"\\boxed{{{answer}}}"), timeout_s)
    return Check(float(status == "ok" and bool(right)), status)
