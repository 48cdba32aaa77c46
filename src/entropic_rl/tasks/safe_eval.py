"""Evaluate arithmetic expressions written by a model, without eval: an AST walk that allows
numbers, + - * /, unary minus and parentheses, and nothing else."""

from __future__ import annotations

import ast
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_ABS_VALUE = 10**12  # a model can write 9**9**9-sized numbers only with ops we reject; this bounds products

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


class UnsafeExpression(ValueError):
    """The text is not a plain arithmetic expression (or its value is out of range)."""


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """The exact value of ``expression`` and the integer literals it uses, in order.

    Raises ``UnsafeExpression`` for anything but integers, + - * /, unary minus and parentheses,
    for division by zero, and for values beyond ``MAX_ABS_VALUE``.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpression(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"not an expression: {exc.msg}") from None
    numbers: list[int] = []
    value = _walk(tree.body, numbers)
    return value, numbers


def _walk(node: ast.AST, numbers: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        numbers.append(node.value)
        return _bounded(Fraction(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_walk(node.operand, numbers)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, numbers), _walk(node.right, numbers)
        if isinstance(node.op, ast.Div) and right == 0:
            raise UnsafeExpression("division by zero")
        return _bounded(_BINARY[type(node.op)](left, right))
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def _bounded(value: Fraction) -> Fraction:
    if abs(value) > MAX_ABS_VALUE:
        raise UnsafeExpression("value out of range")
    return value
