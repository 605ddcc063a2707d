"""Rules for values given on a command line, in a config or in a report, and argparse ``type=``
checks built from them: a bad value is refused while the command line is parsed, in one line
(``sentei: error: argument --seed: -1 must be an integer of at least 0, e.g. 0``), before
any work.

Schemas: a mapping's keys are the fields of a dataclass, each declared with :func:`key` (its one
default, its rule, the example its error shows); :class:`Section` nests one; :func:`table`,
:func:`fill` and :func:`schema_problems` read them. training/config.py states the run configs
this way, sentei.host.bench.report the bench reports, and the commands' options share the rules
and the shared options (:func:`model_option`)."""
from __future__ import annotations

import argparse
import copy
import math
from dataclasses import MISSING, dataclass, field, fields

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


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (``nullable``: or null)."""

    values: tuple
    nullable: bool = False

    def problem(self, value) -> str | None:
        if any(value == v and type(value) is type(v) for v in self.values) or (self.nullable and value is None):
            return None
        return "one of " + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)


@dataclass(frozen=True)
class Text:
    """A string (``nullable``: or null)."""

    nullable: bool = False

    def problem(self, value) -> str | None:
        if isinstance(value, str) or (self.nullable and value is None):
            return None
        return "a string or null" if self.nullable else "a string"


def key(default, rule, example=None):
    """A field of a schema dataclass: a key with its one ``default``, the ``rule`` its value must
    meet, and the ``example`` an error shows (the default unless given)."""
    meta = {"rule": rule, "example": default if example is None else example}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Section:
    """A mapping whose keys are the fields of ``schema`` (a dataclass of :func:`key` fields);
    ``nullable``: or null; ``what``: how a message names it."""

    schema: type
    nullable: bool = True
    what: str = "a mapping {key: value, ...}"

    @property
    def keys(self) -> dict:
        return table(self.schema)

    def problem(self, value) -> str | None:
        if isinstance(value, dict) or (self.nullable and value is None):
            return None
        return self.what + (" or null" if self.nullable and self.what == "an object" else "")


def table(schema) -> dict:
    """``{key: (rule, example)}`` of a schema dataclass."""
    return {f.name: (f.metadata["rule"], f.metadata["example"]) for f in fields(schema)}


def fill(values: dict | None, schema, instead: dict | None = None) -> dict:
    """``values`` with every key of ``schema`` it leaves out at its default (``instead``: these
    defaults where given, by key; sections filled in too); a new dict, ``values`` untouched."""
    out = copy.deepcopy(dict(values or {}))
    instead = instead or {}
    for f in fields(schema):
        rule = f.metadata["rule"]
        if isinstance(rule, Section):
            out[f.name] = fill(out.get(f.name), rule.schema, instead.get(f.name))
        elif f.name not in out:
            out[f.name] = copy.deepcopy(instead[f.name]) if f.name in instead else \
                (f.default_factory() if f.default is MISSING else f.default)
    return out


def schema_problems(values: dict, schema, prefix: str = ""):
    """``(key path, value, what it must be)`` for every key of ``schema`` whose value in ``values``
    its rule refuses (an absent key reads as null), in field order, into the sections that pass."""
    for f in fields(schema):
        rule, value = f.metadata["rule"], values.get(f.name)
        problem = rule.problem(value)
        if problem:
            yield prefix + f.name, value, problem
        elif isinstance(rule, Section) and isinstance(value, dict):
            yield from schema_problems(value, rule.schema, f"{prefix}{f.name}.")


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


# --- options that several subcommands take: one name, one help, one default each (issue 28;
# tests/test_cli.py walks every subcommand's parser to keep it so)

DEFAULT_BOARD = "zcu104"


def add_alpha_option(parser):
    """``--alpha``: the labels' opacity in an overlay image or video."""
    return parser.add_argument("--alpha", type=as_option(Number(0, 1), 0.5), default=0.5,
                               help="opacity of the labels in the overlay, 0 to 1 (default 0.5)")


#: threads decoding frames: --workers' default, and the library functions' behind it
DEFAULT_WORKERS = 4


def add_workers_option(parser):
    """``--workers``: the threads that decode training or evaluation frames."""
    return parser.add_argument("--workers", type=int_at_least(1), default=DEFAULT_WORKERS,
                               help=f"threads decoding frames (default {DEFAULT_WORKERS})")


def add_device_option(parser):
    """``--device``: the torch device a training-side command runs on (resolved by
    sentei.training.train.setup_env; None: CUDA when available)."""
    return parser.add_argument("--device", default=None,
                               help="torch device: cpu, cuda, cuda:N or mps (default: CUDA when available, "
                                    "else the CPU)")


def add_board_option(parser):
    """``--board``: the board a command models or designs for, one of overlay/boards."""
    return parser.add_argument("--board", default=DEFAULT_BOARD,
                               help=f"board of overlay/boards: zcu104, kv260, ultra96v2 or pynqz2 "
                                    f"(default {DEFAULT_BOARD})")


def add_clock_option(parser, *old_names, dest=None):
    """``--clock-mhz``: the PL clock the accelerator is modeled or allocated at (None: the board's
    default clock); ``old_names``: other spellings a command still accepts (bench's ``--clock``)."""
    extra = {"dest": dest} if dest else {}
    return parser.add_argument("--clock-mhz", *old_names, type=float, default=None, metavar="MHZ",
                               help="PL clock in MHz of the modeled accelerator (default: the board's)", **extra)


def add_json_option(parser):
    """``--json FILE`` (``args.json_out``): the command's result also written as JSON."""
    return parser.add_argument("--json", dest="json_out", default=None, metavar="FILE",
                               help="also write the result (facts, metrics or report) as JSON to FILE")


def add_simulate_option(parser):
    """``--simulate``: also run the clock-level simulator of the generated pipeline."""
    return parser.add_argument("--simulate", action="store_true",
                               help="also simulate the generated pipeline clock by clock (needs g++): frames/s "
                                    "and latency with bounded FIFOs, each process's stalls")


def add_out_folder_option(parser, required: bool = True):
    """``--out DIR``: the folder a command writes its files into (no default: given, or not written)."""
    return parser.add_argument("--out", required=required, default=None, metavar="DIR", help="output folder")


def add_image_option(parser):
    """``--image IMAGE`` (repeatable, ``[]`` when not given): images to run instead of a command's own frames."""
    return parser.add_argument("--image", action="append", default=[], metavar="IMAGE",
                               help="an image file to run, resized to the model's input (repeatable)")


# --- the data options of the commands that read CamVid (eval, train, compress, sensitivity)

def add_data_option(parser, required: bool = False):
    """``--data ROOT``: a CamVid root (``required``: the command has no synthetic alternative)."""
    return parser.add_argument("--data", required=required, default=None, metavar="ROOT",
                               help="CamVid root holding <split>/ and <split>annot/ (e.g. val/ and valannot/)")


def add_synthetic_option(parser):
    """``--synthetic``: the small synthetic data set instead of ``--data``."""
    return parser.add_argument("--synthetic", action="store_true",
                               help="the small synthetic data set instead of --data (tests)")


def add_split_option(parser):
    """``--split``: the CamVid split a command scores."""
    return parser.add_argument("--split", default="val", help="split to score: val, test or train (default val)")


def add_limit_option(parser):
    """``--limit N``: only the first N frames of each split read (quick runs)."""
    return parser.add_argument("--limit", type=int_at_least(1), default=None, metavar="N",
                               help="only the first N frames of each split it reads (quick runs)")


def add_size_option(parser):
    """``--size HxW``: the network's input size instead of the config's or the teacher's."""
    return parser.add_argument("--size", default=None, metavar="HxW",
                               help="network input HxW, e.g. 90x120, instead of the config's or the teacher's "
                                    "(quick runs at low resolution)")


def add_teacher_option(parser):
    """``--teacher``: the dense teacher checkpoint a training-side command starts from."""
    return parser.add_argument("--teacher", default="teacher",
                               help="teacher checkpoint (teacher.pt or best.pt of sentei train) or bundled name "
                                    "(default: teacher, the bundled teacher)")


def add_seed_option(parser):
    """``--seed``: the seed of the random numbers a command draws (test frames, a search, a pruning)."""
    return parser.add_argument("--seed", type=non_negative_int, default=0,
                               help="seed of the random numbers it draws (default 0)")
