"""What every power source is: :class:`PowerSource` (open, read watts per rail, the total, close) and
:class:`PowerUnavailable`; what the sources share (a sysfs number, the input rail or the sum, the platform)."""
from __future__ import annotations

import abc
import os
from pathlib import Path


class PowerUnavailable(Exception):
    """A source cannot be read here; the message says why (it ends up in the report)."""


def input_or_sum(rails: dict[str, float], inputs=(), empty: str = "no power rails in the reading"):
    """The first of the ``inputs`` rails present (the device's input), else the sum of all rails.

    Returns ``(watts, how)``, ``how`` naming the rail or ``sum(a+b+...)``; no rails at all
    raise :class:`PowerUnavailable` with ``empty``.
    """
    for name in inputs:
        if name in rails:
            return rails[name], name
    if not rails:
        raise PowerUnavailable(empty)
    return sum(rails.values()), "sum(" + "+".join(sorted(rails)) + ")"


def _read_number(path) -> float:
    with open(path) as fh:
        return float(fh.read().split()[0])


class PowerSource(abc.ABC):
    """Base of the power sources: ``read()`` returns ``{rail: watts}``; ``total()`` picks the device figure."""

    name = "none"
    description = ""
    interval_s = 0.1  # how often the sampler reads

    def open(self) -> None:
        """Start whatever the source needs (a subprocess, a library handle)."""

    def begin(self) -> None:
        """A new series of readings starts (:meth:`PowerSampler.start`): an energy counter is primed
        afresh, so its first difference does not span the time since the previous series."""

    @abc.abstractmethod
    def read(self) -> dict[str, float] | None:
        """One reading: rail name -> watts, or None when nothing could be read this time."""

    def device_info(self) -> dict:
        """What the source knows about the measured device (name, clocks); empty by default."""
        return {}

    def total(self, rails: dict[str, float]) -> tuple[float, str]:
        """Device power from one reading, and the rail (or sum) it came from."""
        return input_or_sum(rails)

    def close(self) -> None:
        """Release what :meth:`open` took."""


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T) module."""
    return os.path.exists("/etc/nv_tegra_release") or "tegra" in _device_tree_compatible()


def is_zynq() -> bool:
    """True on a Xilinx Zynq / Zynq UltraScale+ board."""
    return "xlnx" in _device_tree_compatible()


def _device_tree_compatible() -> str:
    try:
        return Path("/proc/device-tree/compatible").read_bytes().decode("ascii", "replace").lower()
    except OSError:
        return ""
