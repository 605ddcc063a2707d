"""The ``pynq`` power source: PMBus rails of a Zynq UltraScale+ board through ``pynq.get_rails``."""
from __future__ import annotations

import re
import sys

from sentei.host.bench.power.base import PowerSource, PowerUnavailable, input_or_sum

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
