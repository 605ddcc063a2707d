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
import errno
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


def check_output(path, option: str, inputs=(), folder: bool = False):
    """Check an output path before any work is done; returns it as a ``Path``.

    Refuses an empty path, a folder where a file is wanted (or a file where a folder is), a
    place that cannot be written (the nearest existing folder is not writable, or a file is
    in the way) and a path that is one of ``inputs`` (the output would replace what the
    command reads). A command that runs for minutes then finds it cannot write its result
    loses the run; this finds it first.
    """
    import os
    from pathlib import Path

    if path is None or str(path).strip() == "":
        raise SenteiError(f"{option}: empty path; pass a {'folder' if folder else 'file name'}")
    out = Path(path)  # as the command will write it: a shell expands ~, this does not
    if out.exists():
        if folder and not out.is_dir():
            raise SenteiError(f"{option} {path}: {_OS_ERROR_HINTS[errno.ENOTDIR]}")
        if not folder and out.is_dir():
            raise SenteiError(f"{option} {path}: {_OS_ERROR_HINTS[errno.EISDIR]}")
    for other in inputs:
        if other is None or str(other) == "":
            continue
        same = out.exists() and Path(other).exists() and os.path.samefile(out, other)
        if same or out.resolve() == Path(other).resolve():
            raise SenteiError(f"{option} {path} is also the input {other}; write to another path")
    if not folder and out.exists():
        import stat

        mode = os.stat(out).st_mode  # through links
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):  # written in place (host.format.atomic_write_bytes)
            if not os.access(out, os.W_OK):
                raise SenteiError(f"{option} {path}: {_OS_ERROR_HINTS[errno.EACCES]}")
            return out
        if not stat.S_ISREG(mode):
            raise SenteiError(f"{option} {path}: not a regular file, character device or FIFO; "
                              f"pass a file name")
    if not folder and out.is_symlink():  # the file the link names is what is replaced
        out_real = Path(os.path.realpath(out))
    else:
        out_real = out
    parent = out if folder and out.is_dir() else out_real.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SenteiError(f"{option} {path}: {parent}: {_OS_ERROR_HINTS[errno.ENOTDIR]}")
    try:  # create and remove a file there: permissions alone do not tell (root, read-only mounts, /sys)
        import tempfile

        with tempfile.TemporaryFile(dir=parent, prefix=".sentei-probe-"):
            pass
    except OSError as exc:
        raise SenteiError(f"{option} {path}: cannot write in {parent} ({exc.strerror or exc}); "
                          f"pass another path") from None
    return out


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors (no usage block); subparsers inherit it."""

    def error(self, message: str):
        text = " ".join(str(message).split())
        self.exit(2, f"sentei: error: {text} (see `{self.prog} --help`)\n")


_OS_ERROR_HINTS = {
    errno.EEXIST: "a file is where a folder is needed (pass another path, or move the file)",
    errno.ENOTDIR: "a file is where a folder is needed (pass another path, or move the file)",
    errno.EISDIR: "a folder is where a file is needed (pass a file name)",
    errno.EACCES: "permission denied (pass a path you may read or write)",
    errno.EPERM: "operation not permitted (pass a path you may read or write)",
    errno.ENOSPC: "no space left on the device (free some space or write elsewhere)",
    errno.EROFS: "read-only file system (write elsewhere)",
}


def os_error_text(exc: OSError) -> str:
    """One line for an OS error on a path: the path, what is wrong, what to do."""
    where = exc.filename if exc.filename is not None else "a file"
    hint = _OS_ERROR_HINTS.get(exc.errno) or f"{exc.strerror or exc.__class__.__name__} (check the path)"
    return f"{where}: {hint}"


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
