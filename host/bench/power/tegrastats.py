"""The ``tegrastats`` power source: a Jetson's ``tegrastats`` output (any L4T), and the Jetson total."""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time

from sentei.host.bench.power.base import PowerSource, PowerUnavailable, input_or_sum

JETSON_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # whole-module input, when the module has one
# Jetson AGX Orin has no input rail. NVIDIA's Jetson Linux Developer Guide (r35/r36, "Jetson Orin
# Nano Series, Jetson Orin NX Series and Jetson AGX Orin Series", Software-Based Power Consumption
# Modeling) describes its INA3221 rails: VDD_GPU_SOC and VDD_CPU_CV (1-0040 ch 1, 2), VIN_SYS_5V0
# (1-0040 ch 3), and VDDQ_VDD2_1V8AO (1-0041 ch 2), of which it says "VDDQ_VDD2_1V8AO power is
# also included in VIN_SYS_5V0 power". The module's figure is the sum of the first three; adding
# the fourth would count the DDR rail twice (some L4T releases' tegrastats print it, some do not).
AGX_ORIN_MODULE_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
AGX_ORIN_NOTE = "AGX Orin module rails; VDDQ_VDD2_1V8AO is within VIN_SYS_5V0 (NVIDIA Jetson Linux guide)"
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
