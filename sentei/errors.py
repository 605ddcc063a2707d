"""The one error type the package raises for bad input.

Every message is one line that names what is wrong and what to do about it; the command
line prints it without a traceback (unless ``--debug``) and exits with status 2.
"""


class SenteiError(Exception):
    """Bad input or a failed precondition, with a one-line message naming the fix."""


class ModelFormatError(SenteiError):
    """A model file is malformed; the message names the offending field."""


class HardwareTimeoutError(SenteiError):
    """The accelerator (real or emulated) did not signal done within its timeout."""
