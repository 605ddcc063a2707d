"""What the ``sentei bench`` timing loop needs from an engine: :class:`BenchEngine`.

Every benchmarked engine subclasses it: the Segmenter backends in :mod:`sentei.host.bench.backends`
and the PyTorch baselines that :mod:`sentei.training.torch_engines` registers from the
training side (:mod:`sentei.host.engine_registry`). It sits below both, with the host's
memory high-water marks it reports, so that neither side imports the other.
"""
from __future__ import annotations

import abc
import sys
from pathlib import Path

import numpy as np


class BenchEngine(abc.ABC):
    """What the timing loop needs from an engine."""

    backend = ""
    device = "cpu"  # cpu | cuda | fpga: which power source `auto` looks for

    @property
    def power_target(self) -> str:
        """The device power is read for (``cuda:1`` where a GPU index matters)."""
        return self.device
    precision = "int8"

    @abc.abstractmethod
    def infer(self, frame: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Labels of one frame, and the accelerator-only seconds when the engine can tell them."""

    _rss_scope = "process"  # "run" once reset_peak_memory could reset the host's high-water mark

    def reset_peak_memory(self) -> None:
        """Forget the memory high-water marks: the host's (Linux: VmHWM), the device's in subclasses."""
        self._rss_scope = "run" if _reset_host_peak_rss() else "process"

    def peak_memory_mb(self) -> dict:
        """Memory high-water marks in MiB, and whether the host's is this run's or the whole process's."""
        peak = _host_peak_rss_since_reset_mb() if self._rss_scope == "run" else None
        if peak is None:
            return {"host_rss_peak_mb": _host_peak_rss_mb(), "host_rss_peak_scope": "process"}
        return {"host_rss_peak_mb": peak, "host_rss_peak_scope": "run"}

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def _host_peak_rss_mb() -> float | None:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
    except (ImportError, OSError):
        return None


def _reset_host_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux: ``5`` into /proc/self/clear_refs resets
    VmHWM); False where that cannot be done (another OS, an old kernel, a locked-down /proc)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _host_peak_rss_since_reset_mb() -> float | None:
    """VmHWM of /proc/self/status in MiB: the peak RSS since :func:`_reset_host_peak_rss`."""
    for line in (read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def read_text(path: str) -> str | None:
    """A small system file's text (``/proc``, ``/sys``), stripped; None where it cannot be read."""
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None
