"""Power measurement for ``sentei bench``: sources, their parsers, and a background sampler.

Every platform reads power differently; each source here turns its platform's readings
into watts per named rail, and names the one rail (or sum) that stands for the whole
device:

=============  ==========================================================  =================
source         what it reads                                               total
=============  ==========================================================  =================
``pynq``       PMBus rails of a Zynq UltraScale+ board (``pynq.get_rails``)  ``12V`` board input
``ina3221``    Jetson INA3221 sysfs rails (hwmon on L4T >= 34, iio before)   ``VDD_IN`` / ``POM_5V_IN``
``tegrastats`` Jetson ``tegrastats`` output (any L4T)                        ``VDD_IN`` / ``POM_5V_IN``
``nvml``       NVIDIA GPU board power (``nvmlDeviceGetPowerUsage``)          the GPU board
``rapl``       x86 RAPL energy counters (``/sys/class/powercap``)            CPU packages
=============  ==========================================================  =================

Where a device has no input rail (Jetson AGX Xavier and AGX Orin report module rails
only) the total is the sum of the rails, and the report says so. Where nothing can be
read, the result is ``none`` with the reason -- never a made-up figure.

The parsers are pure functions tested on recorded outputs (tests/host/fixtures). The
sampler polls a source in a daemon thread with a stop event and a bounded join; energy
counters (RAPL) are differenced, so a sample is the mean power over its interval.
"""
from __future__ import annotations

import abc

import glob
import os
import re
import select
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sentei.errors import SenteiError

SOURCES = ("pynq", "ina3221", "tegrastats", "nvml", "rapl")
JETSON_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # whole-module input, when the module has one
PYNQ_INPUT_RAILS = ("12V", "VCC12", "12V_SW", "VCCPSINTFP")  # first found is the board input


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
    input; without one (AGX Xavier, AGX Orin) the rails are summed, which leaves out
    what the module's sensors do not cover.
    """
    return input_or_sum(rails, JETSON_INPUT_RAILS, "no power rails in the reading")


def pynq_total(rails: dict[str, float]) -> tuple[float, str]:
    """Whole-board power from PYNQ PMBus rail powers (watts) and the rail used."""
    return input_or_sum(rails, PYNQ_INPUT_RAILS, "pynq.get_rails() found no rail with a power sensor")


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


class PynqSource(PowerSource):
    """PMBus rails through ``pynq.get_rails()`` (ZCU104, ZCU102, Ultra96, RFSoC boards).

    Reads the rails' power sensors directly rather than through ``pynq.DataRecorder``,
    whose ``stop()`` joins its thread without a timeout and which needs pandas.
    """

    name = "pynq"
    description = "PYNQ PMBus rails (pynq.get_rails)"
    interval_s = 0.1

    def __init__(self, rails=None):
        self._rails = rails

    def open(self):
        if self._rails is None:
            try:
                import pynq
            except ImportError:
                raise PowerUnavailable("pynq: the pynq package is not installed (not a PYNQ board image)") from None
            self._rails = pynq.get_rails()
        self._rails = {name: r for name, r in self._rails.items() if getattr(r, "power", None) is not None}
        if not self._rails:
            raise PowerUnavailable("pynq: get_rails() found no rail with a power sensor "
                                   "(this board has no PMBus power telemetry, e.g. PYNQ-Z1/Z2)")

    def read(self):
        return {name: float(r.power.value) for name, r in self._rails.items()}

    def total(self, rails):
        return pynq_total(rails)


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


class NvmlSource(PowerSource):
    """NVIDIA GPU board power through NVML (``nvidia-ml-py``): ``nvmlDeviceGetPowerUsage`` in mW."""

    name = "nvml"
    description = "NVIDIA GPU board power (NVML)"
    interval_s = 0.05

    def __init__(self, index: int | str = 0, nvml=None):
        self.index = index  # NVML's index, or a GPU/MIG UUID (see nvml_device)
        self._nvml = nvml
        self._handle = None

    def open(self):
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
        try:
            if isinstance(self.index, str):
                self._handle = self._nvml.nvmlDeviceGetHandleByUUID(self.index)
            else:
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self.index)
            self._nvml.nvmlDeviceGetPowerUsage(self._handle)
        except Exception as exc:  # no such GPU, power not supported: NVML was initialised, shut it down
            self._handle = None
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            raise PowerUnavailable(f"nvml: {exc}") from None

    def read(self):
        return {"gpu": self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0}

    def total(self, rails):
        return rails["gpu"], "gpu board (nvmlDeviceGetPowerUsage)"

    def device_info(self) -> dict:
        """GPU name, driver, clocks and power limit where NVML gives them."""
        n, h, info = self._nvml, self._handle, {}
        for key, call in (("name", lambda: n.nvmlDeviceGetName(h)),
                          ("driver", lambda: n.nvmlSystemGetDriverVersion()),
                          ("sm_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                          ("mem_clock_mhz", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                          ("max_sm_clock_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
                          ("power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)):
            try:
                value = call()
                info[key] = value.decode() if isinstance(value, bytes) else value
            except Exception:
                continue
        return info

    def close(self):
        if self._nvml is not None and self._handle is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._handle = None


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
    """NVML's index (or UUID) of the GPU torch calls ``device`` (``cuda``, ``cuda:N``).

    torch numbers the GPUs that ``CUDA_VISIBLE_DEVICES`` leaves visible, NVML all of them:
    ``cuda:1`` under ``CUDA_VISIBLE_DEVICES=2,3`` is NVML's 3. (CUDA orders GPUs fastest
    first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, NVML by PCI bus; on a machine of mixed
    GPUs set that variable for the two to agree.)
    """
    environ = os.environ if environ is None else environ
    _, _, index = device.partition(":")
    n = int(index) if index.isdigit() else 0
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if n < len(visible):
        return int(visible[n]) if visible[n].isdigit() else visible[n]
    return n


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

    With no usable readings the entry is ``{"status": "none", "reason": ...}``.
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
    if run.error:
        out["warning"] = run.error
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
