"""Writing a file so that a reader sees the old one or the whole new one, and JSON reports.

The one writer every output of sentei goes through (model files, PNGs, reports, generated
sources): :func:`atomic_write_bytes`, and :func:`write_json` on top of it with one
behaviour for every JSON file the package writes -- indent 2, a final newline, and NaN or an
infinity written as ``null`` (strict JSON: other readers refuse ``NaN``). It sits at the
bottom of the package (numpy and the standard library only) so that the model file, the
runtime, training and the commands all write the same way.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from sentei.errors import SenteiError


def _write_target(path: Path) -> tuple[str, Path]:
    """Where and how :func:`atomic_write_bytes` writes ``path``: ``("replace", file)`` or ``("inplace", path)``.

    A regular file (or a new name) is replaced by a rename -- through a symbolic link, the
    file the link names, so the link stays a link. A character device (``/dev/null``,
    ``/dev/full``, a terminal) and a FIFO are written in place, as ``cat > path`` would, and
    so is anything reached through ``/dev`` or ``/proc`` (``/dev/stdout`` redirected to a
    file: the shell's file, not a new one). Anything else (a block device, a socket) is
    refused with one line.
    """
    import stat as _stat

    try:
        st = os.stat(path)  # follows links
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    if st is None:
        # a new name, or a link to a name that does not exist yet: create what the link names
        return "replace", Path(os.path.realpath(path)) if os.path.islink(path) else path
    if _stat.S_ISCHR(st.st_mode) or _stat.S_ISFIFO(st.st_mode):
        return "inplace", path
    if _stat.S_ISREG(st.st_mode):
        real = Path(os.path.realpath(path))
        through_special = any(str(p).startswith(("/dev/", "/proc/")) for p in (Path(os.path.abspath(path)), real))
        if through_special or not real.exists():
            return "inplace", path
        return "replace", real
    if _stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    kind = "a block device" if _stat.S_ISBLK(st.st_mode) else "a socket" if _stat.S_ISSOCK(st.st_mode) else "not a regular file"
    raise SenteiError(f"{path} is {kind}; sentei writes only regular files, character devices "
                      f"and FIFOs (pass a file name)")


def _write_in_place(path: Path, data: bytes) -> None:
    import fcntl

    flags = os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == 6:  # ENXIO: a FIFO with no reader -- opening it blocking would hang
            raise SenteiError(f"{path} is a FIFO with no reader; start the reader first or "
                              f"pass a file name") from None
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one.

    A regular file is written to a hidden temporary name beside it and renamed over it (a
    symbolic link is followed: the file it names is replaced, the link kept). A character
    device or a FIFO is written in place -- a rename would put a plain file where the device
    node was; a FIFO nobody reads and any other kind of file are refused with one line.
    """
    path = Path(path)
    how, target = _write_target(path)
    if how == "inplace":
        _write_in_place(path, data)
        return path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the path asked for, not the hidden temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        # mkstemp makes the file 0600: give it the mode the file it replaces had, else rw-r--r--
        os.fchmod(fd, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp, str(path), str(target)):  # disk full: name it
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    return path


def json_text(obj) -> str:
    """``obj`` as the package writes JSON: indent 2, a final newline, non-finite floats as null."""
    return json.dumps(finite(obj), indent=2, allow_nan=False) + "\n"


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON (:func:`json_text`) to ``path``, atomically; returns the path."""
    return atomic_write_bytes(path, json_text(obj).encode("utf-8"))


def finite(obj):
    """``obj`` with every non-finite float (numpy's too) replaced by None: JSON has no NaN."""
    if isinstance(obj, float):  # numpy.float64 is a float
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj
