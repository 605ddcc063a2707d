"""The ``nvml`` power source: an NVIDIA GPU board's energy counter, differenced (``nvmlDeviceGetPowerUsage``
where there is none), and the GPU that a run's device names."""
from __future__ import annotations

import os
import re
import statistics
import time

from sentei.host.bench.power.base import PowerSource, PowerUnavailable

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
