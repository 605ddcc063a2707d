"""The ``sentei`` console script: one command, subcommands registered by each half.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its
subcommands and sets ``func`` (called with the parsed arguments, returns an exit status).
Registration imports nothing heavy: torch, OpenCV and pynq are imported by the handlers,
so ``sentei --help`` works on a plain install.

Errors: a :class:`~sentei.errors.SenteiError`, an OS error on a path (missing, not a
folder, no permission, disk full) and a bad command line are each printed as one line
``sentei: error: ...`` with exit status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from sentei.errors import SenteiError
from sentei.host.options import parse_size  # noqa: F401  (a size option; tests and scripts take it from here)
from sentei.output_paths import check_output, os_error_text  # noqa: F401  (check_output: ditto)

COMMAND_MODULES = (
    "sentei.host.commands.models",
    "sentei.host.commands.demo",
    "sentei.host.commands.bench",
    "sentei.training.commands",
    "sentei.overlay.commands",
)


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors (no usage block); subparsers inherit it."""

    def error(self, message: str):
        text = " ".join(str(message).split())
        self.exit(2, f"sentei: error: {text} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from sentei import __version__

    parser = _Parser(
        prog="sentei",
        description="Filter-wise sparse CNN segmentation for PYNQ FPGAs: "
        "train -> prune -> distil -> quantize -> model file -> accelerator (or its emulation).",
    )
    parser.add_argument("--version", action="version", version=f"sentei {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _subparser(parser, argv):
    """The deepest (sub)command parser that ``argv`` names (``sentei overlay csim ...``)."""
    for token in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if actions and token in actions[0].choices:
            parser = actions[0].choices[token]
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real descriptor (captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the (sub)command they follow, whose --help lists its options
        _subparser(parser, sys.argv[1:] if argv is None else argv).error(
            f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "func", None) is None:
        if args.command is None:
            parser.print_help()
            return 0
        print(f"sentei: error: `sentei {args.command}` needs a subcommand (see `sentei {args.command} --help`)",
              file=sys.stderr)
        return 2
    try:
        status = args.func(args)
    except SenteiError as exc:
        if args.debug:
            raise
        print(f"sentei: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        if args.debug:
            raise
        print(f"sentei: error: no such file: {exc.filename} (check the path)", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:
        if args.debug:
            raise
        if exc.filename is not None:  # a pipe of ours, not stdout
            print(f"sentei: error: {os_error_text(exc)}", file=sys.stderr)
            return 2
        # stdout's reader went away (`sentei perf | head -1`): stop quietly, as cat does
        _silence_stdout()
        return 141
    except OSError as exc:  # not a folder, no permission, disk full, ...
        if args.debug:
            raise
        print(f"sentei: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sentei: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
