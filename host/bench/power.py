"""Power measurement for ``sentei bench``: sources, their parsers, and a background sampler.

Every platform reads power differently; each source here turns its platform's readings
into watts per named rail, and names the one rail (or sum) that stands for the whole
device:

=============  ==========================================================  =================
source         what it reads                                               total
=============  ==========================================================  =================
``pynq``       PMBus rails of a Zynq UltraScale+ board (``pynq.get_rails``)  ``12V`` board input
                                                                           (ZCU104), else the sum
                                                                           of the SoC regulator
                                                                           rails, said so
``ina3221``    Jetson INA3221 sysfs rails (hwmon on L4T >= 34, iio before)   ``VDD_IN`` / ``POM_5V_IN``
``tegrastats`` Jetson ``tegrastats`` output (any L4T)                        ``VDD_IN`` / ``POM_5V_IN``
``nvml``       NVIDIA GPU board energy counter, differenced (Volta and      the GPU board
               newer; ``nvmlDeviceGetPowerUsage`` where there is none)
``rapl``       x86 RAPL energy counters (``/sys/class/powercap``)            CPU packages
=============  ==========================================================  =================

Where a device has no input rail (Jetson AGX Xavier and AGX Orin report module rails
only) the total is a sum of rails, the same rails for both Jetson sources, and the report
says which (:func:`jetson_total`). Where nothing can be read, the result is ``none`` with
the reason -- never a made-up figure.

The parsers are pure functions tested on recorded outputs (tests/host/fixtures). The
sampler polls a source in a daemon thread with a stop event and a bounded join; energy
counters (RAPL, NVML's) are differenced, so a sample is the mean power over its interval.
"""
from __future__ import annotations

import abc

import glob
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sentei.errors import SenteiError

SOURCES = ("pynq", "ina3221", "tegrastats", "nvml", "rapl")
JETSON_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # whole-module input, when the module has one
# Jetson AGX Orin has no input rail. NVIDIA's Jetson Linux Developer Guide (r35/r36, "Jetson Orin
# Nano Series, Jetson Orin NX Series and Jetson AGX Orin Series", Software-Based Power Consumption
# Modeling) describes its INA3221 rails: VDD_GPU_SOC and VDD_CPU_CV (1-0040 ch 1, 2), VIN_SYS_5V0
# (1-0040 ch 3), and VDDQ_VDD2_1V8AO (1-0041 ch 2), of which it says "VDDQ_VDD2_1V8AO power is
# also included in VIN_SYS_5V0 power". The module's figure is the sum of the first three; adding
# the fourth would count the DDR rail twice (some L4T releases' tegrastats print it, some do not).
AGX_ORIN_MODULE_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
AGX_ORIN_NOTE = "AGX Orin module rails; VDDQ_VDD2_1V8AO is within VIN_SYS_5V0 (NVIDIA Jetson Linux guide)"
# The board input rail, on the boards where pynq.get_rails() has one: ZCU104's 12V (Xilinx's
# zcu104_pmbus notebook). Ultra96-V2 has none: Avnet's sensors conf (Ultra96-PYNQ,
# packages/sensorconf-v2/ultra96.conf) labels "5V" the power1 of its IR38060 at 0x45, whose
# in1 is "VIN"; Linux's ir38064 driver (which binds "infineon,ir38060") gives that chip POUT and
# IOUT but no PIN, so "5V" is that buck's output, not the board's input. KV260: Kria-PYNQ's
# install.sh puts no sensors.d file (libsensors' default labels). VCCPSINTFP is the PS
# full-power core rail, not an input.
PYNQ_INPUT_RAILS = ("12V",)
PYNQ_SUM = "sum of the SoC regulator rails pynq reads (not the board input)"
# libsensors names a feature it has no label for by itself (power1, in2, curr3); pynq keys its
# rails by that label, so a same-named rail of another chip replaces the earlier one's sensor.
_DEFAULT_LABEL = re.compile(r"(in|curr|power)\d+")
STUCK_READINGS = 10  # a run with this many readings, all the same total, is flagged (summarize)


class PowerUnavailable(Exception):
    """A source cannot be read here; the message says why (it ends up in the report)."""


# ---------------------------------------------------------------------------------------
# parsers (pure functions, tested on recorded outputs)

# "VDD_IN 5299mW/5299mW" (L4T >= 34), "VDD_IN 4067/4067" and "POM_5V_IN 1022/1022" (mW
# implied, L4T 32), "GPU 0/0" (AGX Xavier); the current value comes first, then the average.
_TEGRA_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?![\w%])")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Rails of one ``tegrastats`` line: ``{name: instantaneous watts}``.

    Parameters
    ----------
    line : str
        One line as ``tegrastats`` prints it (any Jetson generation).

    Returns
    -------
    dict
        Rail name to watts (the first, instantaneous value of ``cur/avg``); empty when
        the line has no power fields (a module whose INA3221 is not enabled).
    """
    rails = {}
    for name, cur, _avg in _TEGRA_RAIL.findall(line):
        if name in ("RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"):
            continue
        rails[name] = int(cur) / 1000.0
    return rails


def jetson_total(rails: dict[str, float]) -> tuple[float, str]:
    """Whole-module power of Jetson rails and how it was obtained.

    ``VDD_IN`` (Xavier NX, Orin NX/Nano, TX1/TX2) or ``POM_5V_IN`` (Nano) is the module
    input. Without one the rails are summed, which leaves out what the module's sensors do
    not cover: on AGX Orin :data:`AGX_ORIN_MODULE_RAILS` (``VDDQ_VDD2_1V8AO``, which the
    INA3221 sysfs always has and tegrastats prints on some releases only, is part of
    ``VIN_SYS_5V0``), on AGX Xavier all six rails. Both Jetson sources total through here,
    so they agree on the same readings.
    """
    if not any(name in rails for name in JETSON_INPUT_RAILS) and all(r in rails for r in AGX_ORIN_MODULE_RAILS):
        watts, how = input_or_sum({r: rails[r] for r in AGX_ORIN_MODULE_RAILS})
        return watts, f"{how}: {AGX_ORIN_NOTE}"
    return input_or_sum(rails, JETSON_INPUT_RAILS, "no power rails in the reading")


def pynq_total(rails: dict[str, float]) -> tuple[float, str]:
    """Power from PYNQ PMBus rail powers (watts) and what it is.

    The board input where pynq reads one (:data:`PYNQ_INPUT_RAILS`); elsewhere the sum of
    the rails read, which are the SoC's regulators and never the whole board, and the
    label says so (and that default-labelled rails may hide one another, see
    :data:`_DEFAULT_LABEL`).
    """
    watts, how = input_or_sum(rails, PYNQ_INPUT_RAILS, "pynq.get_rails() found no rail with a power sensor")
    if how in PYNQ_INPUT_RAILS:
        return watts, how
    how = f"{PYNQ_SUM}: {how}"
    if any(_DEFAULT_LABEL.fullmatch(name) for name in rails):
        how += ("; rails with libsensors' default labels (no sensors.d config): pynq keeps one sensor per "
                "name, so same-named rails of other chips are not read")
    return watts, how


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


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two RAPL ``energy_uj`` readings, across one counter wraparound.

    The counter runs from 0 to ``max_energy_range_uj`` and then restarts at 0.
    """
    if after >= before:
        return after - before
    return max_range_uj - before + after + 1


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


def _read_number(path) -> float:
    with open(path) as fh:
        return float(fh.read().split()[0])


# ---------------------------------------------------------------------------------------
# sources: open() -> read() -> close(); read() returns {rail: watts} or None (priming)


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


_PYNQ_RAILS: dict | None = None  # pynq.get_rails(), once per process (see pynq_rails)


def pynq_rails() -> dict:
    """``pynq.get_rails()``, called once per process and kept.

    Each call runs libsensors' ``sensors_init`` again, which (libsensors 3, lib/init.c) reads
    the chips into its lists without ``sensors_cleanup`` first: the earlier state leaks, and
    the Sensor objects of earlier calls point into lists that grow under them. A bench opens
    the source for the idle reading and for every round.

    Raises
    ------
    PowerUnavailable
        Without pynq, or when pynq could not load libsensors (``pynq.pmbus._lib`` is None:
        ``get_rails()`` then returns ``{}``, which is not "no telemetry on this board").
    """
    global _PYNQ_RAILS
    if _PYNQ_RAILS is None:
        try:
            import pynq
        except ImportError:
            raise PowerUnavailable("pynq: the pynq package is not installed (not a PYNQ board image)") from None
        pmbus = getattr(pynq, "pmbus", None)
        if pmbus is not None and getattr(pmbus, "_lib", False) is None:
            raise PowerUnavailable("pynq could not load libsensors (apt install libsensors-dev): "
                                   "pynq.pmbus._lib is None, so get_rails() finds no rail")
        _PYNQ_RAILS = dict(pynq.get_rails())
    return _PYNQ_RAILS


def pynq_sensor_watts(rail: str, sensor) -> float:
    """Read a pynq power Sensor, refusing a failed read.

    pynq's ``Sensor.value`` calls libsensors' ``sensors_get_value(self._chip, self._number,
    self._value)``, ignores what it returns and gives ``self._value[0]``: the previous
    reading (0.0 before the first) when the I2C/PMBus read failed. Where that call can be
    reached (the ``_lib`` of the Sensor's module, and its ``_chip``, ``_number``, ``_value``)
    it is made here and a negative return (``-SENSORS_ERR_*``) raises; other sensors
    (pynq's sysfs and derived ones, stand-ins) are read through ``.value``.
    """
    lib = getattr(sys.modules.get(type(sensor).__module__), "_lib", None)
    parts = [getattr(sensor, a, None) for a in ("_chip", "_number", "_value")]
    if lib is None or not hasattr(lib, "sensors_get_value") or any(p is None for p in parts):
        return float(sensor.value)
    rc = lib.sensors_get_value(*parts)
    if rc < 0:
        raise PowerUnavailable(f"pynq: reading rail {rail}'s power failed (libsensors sensors_get_value "
                               f"returned {rc}; pynq's Sensor.value would have given its last value)")
    return float(parts[2][0])


class PynqSource(PowerSource):
    """PMBus rails through ``pynq.get_rails()`` (ZCU104, ZCU102, Ultra96, RFSoC boards).

    Reads the rails' power sensors directly rather than through ``pynq.DataRecorder``,
    whose ``stop()`` joins its thread without a timeout and which needs pandas; each read
    is checked (:func:`pynq_sensor_watts`), and a total of exactly 0.0 W is refused. The
    rails come from :func:`pynq_rails` (one ``get_rails()`` per process).
    """

    name = "pynq"
    description = "PYNQ PMBus rails (pynq.get_rails)"
    interval_s = 0.1

    def __init__(self, rails=None):
        self._rails = rails

    def open(self):
        rails = pynq_rails() if self._rails is None else self._rails
        self._rails = {name: r for name, r in rails.items() if getattr(r, "power", None) is not None}
        if not self._rails:
            raise PowerUnavailable("pynq: get_rails() found no rail with a power sensor "
                                   "(this board has no PMBus power telemetry, e.g. PYNQ-Z1/Z2)")
        self.total(self.read())  # a sensor that cannot be read says so now, not as a run's "measured" 0 W

    def read(self):
        return {name: pynq_sensor_watts(name, r.power) for name, r in self._rails.items()}

    def total(self, rails):
        watts, how = pynq_total(rails)
        if watts == 0.0:
            raise PowerUnavailable(f"pynq: {how} reads exactly 0.0 W: a failed sensor read (pynq's Sensor.value "
                                   f"ignores libsensors' error and returns its last value, 0.0 before the first)")
        return watts, how


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


class TegrastatsSource(PowerSource):
    """Jetson rails from a ``tegrastats --interval`` subprocess, one line per reading."""

    name = "tegrastats"
    description = "Jetson tegrastats rails"
    interval_s = 0.0  # read() blocks until the next line

    def __init__(self, interval_ms: int = 100, command: str | None = None, timeout_s: float | None = None):
        self.interval_ms = interval_ms
        self.command = command or shutil.which("tegrastats")
        # a line is due every interval; a stalled or silent tegrastats must not hang the run
        self.timeout_s = max(2.0, 10 * interval_ms / 1000) if timeout_s is None else timeout_s
        self._proc = None
        self._buf = b""

    def open(self):
        if not self.command:
            raise PowerUnavailable("tegrastats: not on PATH (not a Jetson)")
        try:
            self._proc = subprocess.Popen([self.command, "--interval", str(self.interval_ms)], bufsize=0,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise PowerUnavailable(f"tegrastats: cannot start {self.command} ({exc.strerror})") from None
        self._buf = b""
        try:
            first = self.read()
        except PowerUnavailable:
            self.close()
            raise
        if not first:
            self.close()
            raise PowerUnavailable("tegrastats: its output has no power rails on this module")

    def read(self):
        return parse_tegrastats(self._next_line()) or None

    def _next_line(self) -> str:
        """The next line tegrastats prints, waiting at most ``timeout_s`` for it.

        Read from the pipe's descriptor (not a buffered file, whose readline cannot time out);
        a process that stalls or exits raises, which ends the sampler with the reason.
        """
        if self._proc is None:
            raise PowerUnavailable("tegrastats: not started")
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PowerUnavailable(f"tegrastats: no output within {self.timeout_s:g} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise PowerUnavailable(f"tegrastats: the process exited (status {self._proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def total(self, rails):
        return jetson_total(rails)

    def close(self):
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=2)
            self._proc.stdout.close()
            self._proc = None


NVML_ENERGY = "gpu board (nvmlDeviceGetTotalEnergyConsumption, differenced)"
NVML_POWER = "gpu board (nvmlDeviceGetPowerUsage: averaged over 1 s on Ampere and newer)"
NVML_WHOLE_GPU = "the whole GPU's power, not the MIG instance's (NVML has none of its own)"
_PCI_BUS_ID = re.compile(r"(?:[0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")
_MIG_LEGACY = re.compile(r"MIG-(GPU-[0-9A-Fa-f-]+)/\d+/\d+")  # CUDA 11.0-11.3: parent GPU/instance/compute


class NvmlSource(PowerSource):
    """NVIDIA GPU board power through NVML (``nvidia-ml-py``).

    Where the GPU has an energy counter (``nvmlDeviceGetTotalEnergyConsumption``: millijoules
    since the driver loaded, Volta and newer) it is differenced between readings like RAPL's:
    a reading is the mean power over its interval, and the first one only primes the counter.
    Where the counter raises (older GPUs, some virtual GPUs), ``nvmlDeviceGetPowerUsage`` (mW),
    which NVML documents as averaged over 1 s on Ampere (except GA100) and newer: a run's
    first second then counts idle power in. The total's label says which was read.

    ``index`` is what :func:`nvml_device` gives: NVML's index, a GPU or MIG UUID (or the start
    of one, as ``CUDA_VISIBLE_DEVICES`` allows), or a PCI bus id. NVML reads no power of a MIG
    instance: its parent GPU is read, and the label says the figure is the whole GPU's.

    Each reading also records the SM clock, so :meth:`device_info` gives the clock the run
    ran at (the median over the latest series of readings, since :meth:`begin`), not the idle
    one after it.
    """

    name = "nvml"
    description = "NVIDIA GPU board power (NVML)"
    interval_s = 0.1

    def __init__(self, index: int | str = 0, nvml=None, clock=time.perf_counter):
        self.index = index
        self._nvml = nvml
        self._clock = clock
        self._handle = None
        self.whole_gpu = False  # the run is on a MIG instance (or a GPU in MIG mode): its parent is read
        self.total_from = ""
        self._energy = False
        self._last = None
        self._sm_clocks: list[float] = []

    def open(self):
        if self._handle is not None:
            self.close()
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                raise PowerUnavailable("nvml: nvidia-ml-py is not installed (pip install 'sentei[bench]')") from None
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # NVMLError subclasses: no driver, no GPU
            raise PowerUnavailable(f"nvml: {exc}") from None
        self.whole_gpu = False
        try:  # from here on NVML is initialised: every failure shuts it down again
            self._handle = self._find_handle()
            self.total_from = self._pick_method()
        except Exception as exc:  # no such GPU, no power reading
            self._handle = None
            self._shutdown()
            raise (exc if isinstance(exc, PowerUnavailable) else PowerUnavailable(f"nvml: {exc}")) from None
        if self.whole_gpu:
            self.total_from += "; " + NVML_WHOLE_GPU
        self.description = f"NVIDIA GPU board power (NVML): {self.total_from}"
        self.begin()

    def begin(self):
        self._last, self._sm_clocks = None, []

    def _find_handle(self):
        """The handle of the GPU ``index`` names; a MIG instance's parent GPU."""
        n, ident = self._nvml, self.index
        if isinstance(ident, int):
            handle = n.nvmlDeviceGetHandleByIndex(ident)
        elif _PCI_BUS_ID.fullmatch(ident):
            handle = n.nvmlDeviceGetHandleByPciBusId(ident)
        else:
            handle = self._by_uuid(ident)
        try:
            mig_instance = bool(n.nvmlDeviceIsMigDeviceHandle(handle))
        except Exception:  # an older driver or nvidia-ml-py: no MIG
            mig_instance = False
        if mig_instance:
            self.whole_gpu = True
            return n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        try:  # a GPU in MIG mode shares its power among its instances
            mig_mode = n.nvmlDeviceGetMigMode(handle)[0] == getattr(n, "NVML_DEVICE_MIG_ENABLE", 1)
            self.whole_gpu = self.whole_gpu or mig_mode
        except Exception:
            pass
        return handle

    def _by_uuid(self, ident: str):
        """A GPU or MIG instance by its UUID, or by the start of one (CUDA accepts prefixes, NVML not).

        A whole ``GPU-`` UUID that NVML does not know is tried as ``MIG-`` too (torch gives a
        MIG instance's UUID without its kind); the old ``MIG-GPU-<uuid>/<gi>/<ci>`` names the parent.
        """
        n = self._nvml
        legacy = _MIG_LEGACY.fullmatch(ident)
        if legacy:
            self.whole_gpu, ident = True, legacy.group(1)
        tries = [ident] + (["MIG-" + ident[4:]] if ident.startswith("GPU-") and len(ident) == 40 else [])
        first = None
        for uuid in tries:
            try:
                return n.nvmlDeviceGetHandleByUUID(uuid)
            except Exception as exc:
                first = first or exc
        try:
            matches = [h for uuid, h in self._devices() if uuid.startswith(ident)]
        except Exception:
            matches = []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise PowerUnavailable(f"nvml: {ident} is the start of {len(matches)} UUIDs; give more of it")
        raise first

    def _devices(self) -> list:
        """``(UUID, handle)`` of every GPU NVML sees and of their MIG instances."""
        n, found = self._nvml, []
        for i in range(n.nvmlDeviceGetCount()):
            gpu = n.nvmlDeviceGetHandleByIndex(i)
            found.append((_text(n.nvmlDeviceGetUUID(gpu)), gpu))
            try:
                count = n.nvmlDeviceGetMaxMigDeviceCount(gpu)
            except Exception:  # no MIG here
                continue
            for k in range(count):
                try:
                    mig = n.nvmlDeviceGetMigDeviceHandleByIndex(gpu, k)
                    found.append((_text(n.nvmlDeviceGetUUID(mig)), mig))
                except Exception:  # an empty slot
                    continue
        return found

    def _pick_method(self) -> str:
        """The energy counter where the GPU has one, else the power reading; the total's label."""
        n, h = self._nvml, self._handle
        try:
            n.nvmlDeviceGetTotalEnergyConsumption(h)
            self._energy = True
            return NVML_ENERGY
        except Exception as exc:  # NVMLError_NotSupported (before Volta), a missing function
            no_counter = exc
        self._energy = False
        try:
            n.nvmlDeviceGetPowerUsage(h)
        except Exception as exc:
            raise PowerUnavailable(f"nvml: no energy counter ({no_counter}) and no power reading ({exc})") from None
        return f"{NVML_POWER}; no energy counter: {no_counter}"

    def read(self):
        n, h = self._nvml, self._handle
        try:
            self._sm_clocks.append(float(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)))
        except Exception:  # a clock NVML does not give is left out, the power still counts
            pass
        if not self._energy:
            return {"gpu": n.nvmlDeviceGetPowerUsage(h) / 1000.0}
        now, mj = self._clock(), n.nvmlDeviceGetTotalEnergyConsumption(h)
        last, self._last = self._last, (now, mj)
        if last is None or now <= last[0] or mj < last[1]:  # priming, or a counter that restarted
            return None
        return {"gpu": (mj - last[1]) / 1000.0 / (now - last[0])}

    def total(self, rails):
        return rails["gpu"], self.total_from

    def device_info(self) -> dict:
        """GPU name, UUID, driver, clocks and power limit where NVML gives them.

        ``sm_clock_mhz`` is the median of the SM clocks recorded at each reading of the latest
        series (``sm_clock_mhz_during_run: true``; read it before another sampler starts on
        this source), else the clock now.
        """
        n, h, info = self._nvml, self._handle, {}
        for key, call in (("name", lambda: n.nvmlDeviceGetName(h)),
                          ("uuid", lambda: n.nvmlDeviceGetUUID(h)),
                          ("driver", lambda: n.nvmlSystemGetDriverVersion()),
                          ("sm_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                          ("mem_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                          ("max_sm_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
                          ("power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)):
            try:
                info[key] = _text(call())
            except Exception:
                continue
        if self._sm_clocks:
            info["sm_clock_mhz"] = statistics.median(self._sm_clocks)
            info["sm_clock_readings"] = len(self._sm_clocks)
        info["sm_clock_mhz_during_run"] = bool(self._sm_clocks)
        if self.total_from:
            info["power_from"] = self.total_from
        return info

    def close(self):
        if self._handle is not None:
            self._handle = None
            self._shutdown()

    def _shutdown(self):
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def _text(value):
    """NVML's strings come as bytes from older nvidia-ml-py."""
    return value.decode() if isinstance(value, bytes) else value


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


def nvml_device(device: str, environ=None) -> int | str:
    """How NVML finds the GPU torch calls ``device`` (``cuda``, ``cuda:N``): index, UUID or PCI bus id.

    torch's own answer first, where torch is installed and sees a GPU: the UUID of
    ``torch.cuda.get_device_properties(N)`` (see :func:`torch_gpu`). That holds however CUDA
    numbers the GPUs (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while NVML's
    indices follow the PCI bus) and however ``CUDA_VISIBLE_DEVICES`` names them.

    Otherwise, and always with an explicit ``environ`` (torch read the process's own), the
    mapping through ``CUDA_VISIBLE_DEVICES``: torch numbers the GPUs it leaves visible, NVML
    all of them, so ``cuda:1`` under ``CUDA_VISIBLE_DEVICES=2,3`` is NVML's 3 -- right where
    CUDA's order is the PCI bus's; a UUID (or the start of one) there is passed on.
    """
    _, _, index = device.partition(":")
    n = int(index) if index.isdigit() else None
    if environ is None:
        found = torch_gpu(n)
        if found is not None:
            return found
        environ = os.environ
    n = n or 0
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if n < len(visible):
        return int(visible[n]) if visible[n].isdigit() else visible[n]
    return n


def torch_gpu(n: int | None = None) -> str | None:
    """NVML's name for torch's ``cuda:n`` (``None``: torch's current device), or None where torch gives none.

    ``torch.cuda.get_device_properties(n).uuid`` prints as 32 hex digits in 8-4-4-4-12 groups;
    NVML spells a GPU's ``GPU-<those>`` (a MIG instance's ``MIG-<those>``, which
    :class:`NvmlSource` tries next). A build without ``uuid`` but with ``pci_bus_id`` gives the
    PCI bus id in NVML's ``%08X:%02X:%02X.0``. Nothing without torch, without a GPU torch sees,
    or on ROCm.
    """
    try:
        import torch
    except ImportError:
        return None
    try:
        if getattr(torch.version, "hip", None) or not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(torch.cuda.current_device() if n is None else n)
    except Exception:  # no such device, a broken driver: the fallback decides
        return None
    uuid = str(getattr(props, "uuid", "") or "").lower()
    if re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", uuid) and uuid.strip("0-"):
        return "GPU-" + uuid
    bus = getattr(props, "pci_bus_id", None)
    if isinstance(bus, int):
        domain, slot = getattr(props, "pci_domain_id", 0) or 0, getattr(props, "pci_device_id", 0) or 0
        return "%08X:%02X:%02X.0" % (domain, bus, slot)
    return None


def make_source(name: str, device: str = "cpu") -> PowerSource:
    """The source called ``name`` (one of :data:`SOURCES`) for a run on ``device``, not yet opened."""
    classes = {"pynq": PynqSource, "ina3221": Ina3221Source, "tegrastats": TegrastatsSource,
               "nvml": NvmlSource, "rapl": RaplSource}
    if name not in classes:
        raise SenteiError(f"--power {name}: unknown source; choose auto, none, or one of {', '.join(SOURCES)}")
    if name == "nvml":
        return NvmlSource(index=nvml_device(device) if device.startswith("cuda") else 0)
    return classes[name]()


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


def auto_candidates(device: str) -> list[str]:
    """Sources to try, in order, for a run on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``fpga``)."""
    if is_zynq():
        return ["pynq"]
    if is_jetson():  # module power covers CPU and GPU alike
        return ["ina3221", "tegrastats"]
    if device.startswith("cuda"):
        return ["nvml"]
    return ["rapl"]


def open_source(choice: str, device: str) -> tuple[PowerSource | None, str]:
    """Open the source for ``--power choice``; returns ``(source, why_none)``.

    ``auto`` tries :func:`auto_candidates` and returns ``(None, reasons)`` when none can
    be read; an explicitly named source that cannot be read is an error.
    """
    if choice == "none":
        return None, "not requested (--power none)"
    names = auto_candidates(device) if choice == "auto" else [choice]
    reasons = []
    for name in names:
        source = make_source(name, device)
        try:
            source.open()
            return source, ""
        except PowerUnavailable as exc:
            reasons.append(str(exc))
        except Exception as exc:  # a driver or sensor library failing in its own way (OSError, NVMLError, ...)
            reasons.append(f"{name}: {exc.__class__.__name__}: {' '.join(str(exc).split())[:160]}")
            try:
                source.close()
            except Exception:
                pass
    if choice != "auto":
        raise SenteiError(f"--power {choice}: {reasons[0]}; use --power auto or none")
    return None, "; ".join(reasons)


# ---------------------------------------------------------------------------------------
# the sampler


@dataclass
class PowerTrace:
    """Readings of one source over one interval of time."""

    source: str
    times: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    rails: list[dict[str, float]] = field(default_factory=list)
    total_from: str = ""
    error: str = ""

    def mean_w(self) -> float | None:
        """Time-weighted mean of the total (plain mean for fewer than three readings)."""
        if not self.totals:
            return None
        if len(self.totals) < 3:
            return sum(self.totals) / len(self.totals)
        area = sum((self.times[i + 1] - self.times[i]) * (self.totals[i] + self.totals[i + 1]) / 2
                   for i in range(len(self.totals) - 1))
        span = self.times[-1] - self.times[0]
        return area / span if span > 0 else sum(self.totals) / len(self.totals)

    def rail_means(self) -> dict[str, float]:
        """Plain mean of each rail over the readings."""
        names = sorted({k for r in self.rails for k in r})
        return {k: sum(r[k] for r in self.rails if k in r) / sum(1 for r in self.rails if k in r) for k in names}


class PowerSampler:
    """Polls a :class:`PowerSource` in a daemon thread between :meth:`start` and :meth:`stop`.

    Parameters
    ----------
    source : PowerSource
        An opened source.
    interval_s : float, optional
        Time between readings; defaults to the source's own.
    """

    def __init__(self, source: PowerSource, interval_s: float | None = None):
        self.source = source
        self.interval_s = source.interval_s if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trace = PowerTrace(source.name)

    def start(self) -> "PowerSampler":
        """Begin sampling in the background (a fresh trace)."""
        if self._thread is not None:
            raise SenteiError("power sampler is already running")
        self.source.begin()
        self.trace = PowerTrace(self.source.name)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"sentei-power-{self.source.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                rails = self.source.read()
                if rails:
                    total, label = self.source.total(rails)
                    self.trace.times.append(time.perf_counter())
                    self.trace.totals.append(float(total))
                    self.trace.rails.append(rails)
                    self.trace.total_from = label
            except Exception as exc:  # a failing sensor ends sampling; the report says why
                self.trace.error = f"{self.source.name}: {exc.__class__.__name__}: {exc}"
                return
            if self.interval_s > 0:
                self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 5.0) -> PowerTrace:
        """Stop sampling and return the trace (the thread is given ``timeout_s`` to finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.trace.error = self.trace.error or f"{self.source.name}: sampler did not stop within {timeout_s} s"
            self._thread = None
        return self.trace


def measure_idle(source: PowerSource, seconds: float) -> PowerTrace:
    """Sample ``source`` for ``seconds`` with nothing running: the idle baseline."""
    sampler = PowerSampler(source).start()
    time.sleep(seconds)
    return sampler.stop()


def summarize(run: PowerTrace | None, idle: PowerTrace | None, frames: int, seconds: float,
              why_none: str = "") -> dict:
    """The report's ``power`` entry: mean W, J/frame, frames/J, and the dynamic part over idle.

    With no usable readings the entry is ``{"status": "none", "reason": ...}``. A ``warning``
    says when sampling ended early, and when :data:`STUCK_READINGS` or more readings of the
    total are all the same (a sensor that stopped updating, or a library repeating its last
    value, looks like that).
    """
    if run is None:
        return {"status": "none", "reason": why_none or "no power source"}
    mean = run.mean_w()
    if mean is None or len(run.totals) < 2:
        reason = run.error or (f"{run.source}: only {len(run.totals)} reading(s) during a {seconds:.2f} s run "
                               f"(run more frames)")
        return {"status": "none", "source": run.source, "reason": reason}
    out = {"status": "measured", "source": run.source, "total_from": run.total_from,
           "samples": len(run.totals), "rails_mean_w": run.rail_means()}
    warnings = [run.error] if run.error else []
    if len(run.totals) >= STUCK_READINGS and len(set(run.totals)) == 1:
        warnings.append(f"{run.source}: every reading identical ({len(run.totals)} x {run.totals[0]} W): "
                        f"a stuck sensor?")
    if warnings:
        out["warning"] = "; ".join(warnings)
    idle_mean = idle.mean_w() if idle is not None else None
    return dict(out, **_energy(mean, seconds, frames, idle_mean, len(idle.totals) if idle_mean is not None else 0))


def _energy(mean: float, seconds: float, frames: int, idle_w: float | None, idle_samples: int) -> dict:
    """Mean W, J/frame and frames/J of ``frames`` in ``seconds``, and over idle the dynamic part."""
    out = {"mean_w": mean, "energy_per_frame_j": mean * seconds / frames, "frames_per_j": frames / (mean * seconds)}
    if idle_w is not None:
        dyn = mean - idle_w
        out.update({"idle_w": idle_w, "idle_samples": idle_samples, "dynamic_w": dyn,
                    "dynamic_energy_per_frame_j": dyn * seconds / frames})
    return out


def summarize_rounds(rounds, idle: PowerTrace | None, why_none: str = "") -> dict:
    """:func:`summarize` of a run timed in rounds: ``[(trace, frames, seconds), ...]``.

    One round is :func:`summarize` itself. Several (``sentei bench --rounds``): each round's
    mean power times its duration is its energy; the run's mean is the energy over the
    summed time (not a mean across the gaps when another engine ran), per frame over the
    summed frames. A round without readings makes the whole run ``none``, with its reason.
    """
    if len(rounds) == 1:
        trace, frames, seconds = rounds[0]
        return summarize(trace, idle, frames, seconds, why_none)
    parts = [summarize(trace, idle, frames, seconds, why_none) for trace, frames, seconds in rounds]
    for part in parts:
        if part["status"] != "measured":
            return part
    seconds = sum(r[2] for r in rounds)
    frames = sum(r[1] for r in rounds)
    energy = sum(p["mean_w"] * r[2] for p, r in zip(parts, rounds))
    rails = sorted({k for p in parts for k in p["rails_mean_w"]})
    out = {"status": "measured", "source": parts[0]["source"], "total_from": parts[0]["total_from"],
           "samples": sum(p["samples"] for p in parts),
           "rails_mean_w": {k: sum(p["rails_mean_w"].get(k, 0.0) * r[2] for p, r in zip(parts, rounds)) / seconds
                            for k in rails},
           "rounds": len(rounds)}
    warnings = sorted({p["warning"] for p in parts if "warning" in p})
    if warnings:
        out["warning"] = "; ".join(warnings)
    return dict(out, **_energy(energy / seconds, seconds, frames, parts[0].get("idle_w"),
                               parts[0].get("idle_samples", 0)))
