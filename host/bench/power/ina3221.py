"""The ``ina3221`` power source: a Jetson's INA3221 rails in sysfs (hwmon on L4T >= 34, iio before)."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sentei.host.bench.power.base import PowerSource, PowerUnavailable, _read_number
from sentei.host.bench.power.tegrastats import jetson_total


@dataclass
class Ina3221Channel:
    """One INA3221 channel: its label and the sysfs files to read."""

    label: str
    power_mw: str | None = None  # iio layout (L4T <= 32): in_powerN_input, mW
    volt_mv: str | None = None  # hwmon layout (L4T >= 34): inN_input, mV
    curr_ma: str | None = None  # hwmon layout: currN_input, mA

    def watts(self) -> float:
        """Read the channel now."""
        if self.power_mw is not None:
            return _read_number(self.power_mw) / 1000.0
        return _read_number(self.volt_mv) * _read_number(self.curr_ma) / 1e6


def find_ina3221(sys_root: str | os.PathLike = "/sys") -> list[Ina3221Channel]:
    """INA3221 channels under a sysfs tree, in both layouts L4T has used.

    * L4T >= 34 (JetPack 5, 6): the mainline ``ina3221`` hwmon driver,
      ``bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmonN/in{1,2,3}_label`` with
      ``inK_input`` (mV) and ``currK_input`` (mA); channels labelled ``NC`` are not
      connected, and ``in7`` is the sum of shunt voltages, not a rail.
    * L4T <= 32 (JetPack 4): NVIDIA's ``ina3221x`` iio driver,
      ``bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:deviceN/rail_name_K`` with
      ``in_powerK_input`` (mW).
    """
    root = Path(sys_root)
    channels: list[Ina3221Channel] = []
    seen = set()
    hwmons = sorted(glob.glob(str(root / "bus/i2c/drivers/ina3221/*/hwmon/hwmon*")))
    for hw in hwmons:
        for label_file in sorted(glob.glob(os.path.join(hw, "in*_label"))):
            k = re.fullmatch(r"in(\d+)_label", os.path.basename(label_file))
            if not k or not 1 <= int(k.group(1)) <= 3:
                continue
            n = k.group(1)
            label = Path(label_file).read_text().strip()
            volt, curr = os.path.join(hw, f"in{n}_input"), os.path.join(hw, f"curr{n}_input")
            if label.upper().startswith("NC") or not (os.path.exists(volt) and os.path.exists(curr)):
                continue
            if label not in seen:
                seen.add(label)
                channels.append(Ina3221Channel(label, volt_mv=volt, curr_ma=curr))
    for dev in sorted(glob.glob(str(root / "bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for name_file in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            n = name_file.rsplit("_", 1)[1]
            label = Path(name_file).read_text().strip()
            power = os.path.join(dev, f"in_power{n}_input")
            if os.path.exists(power) and label not in seen:
                seen.add(label)
                channels.append(Ina3221Channel(label, power_mw=power))
    return channels


class Ina3221Source(PowerSource):
    """Jetson INA3221 rails read from sysfs (no subprocess, ~10 Hz)."""

    name = "ina3221"
    description = "Jetson INA3221 sysfs rails"
    interval_s = 0.1

    def __init__(self, sys_root="/sys"):
        self.sys_root = sys_root
        self.channels: list[Ina3221Channel] = []

    def open(self):
        self.channels = find_ina3221(self.sys_root)
        if not self.channels:
            raise PowerUnavailable(f"ina3221: no INA3221 rails under {self.sys_root}/bus/i2c/drivers "
                                   f"(not a Jetson, or the driver is not bound)")
        try:
            self.read()
        except PermissionError as exc:
            raise PowerUnavailable(f"ina3221: {exc.filename} is not readable (run as root)") from None

    def read(self):
        return {ch.label: ch.watts() for ch in self.channels}

    def total(self, rails):
        return jetson_total(rails)
