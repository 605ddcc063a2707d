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

One module per source: :mod:`.pynq_pmbus` (``pynq``), :mod:`.ina3221`, :mod:`.tegrastats`,
:mod:`.nvml`, :mod:`.rapl`; what they share in :mod:`.base` (:class:`PowerSource`, the platform
probes); which one a run uses in :mod:`.choose` (``--power auto``); the background sampler and the
report's power block in :mod:`.sampler`. The names below are this package's API (``from
sentei.host.bench import power``); a test that replaces a function replaces it in the module that
calls it.
"""
from __future__ import annotations

from sentei.host.bench.power.base import PowerSource, PowerUnavailable, input_or_sum, is_jetson, is_zynq
from sentei.host.bench.power.pynq_pmbus import (
    PYNQ_INPUT_RAILS, PYNQ_SUM, PynqSource, pynq_rails, pynq_sensor_watts, pynq_total)
from sentei.host.bench.power.ina3221 import Ina3221Channel, Ina3221Source, find_ina3221
from sentei.host.bench.power.tegrastats import (
    AGX_ORIN_MODULE_RAILS, AGX_ORIN_NOTE, JETSON_INPUT_RAILS, TegrastatsSource, jetson_total,
    parse_tegrastats)
from sentei.host.bench.power.nvml import (
    NVML_ENERGY, NVML_POWER, NVML_WHOLE_GPU, NvmlSource, nvml_device, torch_gpu)
from sentei.host.bench.power.rapl import RaplSource, RaplZone, find_rapl, rapl_delta_uj
from sentei.host.bench.power.choose import SOURCES, auto_candidates, make_source, open_source
from sentei.host.bench.power.sampler import (
    PowerSampler, PowerTrace, STUCK_READINGS, measure_idle, summarize, summarize_rounds)
