"""Output paths checked before a command does any work, and OS errors on paths as one line.

A command that runs for minutes and then finds it cannot write its result loses the run:
:func:`check_output` refuses such a path first. :func:`os_error_text` is how the command
line words an OS error on a path (missing, not a folder, no permission, disk full). Both sit
low in the package (standard library only) so that every command, whatever its layer,
checks its outputs the same way without importing the console script.
"""
from __future__ import annotations

import errno

from sentei.errors import SenteiError


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
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):  # written in place (sentei.atomic_write.atomic_write_bytes)
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


def check_json_out(args, *inputs) -> None:
    """``--json`` (when given, even empty) checked before the work: :func:`check_output`."""
    if args.json_out is not None:
        check_output(args.json_out, "--json", inputs=inputs)


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
