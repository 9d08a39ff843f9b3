"""Math expressions in x, as a model writes them for a function plot: parsed here, never run as code.

A small recursive-descent parser turns the text into a tree of tuples, and `evaluate` walks that
tree over numpy arrays. Only numbers, `x`, `pi`, `e`, + - * / ^ (or **), parentheses and a short
list of functions exist; anything else is refused with a one-line reason. Length, node count and
nesting are bounded before any work, so a model cannot make the parser or the evaluator slow.

This module imports nothing of cadsynth: the painter's specs validate expressions with it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Union

MAX_LENGTH = 120
MAX_NODES = 60
MAX_DEPTH = 12
FUNCTIONS = ("sin", "cos", "tan", "exp", "ln", "log", "sqrt", "abs")  # log is base 10, ln natural
CONSTANTS = {"pi": math.pi, "e": math.e}

# A parsed expression: a number, the variable "x", or (operator, operands...).
Node = Union[float, str, tuple[Any, ...]]

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z]+)|(\*\*|[-+*/^()]))")


class ExpressionError(ValueError):
    """An expression that cannot be plotted; the message says why in one line."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None or m.end() == at:
            rest = text[at:].strip()
            if not rest:
                break
            raise ExpressionError(f"unexpected {rest[0]!r} at position {len(text) - len(text[at:].lstrip())}")
        number, name, op = m.groups()
        if number is not None:
            out.append(("num", number))
        elif name is not None:
            out.append(("name", name))
        else:
            out.append(("op", "^" if op == "**" else op))
        at = m.end()
    return out


class _Parser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary | implicit product)*;
    unary := '-' unary | power; power := atom ('^' unary)?; atom := number | x | const | f(expr) | (expr)."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.at = 0
        self.nodes = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self.at += 1
        return token

    def node(self, value: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(f"more than {MAX_NODES} terms; write a shorter expression")
        return value

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
        left = self.term()
        while (t := self.peek()) is not None and t in (("op", "+"), ("op", "-")):
            self.take()
            left = self.node((t[1], left, self.term()))
        self.depth -= 1
        return left

    def term(self) -> Node:
        left = self.unary()
        while (t := self.peek()) is not None:
            if t in (("op", "*"), ("op", "/")):
                self.take()
                left = self.node((t[1], left, self.unary()))
            elif t[0] in ("num", "name") or t == ("op", "("):  # 2x, 3(x+1), x sin(x)
                left = self.node(("*", left, self.unary()))
            else:
                break
        return left

    def unary(self) -> Node:
        if self.peek() == ("op", "-"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
            inner = self.unary()
            self.depth -= 1
            return self.node(("neg", inner))
        if self.peek() == ("op", "+"):
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek() == ("op", "^"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
            exponent = self.unary()  # right-associative: 2^3^2 = 2^(3^2)
            self.depth -= 1
            return self.node(("^", base, exponent))
        return base

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            value = float(text)
            if not math.isfinite(value) or abs(value) > 1e6:
                raise ExpressionError(f"the number {text} is out of range (at most 1e6)")
            return self.node(value)
        if kind == "name":
            if text == "x":
                return self.node("x")
            if text in CONSTANTS:
                return self.node(CONSTANTS[text])
            if text in FUNCTIONS:
                if self.peek() != ("op", "("):
                    raise ExpressionError(f"{text} needs parentheses: {text}(...)")
                self.take()
                inner = self.expr()
                self._close()
                return self.node((text, inner))
            raise ExpressionError(f"unknown name {text!r}; use x, pi, e or one of {', '.join(FUNCTIONS)}")
        if text == "(":
            inner = self.expr()
            self._close()
            return inner
        raise ExpressionError(f"unexpected {text!r}")

    def _close(self) -> None:
        if self.take() != ("op", ")"):
            raise ExpressionError("a parenthesis is not closed")


def parse(text: str) -> Node:
    """The expression's tree, or ExpressionError saying why it is refused."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"{len(text)} characters is too long (at most {MAX_LENGTH})")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    parser = _Parser(_tokens(text))
    tree = parser.expr()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r} after a complete expression")  # type: ignore[index]
    return tree


def evaluate(tree: Node, x: Any) -> Any:
    """The expression at x (a float or a numpy array): a walk of the tree, no code run. Outside the
    domain (log of a negative, division by zero, overflow) the value is nan or inf."""
    import numpy as np

    def walk(node: Node) -> Any:
        if isinstance(node, float):
            return node
        if node == "x":
            return x
        assert isinstance(node, tuple)
        op, vals = node[0], [walk(a) for a in node[1:]]
        if op == "+":
            return vals[0] + vals[1]
        if op == "-":
            return vals[0] - vals[1]
        if op == "*":
            return vals[0] * vals[1]
        if op == "/":
            return np.divide(vals[0], vals[1])
        if op == "^":
            return np.power(np.asarray(vals[0], dtype=float), vals[1])
        if op == "neg":
            return -vals[0]
        return {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "ln": np.log, "log": np.log10,
                "sqrt": np.sqrt, "abs": np.abs}[op](vals[0])

    with np.errstate(all="ignore"):
        return walk(tree)
