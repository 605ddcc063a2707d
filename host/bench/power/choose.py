"""Which power source a run uses: a source by name, the candidates of ``--power auto`` on this machine,
and opening the first that reads."""
from __future__ import annotations

from sentei.errors import SenteiError
from sentei.host.bench.power.base import PowerSource, PowerUnavailable, is_jetson, is_zynq
from sentei.host.bench.power.ina3221 import Ina3221Source
from sentei.host.bench.power.nvml import NvmlSource, nvml_device
from sentei.host.bench.power.pynq_pmbus import PynqSource
from sentei.host.bench.power.rapl import RaplSource
from sentei.host.bench.power.tegrastats import TegrastatsSource

SOURCES = ("pynq", "ina3221", "tegrastats", "nvml", "rapl")


def make_source(name: str, device: str = "cpu") -> PowerSource:
    """The source called ``name`` (one of :data:`SOURCES`) for a run on ``device``, not yet opened."""
    classes = {"pynq": PynqSource, "ina3221": Ina3221Source, "tegrastats": TegrastatsSource,
               "nvml": NvmlSource, "rapl": RaplSource}
    if name not in classes:
        raise SenteiError(f"--power {name}: unknown source; choose auto, none, or one of {', '.join(SOURCES)}")
    if name == "nvml":
        return NvmlSource(index=nvml_device(device) if device.startswith("cuda") else 0)
    return classes[name]()


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
