"""The ``sentei`` console script: one command, subcommands registered by each half.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its
subcommands and sets ``func`` (called with the parsed arguments, returns an exit status).
Registration imports nothing heavy: torch, OpenCV and pynq are imported by the handlers,
so ``sentei --help`` works on a plain install.

Errors: a :class:`~sentei.errors.SenteiError` (and a few well-understood OS errors) is
printed as one line ``sentei: error: ...`` with exit status 2; ``--debug`` shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from sentei.errors import SenteiError

COMMAND_MODULES = (
    "sentei.host.commands",
    "sentei.host.live",
    "sentei.host.bench",
    "sentei.training.commands",
    "sentei.overlay.commands",
    "sentei.overlay.perf",
)


def build_parser() -> argparse.ArgumentParser:
    from sentei import __version__

    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
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
    except KeyboardInterrupt:
        print("sentei: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
