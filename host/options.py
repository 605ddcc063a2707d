"""Rules for numbers given on a command line or in a config, and argparse ``type=`` checks
built from them: a bad value is refused while the command line is parsed, in one line
(``sentei: error: argument --seed: -1 must be an integer of at least 0, e.g. 0``), before
any work. training/config.py states its keys with the same rules."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from sentei.errors import SenteiError


@dataclass(frozen=True)
class Number:
    """An integer (``integer``) or a finite real from ``low`` to ``high`` (``*_open``: that end excluded)."""

    low: float
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def parse(self, text: str):
        return int(text) if self.integer else float(text)

    def problem(self, value) -> str | None:
        """None when ``value`` is allowed, else what it must be (YAML reads 1e-3 as a string: parsed)."""
        if isinstance(value, str):
            try:
                value = self.parse(value)
            except ValueError:
                return self.describe()
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return self.describe()
        if not math.isfinite(value) or value < self.low or (self.low_open and value == self.low):
            return self.describe()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return self.describe()
        return None

    def describe(self) -> str:
        if self.integer:
            return f"an integer of at least {self.low}" if self.high is None else \
                f"an integer from {self.low} to {self.high}"
        if self.high is None:
            return "a positive number" if self.low == 0 and self.low_open else f"a number of at least {self.low}"
        return f"a number in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def as_option(rule, example):
    """An argparse type: the text parsed by ``rule`` (a :class:`Number`, or any rule with
    ``parse`` and ``problem``) and refused with what it must be and an ``example``."""

    def parse(text: str):
        try:
            value = rule.parse(text)
        except ValueError:
            value = text
        problem = rule.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} must be {problem}, e.g. {example}")
        return value

    return parse


def int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (``int_at_least(0)``: a seed, a count)."""
    return as_option(Number(minimum, integer=True), minimum)


def int_range(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high`` (a count with a hard limit)."""
    return as_option(Number(low, high, integer=True), low)


non_negative_int = int_at_least(0)

#: A duration: a finite number of seconds, 0 or more.
non_negative_seconds = as_option(Number(0), "0 or 2.5")


def parse_size(text: str, option: str, width_first: bool = False, minimum: int = 1,
               maximum: int | None = None) -> tuple[int, int]:
    """A size option -> ``(height, width)``.

    ``'360x480'`` is height x width (a model's, a network input's), or with ``width_first``
    width x height (``'640x480'``: a camera's capture size). Both sides at least ``minimum``
    and, when given, at most ``maximum``.
    """
    form = "WIDTHxHEIGHT, e.g. 640x480" if width_first else "HxW, e.g. 360x480"
    try:
        a, b = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SenteiError(f"{option} {text!r}: expected {form}") from None
    h, w = (b, a) if width_first else (a, b)
    if h < minimum or w < minimum:
        raise SenteiError(f"{option} {text}: too small (at least {minimum}x{minimum})")
    if maximum is not None and (h > maximum or w > maximum):
        raise SenteiError(f"{option} {text}: too large (at most {maximum}x{maximum})")
    return h, w


def model_option(accepts: str = "model file or bundled name", more: str = "") -> dict:
    """The keyword arguments of every command's ``--model`` (``add_argument("--model", **...)``):
    default None, the bundled model; ``accepts`` says what it takes, ``more`` adds to the help."""
    return {"default": None, "metavar": "MODEL", "help": f"{accepts} (default: the bundled model){more}"}


def add_model_option(parser, accepts: str = "model file or bundled name", more: str = ""):
    """Add ``--model`` to ``parser`` (:func:`model_option`); the action."""
    return parser.add_argument("--model", **model_option(accepts, more))
