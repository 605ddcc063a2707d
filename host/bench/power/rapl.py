"""The ``rapl`` power source: x86 RAPL energy counters (``/sys/class/powercap``), differenced."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sentei.host.bench.power.base import PowerSource, PowerUnavailable, _read_number


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two RAPL ``energy_uj`` readings, across one counter wraparound.

    The counter runs from 0 to ``max_energy_range_uj`` and then restarts at 0.
    """
    if after >= before:
        return after - before
    return max_range_uj - before + after + 1


@dataclass
class RaplZone:
    """One top-level RAPL zone (a CPU package) and its counter range."""

    name: str
    energy_file: str
    max_range_uj: int


def find_rapl(powercap_root: str | os.PathLike = "/sys/class/powercap") -> list[RaplZone]:
    """Top-level RAPL package zones (``intel-rapl:N``; subzones ``intel-rapl:N:M`` are parts of them).

    Raises
    ------
    PowerUnavailable
        With the reason when there are no zones or ``energy_uj`` is not readable
        (Linux >= 5.10 makes it root-only, CVE-2020-8694).
    """
    root = Path(powercap_root)
    if not root.is_dir():
        raise PowerUnavailable(f"RAPL: {root} does not exist (no powercap driver: not x86, "
                               f"a virtual machine, or intel_rapl not loaded)")
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        energy = zone / "energy_uj"
        try:
            _read_number(energy)
        except PermissionError:
            raise PowerUnavailable(f"RAPL: {energy} is readable by root only (Linux >= 5.10); "
                                   f"run as root or `chmod o+r` it") from None
        except OSError as exc:
            raise PowerUnavailable(f"RAPL: cannot read {energy} ({exc.strerror})") from None
        name = (zone / "name").read_text().strip() if (zone / "name").exists() else zone.name
        zones.append(RaplZone(name, str(energy), int(_read_number(zone / "max_energy_range_uj"))))
    if not zones:
        raise PowerUnavailable(f"RAPL: no intel-rapl:N zone under {root}")
    return zones


class RaplSource(PowerSource):
    """x86 CPU package power from RAPL energy counters, differenced between readings."""

    name = "rapl"
    description = "x86 RAPL package energy (powercap sysfs)"
    interval_s = 0.1

    def __init__(self, powercap_root="/sys/class/powercap", clock=time.perf_counter):
        self.root = powercap_root
        self.zones: list[RaplZone] = []
        self._clock = clock
        self._last = None

    def open(self):
        self.zones = find_rapl(self.root)
        self.begin()

    def begin(self):
        self._last = None

    def read(self):
        now = self._clock()
        energies = [int(_read_number(z.energy_file)) for z in self.zones]
        last, self._last = self._last, (now, energies)
        if last is None or now <= last[0]:
            return None
        dt = now - last[0]
        return {z.name: rapl_delta_uj(e0, e1, z.max_range_uj) / 1e6 / dt
                for z, e0, e1 in zip(self.zones, last[1], energies)}
