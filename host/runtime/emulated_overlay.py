"""The emulated overlay: the accelerator's register file, DDR and "hardware" on a PC.

Without a board, :class:`sentei.host.runtime.driver.SenteiDriver` -- the very code that drives the
FPGA -- runs against an :class:`EmulatedOverlay`. It offers what PYNQ offers on a board:

- ``ip_dict`` with one entry for the accelerator (its VLNV, base address, address range and
  the register table PYNQ would parse from the ``.hwh``), so the driver's register-map check
  runs here too;
- :meth:`EmulatedOverlay.allocate`, which hands out :class:`EmulatedBuffer` arrays (an
  ``ndarray`` subclass like ``pynq.buffer.PynqBuffer``) with a ``device_address`` from a bump
  allocator over an emulated DDR, and ``flush()``, ``invalidate()``, ``freebuffer()``;
- an MMIO object (``read(offset)``, ``write(offset, value)``) over a register file of
  ``ADDRESS_RANGE`` bytes with the ``ap_ctrl_hs`` semantics of Vitis HLS (``ap_done`` and the
  status ``ap_vld`` clear on read).

The host's view of a buffer and the accelerator's view are two copies, as with the caches
of a Zynq: what the host writes reaches the accelerator only after ``flush()``, and what the
accelerator writes reaches the host only after ``invalidate()``. On ``AP_START`` the emulated
accelerator decodes ``CMD``, ``FRAMES`` and the 64-bit buffer addresses and reads its inputs from the
emulated DDR *by address* (a ``RUN_FRAME`` of ``FRAMES`` frames reads them back to back, frame n
at word ``n*frame_words``, and writes logit map n at value ``n*logit_words``): a wrong, stale or freed address is a bus error
(:class:`EmulatedBusError`), exactly where real hardware would read garbage. An overlay whose
"bitstream" has layers that keep line-buffer rows in DDR also has their row ports (``rows<n>``,
one pointer register each after ``status``), and a ``RUN_FRAME`` needs every port to hold the
address of one and the same live buffer of at least ``row_buffer_bytes``, plus that port's
``offset_bytes`` (else a bus error, before any logit is written).

The "hardware" is pluggable (:func:`make_hardware`):

- ``"reference"``: the weight blob decoded the way the accelerator decodes it (the network's
  shapes are compile-time facts, everything else comes from the blob), run by
  :func:`sentei.host.modelfile.reference.run`;
- ``"emu"``: the same, run by the fast numba emulator (:mod:`sentei.host.emulator.engine`);
- ``"csim"``: the C-simulation build of the HLS sources (:mod:`sentei.overlay.csim`), which
  checks the blob and computes with the accelerator's own C++.

It runs on a worker thread, like the accelerator runs beside the CPU: the driver polls
``AP_CTRL`` and may prepare the next frame meanwhile. ``hang=True`` makes it never signal
done (the timeout test).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sentei.errors import SenteiError
from sentei.host.runtime.driver import frame_words, logit_words, row_ports_of
from sentei.host.modelfile.schema import (BLOB_INPUT_WORDS, BLOB_MAGIC, MAX_SHIFT, ConvLayer, InputQuant, Model, act_range,
                                blob_offsets, blob_words)
from sentei.overlay import registers as R

DDR_BASE = 0x1000_0000  # first device address the emulated allocator hands out
PAGE = 4096  # allocation granularity (the contiguous allocator's page)
IP_BASE = 0xA000_0000  # where the accelerator's AXI4-Lite window sits in the emulated address map
IP_NAME = "sentei_top_0"  # instance name of the accelerator in the block design


class EmulatedBusError(SenteiError):
    """The emulated accelerator accessed memory outside every live buffer."""


LOG_LIMIT = 20_000  # events an overlay keeps (the register accesses of several hundred frames)
COMMANDS_LIMIT = 1_000  # finished commands an overlay keeps


class EventLog(list):
    """A list that keeps only its newest entries, so a long run does not grow without bound.

    When it holds more than ``limit`` entries the oldest half is dropped (amortized O(1) per
    append) and counted in ``dropped``. Below the limit it is a plain list: tests take
    ``mark = len(log)`` and look at ``log[mark:]``.
    """

    def __init__(self, limit: int = LOG_LIMIT):
        super().__init__()
        self.limit = int(limit)
        self.dropped = 0

    def append(self, item) -> None:
        super().append(item)
        if len(self) > self.limit:
            cut = len(self) - self.limit // 2
            del self[:cut]
            self.dropped += cut


# ---------------------------------------------------------------------------------------
# memory: buffers with device addresses, host/device copies, flush and invalidate


class EmulatedBuffer(np.ndarray):
    """An ``ndarray`` in emulated contiguous memory, like ``pynq.buffer.PynqBuffer``.

    Attributes
    ----------
    device_address : int
        The address the accelerator uses for the first byte.
    coherent : bool
        Always False: the host must ``flush()`` and ``invalidate()`` (a cacheable buffer).
    """

    def __array_finalize__(self, obj):
        parent = obj if isinstance(obj, EmulatedBuffer) else None
        offset = -1
        if parent is not None and getattr(parent, "_memory", None) is not None:
            offset = self.__array_interface__["data"][0] - parent.__array_interface__["data"][0]
        if 0 <= offset < max(parent.nbytes, 1) and np.may_share_memory(self, parent):  # a view: same DDR
            self._memory = parent._memory
            self.device_address = parent.device_address + offset
        else:  # a copy lives in ordinary host memory
            self._memory = None
            self.device_address = None
        self.coherent = False

    @property
    def physical_address(self) -> int:
        """Alias of ``device_address`` (the name older PYNQ code uses)."""
        return self.device_address

    @property
    def freed(self) -> bool:
        """True once :meth:`freebuffer` released the memory."""
        return self._memory is None or not self._memory.is_live(self.device_address)

    def flush(self) -> None:
        """Copy the host's bytes to the accelerator's view (host -> DDR)."""
        self._owner().store(self.device_address, self._flat())

    def invalidate(self) -> None:
        """Refresh the host's bytes from the accelerator's view (DDR -> host)."""
        data = self._owner().load(self.device_address, self.nbytes, who="host invalidate")
        np.copyto(self._flat(), np.frombuffer(data, dtype=np.uint8))

    sync_to_device = flush
    sync_from_device = invalidate

    def freebuffer(self) -> None:
        """Return the memory to the allocator; the device address becomes invalid."""
        if self._memory is not None:
            self._memory.free(self.device_address)

    def _owner(self) -> "EmulatedMemory":
        if self._memory is None:
            raise SenteiError("this array is not an emulated buffer (allocate it with overlay.allocate)")
        if not self.flags.c_contiguous:
            raise SenteiError("flush/invalidate need a contiguous buffer (or a contiguous slice of one)")
        return self._memory

    def _flat(self) -> np.ndarray:
        return np.ndarray.view(self, np.ndarray).reshape(-1).view(np.uint8)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.freebuffer()
        return False


@dataclass
class _Region:
    address: int
    nbytes: int
    device: bytearray  # what the accelerator sees (the DDR after flushes and its own writes)


class EmulatedMemory:
    """Emulated DDR: a bump allocator of device addresses and the accelerator's view of each buffer.

    Parameters
    ----------
    log : list, optional
        Receives ``("alloc", address, nbytes)``, ``("free", address)``,
        ``("flush", address, nbytes)`` and ``("invalidate", address, nbytes)`` events.
    capacity : int
        Bytes that may be live at once (the contiguous-memory pool of a board).
    """

    def __init__(self, log: list | None = None, capacity: int = 512 * 1024 * 1024):
        self._regions: dict[int, _Region] = {}
        self._next = DDR_BASE
        self._lock = threading.Lock()
        self.capacity = int(capacity)
        self.log = log if log is not None else []

    def allocate(self, shape, dtype="u4") -> EmulatedBuffer:
        """A zeroed :class:`EmulatedBuffer` at a fresh, page-aligned device address."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * dtype.itemsize, 1)
        with self._lock:
            if self.live_bytes() + nbytes > self.capacity:
                raise SenteiError(f"out of contiguous memory: {nbytes} more bytes do not fit the "
                                  f"{self.capacity}-byte pool; close other Segmenters first")
            address = self._next
            self._next += (nbytes + PAGE - 1) // PAGE * PAGE
            self._regions[address] = _Region(address, nbytes, bytearray(nbytes))
        buf = np.zeros(shape, dtype=dtype).view(EmulatedBuffer)
        buf._memory = self
        buf.device_address = address
        self.log.append(("alloc", address, nbytes))
        return buf

    def free(self, address: int) -> None:
        with self._lock:
            if self._regions.pop(address, None) is not None:
                self.log.append(("free", address))

    def is_live(self, address: int) -> bool:
        return self._find(address, 1) is not None

    def live_buffers(self) -> int:
        """How many buffers are allocated and not yet freed."""
        return len(self._regions)

    def live_bytes(self) -> int:
        return sum(r.nbytes for r in self._regions.values())

    def _find(self, address: int, nbytes: int) -> _Region | None:
        for region in self._regions.values():
            if region.address <= address and address + nbytes <= region.address + region.nbytes:
                return region
        return None

    def load(self, address: int, nbytes: int, who: str = "accelerator") -> bytes:
        """``nbytes`` of the device view at ``address`` (raises :class:`EmulatedBusError` outside a buffer)."""
        with self._lock:
            region = self._region(address, nbytes, who, "read")
            start = address - region.address
            data = bytes(memoryview(region.device)[start:start + nbytes])  # one copy, not a slice and a copy
        if who == "host invalidate":
            self.log.append(("invalidate", address, nbytes))
        return data

    def store(self, address: int, data, who: str = "host flush") -> None:
        """Write ``data`` (bytes, or a contiguous uint8 array: copied once) into the device view at ``address``."""
        data = memoryview(data).cast("B")
        with self._lock:
            region = self._region(address, data.nbytes, who, "write")
            start = address - region.address
            memoryview(region.device)[start:start + data.nbytes] = data
        if who == "host flush":
            self.log.append(("flush", address, data.nbytes))

    def check(self, address: int, nbytes: int, who: str = "accelerator", what: str = "read") -> None:
        """Raise :class:`EmulatedBusError` unless ``nbytes`` at ``address`` lie inside one live buffer."""
        with self._lock:
            self._region(address, nbytes, who, what)

    def _region(self, address: int, nbytes: int, who: str, what: str) -> _Region:
        region = self._find(address, nbytes)
        if region is None:
            raise EmulatedBusError(f"{who} {what} of {nbytes} bytes at 0x{address:x} lies outside every live "
                                   f"buffer (a wrong, freed or too small buffer behind that address)")
        return region


# ---------------------------------------------------------------------------------------
# the hardware: what happens between AP_START and AP_DONE


def model_from_blob(network: Model, blob: np.ndarray) -> Model:
    """The network as the accelerator holds it after ``CMD_LOAD_WEIGHTS``.

    Shapes, kernel, stride, dilation, padding, K, bit widths and activations are compile-time
    facts of the bitstream (taken from ``network``); bias, requantization, weights, indices and
    the input quantization are read from the blob (docs/model-format.md section 4).

    Parameters
    ----------
    network : Model
        The model the bitstream was generated for (only its compile-time facts are used).
    blob : numpy.ndarray
        uint32 words of a weight blob already checked against ``network`` (:func:`check_blob_header`).

    Returns
    -------
    Model
        A model whose run-time data are exactly the blob's.
    """
    words = np.asarray(blob, dtype=np.uint32)
    offsets = blob_offsets(network)
    layers = []
    for off, layer in zip(offsets, network.layers):
        c, k = layer.out_channels, layer.k_nonzero
        entries = words[off + 3 * c:off + 3 * c + c * k].reshape(c, k)
        logits = layer.act == "logits"
        layers.append(ConvLayer(
            name=layer.name, in_channels=layer.in_channels, out_channels=c, kernel=layer.kernel,
            stride=layer.stride, dilation=layer.dilation, padding=layer.padding,
            weight_bits=layer.weight_bits, act=layer.act, out_bits=layer.out_bits,
            values=(entries & 0xFF).astype(np.uint8).view(np.int8),
            indices=(entries >> 8).astype(np.uint32),
            bias=words[off:off + c].view(np.int32).copy(),
            mult=None if logits else words[off + c:off + 2 * c].view(np.int32).copy(),
            shift=None if logits else words[off + 2 * c:off + 3 * c].astype(np.uint8),
            sparsity=layer.sparsity, scheme=layer.scheme))
    q = network.input
    inp = InputQuant(height=q.height, width=q.width, channels=q.channels, bits=q.bits,
                     mul=tuple(int(v) for v in words[2:5].view(np.int32)),
                     add=tuple(int(v) for v in words[5:8].view(np.int32)),
                     shift=int(words[8]))
    return Model(name=network.name, input=inp, layers=layers, output_upsample=network.output_upsample,
                 output_scale=network.output_scale, num_classes=network.num_classes,
                 class_names=network.class_names, class_colors=network.class_colors)


def check_blob_header(network: Model, read_words: Callable[[int, int], np.ndarray]) -> int:
    """The accelerator's check of a weight blob before it loads it: a ``STATUS_*`` code.

    ``read_words(first, count)`` reads words of the weight buffer; like the hardware, the
    check reads the magic first, then the layer count, then the section offsets.
    """
    head = read_words(0, 2)
    if int(head[0]) != BLOB_MAGIC:
        return R.STATUS_BAD_MAGIC
    n = len(network.layers)
    if int(head[1]) != n:
        return R.STATUS_BAD_LAYOUT
    if int(read_words(8, 1)[0]) > 31:  # input shift: the hardware's shifter takes 0..31
        return R.STATUS_BAD_LAYOUT
    offsets = read_words(2 + BLOB_INPUT_WORDS, n)
    if [int(v) for v in offsets] != blob_offsets(network):
        return R.STATUS_BAD_LAYOUT
    return R.STATUS_OK


def constants_fit(network: Model, blob: np.ndarray) -> bool:
    """The hardware loader's check of the per-filter constants: every multiplier word below 2^31
    and every shift word at most 62 (spec section 3), on the raw words, before any decoding."""
    words = np.asarray(blob, dtype=np.uint32)
    for off, layer in zip(blob_offsets(network), network.layers):
        c = layer.out_channels
        if (words[off + c:off + 2 * c] >> 31).any() or (words[off + 2 * c:off + 3 * c] > MAX_SHIFT).any():
            return False
    return True


def entries_fit(model: Model) -> bool:
    """The check the hardware's weight loader makes per entry while it copies: every position
    below Cin*k*k and every value within the layer's weight bits (else STATUS_BAD_LAYOUT).
    ``model`` is the blob as decoded by :func:`model_from_blob`."""
    for layer in model.layers:
        if layer.values.size == 0:
            continue
        lo, hi = act_range("linear", layer.weight_bits)
        if int(layer.indices.max()) >= layer.fan_in or int(layer.values.min()) < lo or int(layer.values.max()) > hi:
            return False
    return True


class EngineHardware:
    """The accelerator's behaviour with a host engine doing the arithmetic.

    Parameters
    ----------
    network : Model
        The model the (emulated) bitstream was built for: its compile-time facts.
    engine : {"reference", "emu"}
        ``"reference"``: :func:`sentei.host.modelfile.reference.run`; ``"emu"``: the fast emulator.
    """

    def __init__(self, network: Model, engine: str = "reference"):
        if engine not in ("reference", "emu"):
            raise SenteiError(f"unknown emulation engine {engine!r}: use 'reference' or 'emu'")
        self.network = network
        self.engine = engine
        self.name = engine
        self._run = None
        self._close = None

    def load_weights(self, blob: np.ndarray) -> int:
        """Decode a blob whose header :func:`check_blob_header` accepted; a ``STATUS_*`` code."""
        self.close()  # like the hardware, a load that fails leaves no weights behind
        if not constants_fit(self.network, blob):
            return R.STATUS_BAD_LAYOUT
        model = model_from_blob(self.network, blob)
        if not entries_fit(model):
            return R.STATUS_BAD_LAYOUT
        from sentei.host.emulator.engine import make_engine

        engine = make_engine(model, prefer=self.engine)
        self._run, self._close = engine, engine.close
        return R.STATUS_OK

    def run_frame(self, frame: np.ndarray) -> tuple[int, np.ndarray | None]:
        """uint8 HWC frame -> ``(status, int32 logits [h, w, C])``."""
        if self._run is None:
            return R.STATUS_NO_WEIGHTS, None
        return R.STATUS_OK, np.ascontiguousarray(self._run(frame).transpose(1, 2, 0))

    def run_frames(self, frames) -> tuple[int, np.ndarray | None]:
        """Several frames, as one RUN_FRAME with FRAMES = len(frames): ``(status, int32 logits
        [n, h, w, C])`` (an engine computes them one after another)."""
        out = []
        for frame in frames:
            status, logits = self.run_frame(frame)
            if status != R.STATUS_OK:
                return status, None
            out.append(logits)
        return R.STATUS_OK, np.stack(out)

    def close(self) -> None:
        if self._close is not None:
            self._close()
        self._run = self._close = None


def make_hardware(network: Model, kind: str):
    """The compute behind an emulated overlay: ``"reference"``, ``"emu"`` or ``"csim"``.

    All three have ``load_weights(blob) -> status``, ``run_frame(frame) -> (status,
    logits [h, w, C])`` and ``run_frames(frames) -> (status, logits [n, h, w, C])``;
    ``"emu"`` needs numba and ``"csim"`` a C++ compiler (each raises
    :class:`SenteiError` naming what is missing).
    """
    if kind in ("reference", "emu"):
        if kind == "emu":
            from sentei.host.emulator.engine import available

            ok, reason = available()
            if not ok:
                raise SenteiError(reason)
        return EngineHardware(network, kind)
    if kind == "csim":
        try:
            from sentei.overlay.csim import CsimAccelerator
        except ImportError as exc:
            raise SenteiError(f"the C-simulation build is not available ({exc}); "
                              f"use --backend emu") from None
        hw = CsimAccelerator(network)
        hw.name = "csim"
        return hw
    raise SenteiError(f"unknown emulated hardware {kind!r}: use reference, emu or csim")


# ---------------------------------------------------------------------------------------
# registers


def register_table(row_ports=()) -> dict:
    """The accelerator's registers as PYNQ lists them in ``ip_dict[...]["registers"]``.

    Names follow what Vitis HLS writes into the ``.hwh``: a 64-bit pointer argument ``x`` is
    ``x_1`` (low word) and ``x_2`` (high word); an output scalar ``x`` with ``ap_vld`` has
    ``x_ctrl``. ``row_ports``: the arguments (or ``(argument, offset_bytes)`` pairs) of the row
    ports after ``status``, of a network whose layers keep line-buffer rows in DDR, the j-th at
    ``registers.row_port_offset(j)``.
    """
    def reg(offset, access, description):
        return {"address_offset": offset, "size": 32, "access": access, "description": description}

    table = {
        "CTRL": reg(R.AP_CTRL, "read-write", "Control signals"),
        "GIER": reg(R.GIE, "read-write", "Global Interrupt Enable Register"),
        "IP_IER": reg(R.IER, "read-write", "IP Interrupt Enable Register"),
        "IP_ISR": reg(R.ISR, "read-write", "IP Interrupt Status Register"),
    }
    for name in R.POINTER_ARGUMENTS:
        lo = R.ARGUMENTS[name]
        table[f"{name}_1"] = reg(lo, "write-only", f"Data signal of {name} (low word)")
        table[f"{name}_2"] = reg(lo + 4, "write-only", f"Data signal of {name} (high word)")
    for name in (n for n in R.ARGUMENTS if n not in R.POINTER_ARGUMENTS and n != "status"):
        table[name] = reg(R.ARGUMENTS[name], "write-only", f"Data signal of {name}")
    table["status"] = reg(R.STATUS, "read-only", "Data signal of status")
    table["status_ctrl"] = reg(R.STATUS_CTRL, "read-only", "Control signal of status")
    for j, port in enumerate(row_ports):
        name, lo = port if isinstance(port, str) else port[0], R.row_port_offset(j)
        table[f"{name}_1"] = reg(lo, "write-only", f"Data signal of {name} (low word)")
        table[f"{name}_2"] = reg(lo + 4, "write-only", f"Data signal of {name} (high word)")
    return table


class EmulatedMMIO:
    """The accelerator's AXI4-Lite register file and its control logic.

    ``read``/``write`` take byte offsets like ``pynq.MMIO``; writing ``AP_START`` to
    ``AP_CTRL`` runs one command on a worker thread. Every access is appended to ``log`` as
    ``("read", offset, value)`` or ``("write", offset, value)``. With ``row_ports``
    (``(argument, offset_bytes)`` in argument order) a ``RUN_FRAME`` also takes each row port's
    address from its register and checks that they all lie in one row buffer of
    ``row_buffer_bytes``.
    """

    def __init__(self, memory: EmulatedMemory, hardware, network: Model, log: list,
                 hang: bool = False, delay_s: float = 0.0, row_ports=(), row_buffer_bytes: int = 0):
        self.memory = memory
        self.hardware = hardware
        self.network = network
        self.row_ports = [(str(name), int(offset)) for name, offset in row_ports]
        self.row_buffer_bytes = int(row_buffer_bytes)
        self.log = log
        self.hang = hang
        self.delay_s = float(delay_s)
        self.regs = np.zeros(R.ADDRESS_RANGE // 4, dtype=np.uint32)
        self.regs[R.AP_CTRL // 4] = R.AP_IDLE
        self._lock = threading.Lock()
        # one long-lived worker thread runs every command, as one piece of hardware does: a thread
        # per command would also give the engine's thread pool (numba/OpenMP) a new caller per frame
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        # the interrupt line: cleared by an accepted AP_START, set when the command ends (also a hung
        # one never sets it); EmulatedIP sleeps on it instead of polling AP_CTRL (driver.EmulatedIP._pause)
        self.done_event = threading.Event()
        self.done_event.set()
        self._worker: threading.Thread | None = None
        self.fault: Exception | None = None
        self.commands: list[tuple[int, int]] = EventLog(COMMANDS_LIMIT)  # (cmd, status) of finished commands

    def _index(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < R.ADDRESS_RANGE:
            raise ValueError(f"register offset 0x{offset:x} is not a word inside the "
                             f"0x{R.ADDRESS_RANGE:x}-byte register window")
        return offset // 4

    def read(self, offset: int = 0, length: int = 4) -> int:
        """Read a 32-bit register; ``ap_done``/``ap_ready`` and ``status`` ap_vld clear on read."""
        if length != 4:
            raise ValueError("the accelerator's registers are 32-bit: read(offset, 4)")
        i = self._index(offset)
        with self._lock:
            if self.fault is not None:
                fault, self.fault = self.fault, None
                raise fault
            value = int(self.regs[i])
            if offset == R.AP_CTRL:
                self.regs[i] &= ~np.uint32(R.AP_DONE | R.AP_READY)
            elif offset == R.STATUS_CTRL:
                self.regs[i] = 0
        self.log.append(("read", offset, value))
        return value

    def write(self, offset: int, value) -> None:
        """Write a 32-bit register; ``AP_START`` in ``AP_CTRL`` starts the command in ``CMD``."""
        i = self._index(offset)
        value = int(value)
        if not 0 <= value < 2**32:
            raise ValueError(f"0x{value:x} does not fit a 32-bit register")
        self.log.append(("write", offset, value))
        with self._lock:
            if offset in (R.STATUS, R.STATUS_CTRL):
                return  # read-only
            if offset != R.AP_CTRL:
                self.regs[i] = value
                return
            ctrl = int(self.regs[i])
            if not value & R.AP_START or not ctrl & R.AP_IDLE:
                return  # start while busy is ignored, as by ap_ctrl_hs
            self.regs[i] = np.uint32(R.AP_START)  # busy: idle, done and ready low
            self.done_event.clear()
            args = {name: int(self.regs[off // 4]) for name, off in R.ARGUMENTS.items()}
            for name in R.POINTER_ARGUMENTS:
                args[name] |= int(self.regs[(R.ARGUMENTS[name] + 4) // 4]) << 32
            args["rows"] = [int(self.regs[lo // 4]) | int(self.regs[(lo + 4) // 4]) << 32
                            for lo in map(R.row_port_offset, range(len(self.row_ports)))]
        if self.hang:
            return  # the hung accelerator: AP_START stays high, done never comes
        self._idle.clear()
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._serve, name="sentei-emulated-accelerator", daemon=True)
            self._worker.start()
        self._jobs.put(args)

    def _serve(self) -> None:
        while True:
            args = self._jobs.get()
            if args is None:
                return
            try:
                self._execute(args)
            finally:
                self.done_event.set()
                self._idle.set()

    def _execute(self, args: dict) -> None:
        try:
            status = self._command(args)
        except Exception as exc:  # a bus error or an engine failure: surfaces on the next register read
            with self._lock:
                self.fault = exc if isinstance(exc, SenteiError) else SenteiError(
                    f"emulated accelerator failed: {exc.__class__.__name__}: {exc}")
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.commands.append((args["cmd"], status))
            self.regs[R.STATUS // 4] = status
            self.regs[R.STATUS_CTRL // 4] = 1
            self.regs[R.AP_CTRL // 4] = R.AP_DONE | R.AP_IDLE | R.AP_READY

    def _words(self, address: int, first: int, count: int) -> np.ndarray:
        return np.frombuffer(self.memory.load(address + 4 * first, 4 * count), dtype="<u4")

    def _command(self, args: dict) -> int:
        cmd = args["cmd"]
        if cmd == R.CMD_LOAD_WEIGHTS:
            addr = args["weights"]
            status = check_blob_header(self.network, lambda first, count: self._words(addr, first, count))
            if status != R.STATUS_OK:
                return status
            blob = self._words(addr, 0, blob_words(self.network)).copy()
            return int(self.hardware.load_weights(blob))
        if cmd == R.CMD_RUN_FRAME:
            q = self.network.input
            if (args["height"], args["width"]) != (q.height, q.width):
                return R.STATUS_BAD_SIZE
            count = args["frames"]
            if count == 0:
                return R.STATUS_BAD_FRAMES
            # the buffers as the m_axi ports see them: frame n at word n*frame_words (each frame
            # padded to a whole word), logit map n at value n*logit_words, both read/written whole
            stride, size = 4 * frame_words(q.height, q.width), q.height * q.width * 3
            out_bytes = 4 * logit_words(self.network)
            raw = self.memory.load(args["frame"], count * stride)
            self.memory.check(args["logits"], count * out_bytes, what="write")  # the whole output: a bus error up front
            if self.row_ports:
                self._check_rows(args["rows"], [(args["frame"], count * stride), (args["logits"], count * out_bytes)])
            frames = [np.frombuffer(raw, dtype=np.uint8, count=size, offset=n * stride).reshape(q.height, q.width, 3)
                      for n in range(count)]
            status, batch = self.hardware.run_frames(frames)  # the C-simulation build overlaps them, as the FPGA
            if status != R.STATUS_OK:
                return int(status)
            for n in range(count):
                self.memory.store(args["logits"] + n * out_bytes,
                                  np.ascontiguousarray(batch[n], dtype="<i4").reshape(-1).view(np.uint8),
                                  who="accelerator")
            return R.STATUS_OK
        return R.STATUS_BAD_COMMAND

    def _check_rows(self, addresses: list[int], others) -> None:
        """The row ports as the accelerator uses them: port j reads and writes its layer's rows at
        ``addresses[j]``, which must be ``base + offset_bytes`` of that port for one ``base``, the
        start of a live buffer of at least ``row_buffer_bytes``, apart from the frame and logits
        buffers (``others``: ``(address, bytes)``)."""
        size = self.row_buffer_bytes
        (first, first_offset), base = self.row_ports[0], addresses[0] - self.row_ports[0][1]
        for j, ((name, offset), address) in enumerate(zip(self.row_ports, addresses)):
            if address - offset != base:
                raise EmulatedBusError(
                    f"accelerator rows: {name} (ROWS{j}) at 0x{address:x} is not the row buffer's address + its "
                    f"offset_bytes {offset}, the buffer {first} (ROWS0) at 0x{addresses[0]:x} - {first_offset} "
                    f"= 0x{base:x} points at: every row port must point into the one row buffer")
        if base < 0:
            raise EmulatedBusError(f"accelerator rows: {first} (ROWS0) at 0x{addresses[0]:x} lies below its "
                                   f"offset_bytes {first_offset}: no row buffer behind it")
        with self.memory._lock:  # 0, freed or too small: outside every live buffer
            start = self.memory._region(base, size, "accelerator rows", "write").address
        if start != base:
            raise EmulatedBusError(f"accelerator rows: the row buffer the ports point at, 0x{base:x}, is not the "
                                   f"start of a buffer (0x{start:x} is): each port must be the row buffer's "
                                   f"address + its offset_bytes")
        for address, nbytes in others:
            if base < address + nbytes and address < base + size:
                raise EmulatedBusError(f"accelerator rows: the row buffer at 0x{base:x} ({size} bytes) overlaps "
                                       f"the frame or logits buffer at 0x{address:x} ({nbytes} bytes)")

    def join(self, timeout: float | None = None) -> None:
        """Wait until the command in flight (if any) has finished (tests and close)."""
        self._idle.wait(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the command in flight, then end the worker thread."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._jobs.put(None)
            worker.join(timeout)
        self._worker = None


# ---------------------------------------------------------------------------------------
# the overlay


def _row_ports(hardware, row_ports, row_buffer_bytes) -> tuple[int, list[tuple[str, int]]]:
    """``(row_buffer_bytes, [(argument, offset_bytes)])`` of an emulated bitstream (see :class:`EmulatedOverlay`)."""
    if row_ports is None:  # the compiled network's facts (sentei.overlay.codegen.NetworkFacts)
        facts = getattr(hardware, "facts", None)
        row_ports = list(facts.row_ports()) if hasattr(facts, "row_ports") else []
        if row_buffer_bytes is None and row_ports:
            row_buffer_bytes = facts.row_buffer_bytes
    if row_buffer_bytes is None:  # just what the ports need
        ends = [(p.get("offset_bytes"), p.get("bytes")) if isinstance(p, dict) else None for p in row_ports or []]
        if all(isinstance(e, tuple) and all(isinstance(v, int) for v in e) for e in ends):
            row_buffer_bytes = max((offset + nbytes for offset, nbytes in ends), default=0)
    return row_ports_of({"row_buffer_bytes": row_buffer_bytes, "row_ports": row_ports},
                        source="EmulatedOverlay row ports")


class EmulatedOverlay:
    """A stand-in for ``pynq.Overlay`` holding one emulated sentei accelerator.

    Parameters
    ----------
    network : Model
        The model the emulated bitstream is "built" for: its compile-time facts (layers,
        shapes, K, input size) fix the blob layout the accelerator accepts, as
        ``sentei overlay codegen`` does for a real bitstream.
    hardware : {"reference", "emu", "csim"} or object
        What computes (see :func:`make_hardware`), or an object with the same methods.
    hang : bool
        The accelerator never signals done (to test the driver's timeout).
    delay_s : float
        Extra seconds every command takes (to make pipelining visible).
    row_ports : list of dict, optional
        The emulated bitstream's row ports, as ``network.json``'s ``row_ports`` (``NetworkFacts.
        row_ports()``): ``{"argument": "rows5", "offset_bytes": 0, "bytes": 61440, ...}`` in
        argument order, the layers that keep line-buffer rows in DDR. Its register table then
        has ``rows<n>_1``/``rows<n>_2`` for each and ``RUN_FRAME`` checks them. Default: the
        ``row_ports()`` of the hardware's compiled facts (``hardware="csim"``: the C-simulation
        build's ``NetworkFacts``), else none.
    row_buffer_bytes : int, optional
        Bytes of the one buffer behind the row ports (``network.json``'s ``row_buffer_bytes``).
        Default: the facts' ``row_buffer_bytes`` where the row ports come from them, else the
        end of the last port's region.

    Attributes
    ----------
    ip_dict : dict
        One entry, ``"sentei_top_0"``, as PYNQ builds it from a ``.hwh``.
    memory : EmulatedMemory
        The emulated DDR (``live_buffers()`` counts what is not freed).
    mmio : EmulatedMMIO
        The register file (``commands`` lists ``(cmd, status)`` of the last
        :data:`COMMANDS_LIMIT` finished commands).
    log : EventLog
        Register accesses and buffer events, in order (the newest :data:`LOG_LIMIT` of them:
        a camera loop running for hours stays within a few MiB).
    row_ports : list of (str, int)
        ``(argument, offset_bytes)`` of each row port in argument order (empty: no layer keeps
        rows in DDR), checked as :func:`sentei.host.runtime.driver.row_ports_of` checks
        ``network.json``'s.
    row_buffer_bytes : int
        Bytes of the row buffer the emulated bitstream needs (0 without row ports). The
        Segmenter gives both to the driver, as ``network.json``'s on a board.
    shared_windows : list of dict
        The compiled network's layers with one window for all lanes (``hardware="csim"``:
        ``NetworkFacts.shared_windows``; else none): the Segmenter has the driver lay their
        weights out in schedule order, as ``network.json``'s on a board.
    """

    def __init__(self, network: Model, hardware="reference", hang: bool = False, delay_s: float = 0.0,
                 row_ports: list | None = None, row_buffer_bytes: int | None = None):
        self.network = network
        self.log: list = EventLog(LOG_LIMIT)
        self.memory = EmulatedMemory(self.log)
        self.hardware = make_hardware(network, hardware) if isinstance(hardware, str) else hardware
        try:
            self.row_buffer_bytes, self.row_ports = _row_ports(self.hardware, row_ports, row_buffer_bytes)
        except BaseException:
            if isinstance(hardware, str) and getattr(self.hardware, "close", None) is not None:
                self.hardware.close()
            raise
        facts = getattr(self.hardware, "facts", None)  # a compiled network (csim): its shared windows
        self.shared_windows = list(facts.shared_windows()) if hasattr(facts, "shared_windows") else []
        self.mmio = EmulatedMMIO(self.memory, self.hardware, network, self.log, hang=hang, delay_s=delay_s,
                                 row_ports=self.row_ports, row_buffer_bytes=self.row_buffer_bytes)
        self.ip_dict = {IP_NAME: {
            "type": R.VLNV, "phys_addr": IP_BASE, "addr_range": R.ADDRESS_RANGE,
            "fullpath": IP_NAME, "registers": register_table(self.row_ports), "mmio": self.mmio,
        }}
        self.owner: str | None = None

    def allocate(self, shape, dtype="u4") -> EmulatedBuffer:
        """Like ``pynq.allocate``: a zeroed buffer with a device address."""
        return self.memory.allocate(shape, dtype)

    def claim(self, owner: str) -> None:
        """Take the accelerator for ``owner``; refuse while another holder has it."""
        if self.owner is not None:
            raise SenteiError(f"the accelerator of this overlay is in use by {self.owner}; close it first "
                              f"(seg.close() or a with-block) or use another overlay")
        self.owner = owner

    def release(self) -> None:
        self.owner = None

    def close(self) -> None:
        """Stop the hardware model (the emulated bitstream is unloaded)."""
        self.mmio.stop(timeout=5.0)
        close = getattr(self.hardware, "close", None)
        if close is not None:
            close()
