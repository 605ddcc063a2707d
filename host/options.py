"""argparse ``type=`` checks shared by the commands: a bad value is refused while the command
line is parsed, in one line (``sentei: error: argument --seed: ...``), before any work."""
from __future__ import annotations

import argparse
import math


def int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum`` (``int_at_least(0)``: a seed, a count)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}; pass {minimum} or more")
        return value

    return parse


non_negative_int = int_at_least(0)


def non_negative_seconds(text: str) -> float:
    """A duration: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of seconds >= 0; pass e.g. 0 or 2.5")
    return value
