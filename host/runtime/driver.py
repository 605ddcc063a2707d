"""The accelerator's driver: the register protocol, the PYNQ ``DefaultIP`` binding, the buffers.

Three layers, each small:

- :class:`SenteiDriver` speaks the register map of :mod:`sentei.overlay.registers` using
  only ``self.read(offset)`` and ``self.write(offset, value)``: check the register table,
  write buffer addresses and a command, start, wait for done *with a timeout*, read the
  status. It is a mixin, so the same methods run on two kinds of object:

  * on a board, ``SenteiIP(SenteiDriver, pynq.DefaultIP)`` of :mod:`sentei.host.runtime.pynq_ip`, with
    ``bindto = [registers.VLNV]``: ``read``/``write`` are PYNQ's MMIO;
  * on a PC, :class:`EmulatedIP` gives ``read``/``write`` onto the register file of an
    :class:`~sentei.host.runtime.emulated_overlay.EmulatedOverlay`.

- :class:`Accelerator` owns the buffers of one model on one accelerator: the weight blob
  (allocated, flushed and loaded once per model), the row buffer of a network whose layers keep
  line-buffer rows in DDR (allocated once per model, touched only by the accelerator through
  each such layer's row port), two frame buffers and two logits buffers
  (so batch n+1 is prepared while batch n runs), each holding ``batch`` frames (logit maps)
  back to back for one ``CMD_RUN_FRAME`` of up to ``batch`` frames (:meth:`Accelerator.run_frames`),
  ``flush()`` before a start and ``invalidate()`` after done, and ``close()`` that frees them
  all -- also when the accelerator times out.

- :func:`open_board` loads the bitstream with ``pynq.Overlay`` and takes the board for one
  user at a time (a lock file), :func:`detect_board` says whether there is a board at all.

Where the PYNQ class lives: ``pynq.DefaultIP`` has a metaclass that registers every subclass
that has ``bindto`` in PYNQ's global driver table *when the class statement runs*. The class is
a module-level one in :mod:`sentei.host.runtime.pynq_ip`, which PYNQ itself imports through the
``pynq.lib`` entry point before it binds drivers (so ``pynq.Overlay("sentei.bit").sentei_top_0``
is a ``SenteiIP``); this module never imports it at module level, so ``import sentei.host``
neither imports pynq (slow, and it probes XRT) nor registers a driver on a PC.
:func:`board_driver_class` imports it by name where pynq is installed.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sentei.errors import HardwareTimeoutError, SenteiError
from sentei.overlay import registers as R

COMMAND_NAMES = {R.CMD_LOAD_WEIGHTS: "LOAD_WEIGHTS", R.CMD_RUN_FRAME: "RUN_FRAME"}
BITSTREAM_ENV = "SENTEI_BITSTREAM"  # path of the .bit (its .hwh beside it) to use on a board
LOCK_NAME = "sentei-accelerator.lock"
LOCK_DIR = None  # folder of the board lock file (None: the system's temporary folder)
BITSTREAM_ROOT = None  # folder of the installed bitstreams (None: sentei/overlay/bitstreams of the package)
MAX_BATCH = 64  # frames one RUN_FRAME may carry (bounds the contiguous memory of a batch's buffers)


def frame_words(height: int, width: int) -> int:
    """32-bit words of one frame in the frame buffer: ``ceil(3*H*W/4)`` (frame n starts at word n times this)."""
    return (3 * int(height) * int(width) + 3) // 4


def logit_words(model) -> int:
    """int32 values of one logit map in the logits buffer: ``h*w*num_classes``."""
    c, h, w = model.shapes()[-1]
    return int(c) * int(h) * int(w)


def check_batch(frames: int, frame_buffer, logits_buffer, model) -> None:
    """Refuse a ``RUN_FRAME`` of ``frames`` frames whose buffers cannot hold them (one line, before any start).

    The accelerator cannot see a buffer's length: it reads ``frames * frame_words`` words from
    the frame buffer and writes ``frames * logit_words`` int32 into the logits buffer, past the
    end of a smaller buffer (into whatever memory follows it).
    """
    if not 1 <= int(frames) <= MAX_BATCH:
        raise SenteiError(f"a RUN_FRAME runs 1 to {MAX_BATCH} frames, not {frames}")
    q = model.input
    need_f, need_l = frames * frame_words(q.height, q.width) * 4, frames * logit_words(model) * 4
    if frame_buffer.nbytes < need_f or logits_buffer.nbytes < need_l:
        which, have, need = (("frame", frame_buffer.nbytes, need_f) if frame_buffer.nbytes < need_f
                             else ("logits", logits_buffer.nbytes, need_l))
        raise SenteiError(f"the {which} buffer holds {have} bytes, a batch of {frames} frames needs {need}: "
                          f"allocate it for the batch (Accelerator(..., batch={frames}) or Segmenter(batch={frames}))")


class SenteiDriver:
    """The register protocol of the sentei accelerator (mixin: needs ``read`` and ``write``).

    The methods are named ``start_command``/``wait_done`` so that they never shadow the
    ``start``/``call`` that PYNQ generates for HLS IP from the ``.hwh`` signature.

    Attributes
    ----------
    timeout : float
        Seconds :meth:`wait_done` waits for done before it raises :class:`HardwareTimeoutError`.
    """

    timeout = 10.0

    # -- the register table -------------------------------------------------------------

    def check_register_map(self, row_ports=()) -> None:
        """Compare :mod:`sentei.overlay.registers` with the register table of the ``.hwh``.

        PYNQ builds ``register_map`` from ``description["registers"]``, the table it parses
        from the ``.hwh``; a bitstream built from other HLS sources fails here, before any
        write, with the first register that differs.

        ``row_ports`` are ``network.json``'s row ports in argument order, ``(argument,
        offset_bytes)`` pairs (:func:`row_ports_of`): the layers that keep line-buffer rows in
        DDR, each with its own pointer ``rows<n>`` after ``status``, whose register
        ``rows<n>_1`` must be at ``registers.row_port_offset(j)`` for the j-th. Without them no
        row register is checked (present or not), and :meth:`start_command` writes none.
        """
        table = getattr(self, "_registers", None)
        if not table:
            raise SenteiError("the overlay has no register table for the accelerator: put the .hwh file "
                              "beside the .bit file (same name)")
        offsets = {name.lower(): entry["address_offset"] for name, entry in table.items()}
        expected = {"ctrl": R.AP_CTRL, "status_ctrl": R.STATUS_CTRL}
        for arg, off in R.ARGUMENTS.items():
            expected[f"{arg}_1" if arg in R.POINTER_ARGUMENTS else arg] = off
        names = _row_port_names(row_ports)
        if names:
            missing = [f"{arg}_1" for arg in names if _lookup(offsets, f"{arg}_1") is None]
            if missing:
                regs = "/".join(missing) + (" registers" if len(missing) > 1 else " register")
                raise SenteiError(f"the bitstream's network keeps line-buffer rows in DDR (network.json: row ports "
                                  f"{', '.join(names)}) but its register map has no {regs}: rebuild the bitstream "
                                  f"from the `sentei overlay codegen` output of this network "
                                  f"(make -C overlay MODEL=...), with its .hwh")
            expected.update({f"{arg}_1": R.row_port_offset(j) for j, arg in enumerate(names)})
        for name, off in expected.items():
            found = _lookup(offsets, name)
            if found != off:
                where = "missing" if found is None else f"at 0x{found:x}"
                raise SenteiError(f"register {name} is {where} in the bitstream's register map, expected at "
                                  f"0x{off:x}: the bitstream was not built from this sentei's HLS sources "
                                  f"(rebuild it, or install the matching sentei)")
        self._row_ports = names  # start_command writes row ports only to a map checked for them

    # -- commands -------------------------------------------------------------------------

    def _write_address(self, lo: int, address: int) -> None:
        self.write(lo, address & 0xFFFFFFFF)
        self.write(lo + 4, (address >> 32) & 0xFFFFFFFF)

    def start_command(self, cmd: int, frame: int = 0, weights: int = 0, logits: int = 0,
                      height: int = 0, width: int = 0, frames: int = 1, rows: dict[str, int] | None = None) -> None:
        """Write the arguments of one command and set ``AP_START``.

        Parameters
        ----------
        cmd : int
            ``CMD_LOAD_WEIGHTS`` or ``CMD_RUN_FRAME``.
        frame, weights, logits : int
            Device addresses of the buffers (``buffer.device_address``).
        rows : dict, optional
            ``{argument: device address}`` of every row port :meth:`check_register_map` was
            given (``rows5``: the row buffer's address + that port's ``offset_bytes``), each
            written as low/high words at ``registers.row_port_offset(j)``. None writes none
            (``LOAD_WEIGHTS``, which does not use them, or a bitstream without row ports); a
            ``RUN_FRAME`` of a bitstream with row ports needs them all.
        height, width : int
            The frame size (the bitstream refuses another than its compiled one).
        frames : int
            Frames of a ``CMD_RUN_FRAME`` (``FRAMES``, at least 1: the bitstream answers
            ``STATUS_BAD_FRAMES`` to 0), back to back in both buffers; :meth:`wait_done` then
            allows ``frames`` times its timeout.
        """
        ports = getattr(self, "_row_ports", ())
        if rows is not None or (ports and cmd == R.CMD_RUN_FRAME):
            given = list(rows or {})
            if set(given) != set(ports):
                extra = [name for name in given if name not in ports]
                if extra:
                    raise SenteiError(f"row port addresses for {', '.join(map(_shown, extra))} were given but the "
                                      f"register map was checked for {', '.join(ports) or 'no row ports'}: call "
                                      f"check_register_map(row_ports) with the network's row ports first")
                raise SenteiError(f"a RUN_FRAME of this bitstream needs the address of every row port: "
                                  f"{', '.join(name for name in ports if name not in given)} missing")
        ctrl = self.read(R.AP_CTRL)
        if not ctrl & R.AP_IDLE:
            raise SenteiError("the accelerator is still busy with a previous command (a frame was started "
                              "and never waited for); close and reopen the Segmenter")
        self._write_address(R.FRAME_LO, int(frame))
        self._write_address(R.WEIGHTS_LO, int(weights))
        self._write_address(R.LOGITS_LO, int(logits))
        for j, name in enumerate(ports if rows is not None else ()):  # in argument order
            self._write_address(R.row_port_offset(j), int(rows[name]))
        self.write(R.CMD, int(cmd))
        self.write(R.HEIGHT, int(height))
        self.write(R.WIDTH, int(width))
        self.write(R.FRAMES, int(frames))
        self._cmd = cmd
        self._frames = int(frames) if cmd == R.CMD_RUN_FRAME else 1
        self.write(R.AP_CTRL, R.AP_START)

    def done(self) -> bool:
        """One poll of ``AP_CTRL``: True once the started command has finished."""
        return bool(self.read(R.AP_CTRL) & (R.AP_DONE | R.AP_IDLE))

    def wait_done(self, timeout: float | None = None) -> int:
        """Wait for done, then return ``STATUS``.

        Polls ``AP_CTRL`` (sleeping 10 us, growing to 200 us, between polls) until ``ap_done``
        or ``ap_idle``; raises :class:`HardwareTimeoutError` after ``timeout`` seconds instead
        of spinning forever like ``while not ip.idle``. Without ``timeout``: :attr:`timeout`
        per frame of the started command (a ``RUN_FRAME`` of n frames gets n times it).
        """
        timeout = self.timeout * max(1, getattr(self, "_frames", 1)) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pause = 1e-5
        while not self.done():
            if time.monotonic() > deadline:
                name = COMMAND_NAMES.get(getattr(self, "_cmd", None), "the command")
                if getattr(self, "_frames", 1) > 1:
                    name = f"{name} of {self._frames} frames"
                raise HardwareTimeoutError(
                    f"the accelerator did not signal done within {timeout:g} s of {name}; its buffers are "
                    f"kept (it may still write them) -- reload the bitstream, as a new Segmenter does "
                    f"(power-cycle the board if it persists)")
            self._pause(pause, deadline)
            pause = min(pause * 2, 2e-4)  # an MMIO read costs ~1 us: 200 us bounds the added latency
        if not self.read(R.STATUS_CTRL) & 1:
            raise SenteiError("the accelerator finished without writing STATUS: the bitstream does not "
                              "follow sentei's command protocol (rebuild it from this sentei's HLS sources)")
        return self.read(R.STATUS)

    def _pause(self, seconds: float, deadline: float) -> None:
        """Between two polls of ``AP_CTRL``: sleep (on a board the accelerator runs beside the CPU)."""
        time.sleep(seconds)


def _row_port_names(row_ports) -> tuple[str, ...]:
    """The arguments of ``row_ports`` (``(argument, offset_bytes)`` pairs or bare names), checked."""
    names = tuple(p if isinstance(p, str) else p[0] for p in row_ports or ())
    for name in names:
        if not isinstance(name, str) or not ROW_ARGUMENT.fullmatch(name):
            raise SenteiError(f"row port {_shown(name)} is not a rows<n> argument")
    if len(set(names)) != len(names):
        raise SenteiError(f"row ports {', '.join(names)}: an argument appears twice")
    return names


def _lookup(offsets: dict, name: str):
    """Offset of register ``name`` (lower case) in a ``.hwh`` table; ``x_1`` also as ``x`` (older Vitis
    HLS: one 64-bit register per pointer); None when absent."""
    found = offsets.get(name)
    if found is None and name.endswith("_1"):
        found = offsets.get(name[:-2])
    return found


def check_status(status: int, what: str) -> None:
    """Raise :class:`SenteiError` with the documented meaning of a non-OK ``STATUS``."""
    if status != R.STATUS_OK:
        text = R.STATUS_TEXT.get(status, f"unknown status code {status}")
        raise SenteiError(f"the accelerator refused {what}: {text} (status {status})")


class EmulatedIP(SenteiDriver):
    """:class:`SenteiDriver` on the register file of an emulated overlay (what ``DefaultIP`` is on a board).

    Parameters
    ----------
    description : dict
        The overlay's ``ip_dict`` entry; its ``"mmio"`` is the register file, its
        ``"registers"`` the table PYNQ would parse from the ``.hwh``.
    """

    def __init__(self, description: dict):
        self.mmio = description["mmio"]
        self._registers = description.get("registers")
        self.description = description

    def read(self, offset: int = 0) -> int:
        return self.mmio.read(offset)

    def write(self, offset: int, value) -> None:
        self.mmio.write(offset, value)

    def _pause(self, seconds: float, deadline: float) -> None:
        """Sleep until the emulated accelerator finishes (or the deadline), not between polls.

        The emulated accelerator computes on the same cores as the host: a poll every
        200 us would wake this thread thousands of times a frame and preempt the engine's
        worker threads (about 3 ms of a 17 ms frame on 2 cores). Its register file sets
        ``done_event`` when it raises ``ap_done``, like the interrupt line of the real one,
        so the wait wakes once, at done; ``wait_done`` still reads ``AP_CTRL`` and keeps
        the same deadline.
        """
        self.mmio.done_event.wait(max(0.0, deadline - time.monotonic()))


BOARD_DRIVER_MODULE = "sentei.host.runtime.pynq_ip"  # the pynq.lib entry point: importing it registers SenteiIP


def board_driver_class():
    """``SenteiIP`` (:mod:`sentei.host.runtime.pynq_ip`): :class:`SenteiDriver` + ``pynq.DefaultIP``, bound to the VLNV.

    Imported by name (it imports pynq): importing the module is what registers the driver with
    PYNQ, as PYNQ's own ``pynq.lib`` entry point does before a ``pynq.Overlay`` binds drivers.
    """
    import importlib

    return importlib.import_module(BOARD_DRIVER_MODULE).SenteiIP


# ---------------------------------------------------------------------------------------
# buffers


@dataclass
class FrameTiming:
    """Where the time of one frame went, in seconds."""

    preprocess: float = 0.0  # resize/convert, copy into the frame buffer, flush
    accelerator: float = 0.0  # AP_START written -> done seen
    postprocess: float = 0.0  # invalidate, logits copy, upsampling, argmax
    total: float = 0.0  # the frame in -> its labels out (overlaps the previous frame when pipelined)


#: Buffers of a command that never finished: the accelerator may still write them, so their
#: memory is never handed back (pynq's ``freebuffer`` frees at once, and Linux reuses freed
#: contiguous memory for ordinary pages). They live until the process ends; downloading the
#: bitstream again (a new Segmenter) resets the accelerator.
STRANDED: list = []

#: Seconds ``Accelerator.close`` waits for a command still in flight before stranding its buffers.
CLOSE_WAIT_S = 10.0


class Accelerator:
    """The buffers of one model on one accelerator, and the commands that use them.

    Parameters
    ----------
    ip : SenteiDriver
        The accelerator's driver (``SenteiIP`` on a board, :class:`EmulatedIP` on a PC).
    allocate : callable
        ``allocate(shape, dtype)`` returning buffers with ``device_address``, ``flush()``,
        ``invalidate()`` and ``freebuffer()`` (``pynq.allocate`` or ``EmulatedOverlay.allocate``).
    model : Model
        The model whose weight blob is loaded, once, here.
    timeout : float
        Seconds to wait for each command, per frame: a ``RUN_FRAME`` of n frames waits n times it.
    slots : int
        Frame/logits buffer pairs (2: one running, one being prepared).
    batch : int
        Frames each pair holds (1 to :data:`MAX_BATCH`): a frame buffer is ``[batch, 4*frame_words]``
        uint8 (frame n at word ``n*frame_words``), a logits buffer ``[batch, h, w, C]`` int32.
        :meth:`reserve` grows them.
    row_ports : sequence of (str, int)
        ``network.json``'s row ports in argument order, ``(argument, offset_bytes)``, as
        :func:`row_ports_of` returns them, checked (it is what reads them): the layers that keep line-buffer rows in DDR. With any, one
        scratch buffer of ``row_buffer_bytes`` (:attr:`rows`) is allocated with the weights and
        kept while the model is loaded, and before every ``RUN_FRAME`` (none before
        ``LOAD_WEIGHTS``) each port's register gets its address + the port's ``offset_bytes``;
        the register map is checked for the ports first. Only the accelerator touches the
        buffer: never written, flushed or invalidated by the host.
    row_buffer_bytes : int
        ``network.json``'s ``row_buffer_bytes``: the size of that buffer (0 without row ports;
        :func:`row_ports_of` too).
    shared_windows : sequence of dict
        ``network.json``'s layers with one window for all lanes (:func:`shared_windows_of`):
        their weights go into the blob in schedule order (:mod:`sentei.host.modelfile.schedule`).
    """

    def __init__(self, ip: SenteiDriver, allocate: Callable, model, timeout: float, slots: int = 2,
                 batch: int = 1, row_ports=(), row_buffer_bytes: int = 0, shared_windows=()):
        from sentei.host.modelfile.schedule import scheduled_blob
        from sentei.host.modelfile.schema import weight_blob

        self.ip = ip
        self.model = model
        self.timeout = float(timeout)
        self._allocator = allocate
        self._buffers: list = []
        self.rows = None  # the row buffer (rows in DDR), or None
        self.row_ports: list[tuple[str, int]] = []  # (argument, offset_bytes) in argument order
        self.running: int | None = None  # the slot whose frames the accelerator is computing
        self._running_count = 0  # frames of the running command
        self._loaded = [0] * slots  # frames loaded into each slot
        self._in_flight = False  # a command started and its done not yet seen
        self.frames: list = []
        self.logits: list = []
        self.batch = 0
        self._check_batch_size(batch)
        row_bytes, self.row_ports = int(row_buffer_bytes), [(str(name), int(offset)) for name, offset in row_ports]
        if self.row_ports:
            ip.check_register_map(self.row_ports)  # the row ports the network needs, before any allocation
        try:
            blob = scheduled_blob(model, weight_blob(model), shared_windows)
            self.weights = self._allocate(allocate, blob.shape, np.uint32)
            if self.row_ports:  # 64-byte aligned at least (pynq.allocate: page aligned)
                self.rows = self._allocate(allocate, (row_bytes,), np.uint8)
            self._allocate_slots(batch, slots)
            self.weights[:] = blob
            self.weights.flush()
            self._start(R.CMD_LOAD_WEIGHTS, weights=self.weights.device_address)
            check_status(self._wait(), f"the weights of {model.name}")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _check_batch_size(batch) -> None:
        if not isinstance(batch, (int, np.integer)) or not 1 <= batch <= MAX_BATCH:
            raise SenteiError(f"batch={batch!r}: a batch is 1 to {MAX_BATCH} frames")

    def _allocate(self, allocate, shape, dtype):
        buf = allocate(shape, dtype=dtype)
        self._buffers.append(buf)
        return buf

    def _allocate_slots(self, batch: int, slots: int) -> None:
        q = self.model.input
        c, h, w = self.model.shapes()[-1]
        stride = 4 * frame_words(q.height, q.width)
        self.frames = [self._allocate(self._allocator, (batch, stride), np.uint8) for _ in range(slots)]
        self.logits = [self._allocate(self._allocator, (batch, h, w, c), np.int32) for _ in range(slots)]
        self.batch = batch

    def reserve(self, batch: int) -> None:
        """Make every slot hold at least ``batch`` frames (reallocates its buffers; only while idle)."""
        self._check_batch_size(batch)
        if batch <= self.batch:
            return
        if self.closed:
            raise SenteiError("the accelerator's buffers are closed")
        if self._in_flight or self.running is not None:
            raise SenteiError("cannot grow the frame buffers while a batch runs; collect it first")
        old = self.frames + self.logits  # the weights and the row buffer stay
        for buf in old:
            buf.freebuffer()
        self._buffers = [b for b in self._buffers if not any(b is o for o in old)]
        slots = len(self.frames)
        self.frames, self.logits = [], []
        self._loaded = [0] * slots
        self._allocate_slots(batch, slots)

    def _start(self, command: int, **pointers) -> None:
        self._in_flight = True
        self.ip.start_command(command, **pointers)

    def _wait(self, frames: int = 1) -> int:
        try:
            status = self.ip.wait_done(self.timeout * max(1, frames))
        except HardwareTimeoutError:
            self.close(wait=False)  # it had its timeout: strand the buffers at once
            raise
        self._in_flight = False
        return status

    def load_frame(self, slot: int, frame: np.ndarray) -> None:
        """Copy one prepared frame (uint8 ``[H, W, 3]`` at the model's size) into buffer ``slot``, flush it."""
        self.load_frames(slot, [frame])

    def load_frames(self, slot: int, frames) -> None:
        """Copy prepared frames (each uint8 ``[H, W, 3]``) back to back into buffer ``slot``, flush them.

        Frame n goes to word ``n*frame_words`` (its padding to a whole word stays 0). Safe
        while the other slot runs: the accelerator reads only the buffer whose address it was given.
        """
        if slot == self.running:
            raise SenteiError(f"frame slot {slot} is in use by the running frames")
        frames = list(frames)
        buf = self.frames[slot]
        check_batch(len(frames), buf, self.logits[slot], self.model)
        q = self.model.input
        size = q.height * q.width * 3
        for n, frame in enumerate(frames):
            np.copyto(buf[n, :size].reshape(q.height, q.width, 3), frame)
        (buf if len(frames) == self.batch else buf[:len(frames)]).flush()
        self._loaded[slot] = len(frames)

    def submit(self, slot: int, frames: int | None = None) -> None:
        """Start ``CMD_RUN_FRAME`` on the frames loaded into ``slot`` (or its first ``frames``); returns at once."""
        if self.running is not None:
            raise SenteiError(f"frame slot {self.running} is still running; collect it first")
        count = (self._loaded[slot] or 1) if frames is None else int(frames)
        check_batch(count, self.frames[slot], self.logits[slot], self.model)
        q = self.model.input
        rows = None  # every start: each row port at its region of the one row buffer
        if self.rows is not None:
            rows = {name: self.rows.device_address + offset for name, offset in self.row_ports}
        self._start(R.CMD_RUN_FRAME, frame=self.frames[slot].device_address,
                    logits=self.logits[slot].device_address, height=q.height, width=q.width, frames=count,
                    rows=rows)
        self.running, self._running_count = slot, count

    def collect(self) -> np.ndarray:
        """Wait for a running single frame, invalidate its logits; int32 logits ``[C, h, w]``."""
        if self.running is not None and self._running_count != 1:
            raise SenteiError(f"{self._running_count} frames are running: collect them with collect_frames()")
        return self.collect_frames()[0]

    def collect_frames(self) -> np.ndarray:
        """Wait for the running frames, invalidate their logits; int32 logits ``[n, C, h, w]``."""
        slot, self.running = self.running, None
        if slot is None:
            raise SenteiError("no frame is running")
        count = self._running_count
        check_status(self._wait(count), "the frame" if count == 1 else f"the batch of {count} frames")
        buf = self.logits[slot]
        view = buf if count == self.batch else buf[:count]
        view.invalidate()
        return np.array(view, dtype=np.int32).transpose(0, 3, 1, 2)

    def run_frames(self, frames) -> np.ndarray:
        """int32 logits ``[n, C, h, w]`` of prepared frames, ``batch`` frames per start (one start for n <= batch)."""
        frames = list(frames)
        if not frames:
            return np.zeros((0, *self.model.shapes()[-1]), dtype=np.int32)
        if self.running is not None:
            raise SenteiError(f"frame slot {self.running} is still running; collect it first")
        out = []
        for first in range(0, len(frames), self.batch):
            self.load_frames(0, frames[first:first + self.batch])
            self.submit(0)
            out.append(self.collect_frames())
        return np.concatenate(out)

    @property
    def closed(self) -> bool:
        return not self._buffers

    def close(self, wait: bool = True) -> None:
        """Free every buffer (idempotent), never under a running accelerator.

        A command still in flight (closed mid-frame, Ctrl-C during the weight load) is given
        up to :data:`CLOSE_WAIT_S` per frame to finish (``wait``); one that does not finish leaves
        its buffers allocated in :data:`STRANDED` rather than freed under the accelerator's writes.
        """
        buffers, self._buffers = self._buffers, []
        if buffers and self._in_flight and wait:
            try:
                n = max(1, self._running_count if self.running is not None else 1)
                self.ip.wait_done(min(self.timeout, CLOSE_WAIT_S) * n)
                self._in_flight = False
            except Exception:  # hung, or the driver already gone: keep the memory away from Linux
                pass
        if self._in_flight:
            STRANDED.extend(buffers)
        else:
            for buf in buffers:
                buf.freebuffer()
        self.running = None


# ---------------------------------------------------------------------------------------
# the board


def pynq_device_status() -> tuple[bool, str]:
    """Whether pynq imports and sees an FPGA device, with the reason when it does not.

    Never raises: a missing or broken pynq, or XRT without a device, is a reason.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No devices found, is the XRT environment sourced?"
            import pynq

            devices = list(pynq.Device.devices)
    except ImportError:
        return False, "pynq is not installed (on a PYNQ board: pip install 'sentei[board]')"
    except Exception as exc:  # a broken XRT install, missing permissions, ...
        return False, f"pynq could not look for a device ({exc.__class__.__name__}: {exc})"
    if not devices:
        return False, "pynq is installed but finds no FPGA device (not a PYNQ board)"
    return True, f"pynq finds {getattr(devices[0], 'name', 'a device')}"


def find_bitstream(bitfile: str | os.PathLike | None = None, root: Path | None = None,
                   environ=None, fetch: bool = False) -> Path | None:
    """The accelerator's ``.bit``: ``bitfile``, else ``$SENTEI_BITSTREAM``, else the installed one.

    Installed bitstreams live in ``sentei/overlay/bitstreams/<board>/sentei.bit`` (``.hwh`` and
    ``network.json`` beside). On a PYNQ image the one whose board is the board PYNQ names in
    ``$BOARD`` (``pynq_board`` of ``overlay/boards/<board>.json``: ``Ultra96`` for ultra96v2); a
    board with none is refused, never given another board's design. A ``.bit`` directly in
    ``bitstreams/`` is taken for any board.

    An installed bitstream may be a PYNQ link instead of the files: ``sentei.bit.link``,
    ``sentei.hwh.link`` and ``network.json.link`` in the board's folder (PYNQ's ``.link`` JSON,
    ``{"url": ..., "md5sum": ...}``). With ``fetch`` they are downloaded beside the links
    (:func:`fetch_links`) on first use; without, such a bitstream is refused in one line.
    None when nothing is installed.
    """
    environ = os.environ if environ is None else environ
    if bitfile is None:
        bitfile = environ.get(BITSTREAM_ENV) or None
    if bitfile is not None:
        path = Path(bitfile)
        if not path.is_file():
            raise SenteiError(f"bitstream not found: {path} (build it with `make -C overlay`, docs/build.md)")
        if not path.with_suffix(".hwh").is_file():
            raise SenteiError(f"{path.with_suffix('.hwh')} is missing: PYNQ needs the .hwh beside the .bit")
        return _with_network(path)
    import sentei.overlay

    overlay_dir = Path(sentei.overlay.__file__).resolve().parent
    root = Path(root or BITSTREAM_ROOT or overlay_dir / "bitstreams")
    found = _installed(root, "*/") + _installed(root, "")
    board = environ.get("BOARD")
    if not found or (board is None and len(found) == 1):
        return _fetched(found[0], fetch) if found else None
    if board is None:
        raise SenteiError(f"{len(found)} bitstreams are installed ({', '.join(str(p.relative_to(root)) for p in found)}) "
                          f"and $BOARD is not set: set BOARD, or pass bitfile= (or ${BITSTREAM_ENV})")

    def norm(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    from sentei.overlay.perf import known_boards, load_board

    def for_board(path: Path) -> bool:
        if path.parent == root:  # a .bit for any board
            return True
        name = path.parent.name
        names = {name, load_board(name).spec["pynq_board"]} if name in known_boards() else {name}
        return norm(board) in {norm(n) for n in names}

    match = [p for p in found if for_board(p)]
    if not match:
        raise SenteiError(f"no installed bitstream is for this board ($BOARD={board}); installed: "
                          f"{', '.join(str(p.relative_to(root)) for p in found)}: build one for it "
                          f"(make -C overlay BOARD=..., docs/build.md) or pass bitfile=")
    return _fetched(match[0], fetch)


LINK_SUFFIX = ".link"  # PYNQ's link files: the JSON of where a file is downloaded from


def _installed(root: Path, folder: str) -> list[Path]:
    """The ``.bit`` files under ``root/folder``, and in a board's folder those only linked (``sentei.bit.link``).

    Links only in a board's folder: PYNQ's resolver walks the folder it is given and everything below it.
    """
    bits = set(root.glob(f"{folder}*.bit"))
    if folder:
        bits |= {p.with_suffix("") for p in root.glob(f"{folder}*.bit{LINK_SUFFIX}")}
    return sorted(bits)


def _fetched(path: Path, fetch: bool) -> Path:
    """``path`` once it is a file: downloaded through its ``.link`` files where ``fetch``."""
    if not path.is_file():
        if not fetch:
            raise SenteiError(f"{path} is only linked ({path.name}{LINK_SUFFIX}), not downloaded: SenteiOverlay() "
                              f"downloads it, or sentei.host.runtime.driver.fetch_links('{path.parent}')")
        fetch_links(path.parent)
        for need in (path, path.with_suffix(".hwh")):
            if not need.is_file():
                raise SenteiError(f"{need} is missing after downloading the .link files of {path.parent}: "
                                  f"add {need.name}{LINK_SUFFIX} there (docs/build.md)")
    return _with_network(path)


def fetch_links(folder: str | os.PathLike) -> None:
    """Download the files that the PYNQ ``.link`` files in ``folder`` name, beside them.

    The link format and the download (md5-checked) are PYNQ's: ``pynqutils.setup_utils.download_overlays``,
    which ``pynq get-notebooks`` and PYNQ's ``download_overlays`` setup command also use. A link
    of the ``{"url": ..., "md5sum": ...}`` form becomes the file of its name without ``.link``.
    """
    try:
        from pynqutils.setup_utils import download_overlays
    except ImportError:
        raise SenteiError(f"{folder} holds PYNQ .link files, which pynqutils (installed with pynq) downloads: "
                          f"pip install 'sentei[board]' on the board") from None
    try:
        download_overlays(str(folder), fail_at_lookup=True)
    except Exception as exc:  # no network, a wrong md5sum, a link for no device: one line
        raise SenteiError(f"could not download the files linked in {folder} "
                          f"({exc.__class__.__name__}: {exc})") from None


def _with_network(path: Path) -> Path:
    """``path``, once its ``network.json`` is there: without it no model can be checked against the
    bitstream (:func:`check_network`), so the bitstream is not usable -- said before anything opens,
    where ``auto`` can still fall back to the emulation."""
    if not path.with_name("network.json").is_file():
        raise SenteiError(f"{path.with_name('network.json')} is missing: the build publishes it beside "
                          f"{path.name} (make -C overlay); copy it with the .bit and .hwh")
    return path


def check_network(model, bitfile) -> dict:
    """Refuse a model whose weight blob is not the length the bitstream was built for; the bitstream's facts.

    The accelerator reads exactly its compiled ``blob_words`` (the header's offsets do not pin
    the last layer's K), so a shorter blob would be read past its end and a longer one
    misaligned, with ``STATUS_OK``. ``network.json``, published beside the ``.bit`` by the
    build, says what the bitstream was built for; it is returned (its row ports:
    :func:`row_ports_of`, checked here too).
    """
    from sentei.host.modelfile.schema import blob_words

    facts = json.loads(_with_network(Path(bitfile)).with_name("network.json").read_text())
    if not isinstance(facts, dict):
        row_ports_of(facts, bitfile)  # refused in one line
    words = blob_words(model)  # from the shapes: the blob itself is built once, by the Accelerator
    if words != int(facts.get("blob_words", -1)):
        raise SenteiError(f"{model.name}: its weight blob is {words} words, the bitstream {bitfile} was built "
                          f"for {facts.get('model', 'another network')} ({facts.get('blob_words')} words): build "
                          f"the bitstream for this model (make -C overlay MODEL=...)")
    row_ports_of(facts, bitfile)  # malformed row ports are refused here, before anything opens
    shared_windows_of(facts, model, bitfile)  # and malformed shared windows
    return facts


#: A row port's argument: ``rows<n>``, n the index of its layer in the network.
ROW_ARGUMENT = re.compile(r"rows[0-9]{1,6}")
ROW_WORD_BYTES = 8  # a row port's data word (row_word_t, 64 bits): each region starts on one


def _shown(value, limit: int = 40) -> str:
    """``value`` from a file, for a one-line message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _byte_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 0


def row_ports_of(facts: dict, bitfile=None, source: str | None = None) -> tuple[int, list[tuple[str, int]]]:
    """The row buffer and row ports a bitstream needs: ``(row_buffer_bytes, [(argument, offset_bytes)])``.

    ``network.json`` (``NetworkFacts.to_json``) has the top-level ``row_buffer_bytes`` and
    ``row_ports``, ``[{"argument": "rows5", "layer": "conv6", "offset_bytes": 0, "bytes": 61440},
    ...]`` in argument order: the conv layers that keep line-buffer rows in DDR, each with its own
    pointer argument ``rows<n>`` after ``status`` and its region of one row buffer. Both absent
    (an older network.json), or 0 and empty: ``(0, [])``. Anything malformed -- not a byte count,
    not a ``rows<n>`` argument, an argument twice or out of order, a region not 8-byte aligned,
    beyond the buffer or overlapping another, a buffer without ports -- is refused in one line,
    naming the ``network.json`` beside ``bitfile`` (or ``source``, where the facts come from elsewhere).
    """
    where = f"{Path(bitfile).with_name('network.json')}" if bitfile is not None else "network.json"

    def refuse(what: str):
        if source is not None:
            raise SenteiError(f"{source}: {what}")
        raise SenteiError(f"{where}: {what}: publish the network.json of the bitstream's own build")

    if not isinstance(facts, dict):
        refuse(f"holds {type(facts).__name__}, not an object")
    size, ports = facts.get("row_buffer_bytes", 0), facts.get("row_ports", [])
    if not _byte_count(size):
        refuse(f"row_buffer_bytes is {_shown(size)}, not a byte count (0 or more)")
    if not isinstance(ports, list):
        refuse(f"row_ports is {_shown(ports)}, not a list")
    out, regions, last = [], [], -1
    for j, port in enumerate(ports):
        if not isinstance(port, dict):
            refuse(f"row_ports[{j}] is {_shown(port)}, not an object")
        name, offset, nbytes = port.get("argument"), port.get("offset_bytes"), port.get("bytes")
        match = ROW_ARGUMENT.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            refuse(f"row_ports[{j}].argument is {_shown(name)}, not rows<n> (n: the layer's index)")
        layer = int(name[4:])
        if layer <= last:
            refuse(f"row_ports[{j}].argument {name} does not follow {out[-1][0]} (argument order: network order)")
        last = layer
        for key, value in (("offset_bytes", offset), ("bytes", nbytes)):
            if not _byte_count(value):
                refuse(f"row_ports[{j}].{key} of {name} is {_shown(value)}, not a byte count (0 or more)")
        if offset % ROW_WORD_BYTES:
            refuse(f"row_ports[{j}].offset_bytes of {name} is {offset}, not a multiple of {ROW_WORD_BYTES} "
                   f"(the port's 64-bit words)")
        if nbytes == 0:
            refuse(f"row_ports[{j}].bytes of {name} is 0: a port's region holds its layer's rows")
        if offset + nbytes > size:
            refuse(f"row_ports[{j}] {name}: its {nbytes} bytes at offset_bytes {offset} do not lie within the "
                   f"row buffer of row_buffer_bytes {size}")
        for other, start, end in regions:
            if offset < end and start < offset + nbytes:
                refuse(f"row_ports[{j}] {name}: its bytes {offset}..{offset + nbytes} overlap {other}'s "
                       f"{start}..{end}")
        regions.append((name, offset, offset + nbytes))
        out.append((name, int(offset)))
    if size and not out:
        refuse(f"row_buffer_bytes is {size} but row_ports lists no port")
    return int(size), out


def shared_windows_of(facts: dict, model, bitfile=None, source: str | None = None) -> list[dict]:
    """The layers of a bitstream with one window for all their lanes: ``[{"layer", "lanes", "banks"}]``.

    ``network.json``'s ``shared_windows`` (``NetworkFacts.shared_windows``; absent in an older
    one: none). The host lays those layers' weights out in schedule order
    (:func:`sentei.host.modelfile.schedule.scheduled_blob`). Anything malformed -- not a list of
    objects, a layer that ``model`` does not have or named twice, lanes outside 1..Cout, fewer
    banks than lanes -- is refused in one line, naming the ``network.json`` beside ``bitfile``
    (or ``source``).
    """
    where = f"{Path(bitfile).with_name('network.json')}" if bitfile is not None else "network.json"

    def refuse(what: str):
        if source is not None:
            raise SenteiError(f"{source}: {what}")
        raise SenteiError(f"{where}: {what}: publish the network.json of the bitstream's own build")

    items = facts.get("shared_windows", []) if isinstance(facts, dict) else None
    if not isinstance(items, list):
        refuse(f"shared_windows is {_shown(items)}, not a list")
    out, seen = [], set()
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            refuse(f"shared_windows[{j}] is {_shown(item)}, not an object")
        values = [item.get(key) for key in ("layer", "lanes", "banks")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            refuse(f"shared_windows[{j}] is {_shown(item)}: layer, lanes and banks must be integers")
        layer, lanes, banks = values
        if not 0 <= layer < len(model.layers) or layer in seen:
            refuse(f"shared_windows[{j}].layer is {layer}: {model.name} has layers 0..{len(model.layers) - 1}, "
                   f"each named once")
        if not 1 <= lanes <= model.layers[layer].out_channels or banks < lanes:
            refuse(f"shared_windows[{j}] of layer {layer}: {lanes} lanes and {banks} banks (lanes 1.."
                   f"{model.layers[layer].out_channels}, at least as many banks)")
        seen.add(layer)
        out.append({"layer": layer, "lanes": lanes, "banks": banks})
    return out


class _BoardLock:
    """One sentei user of the programmable logic at a time (an ``flock`` on a file in /tmp).

    ``flock`` locks belong to an open file, so a second Segmenter is refused in the same
    process as well as in another one.
    """

    def __init__(self, owner: str):
        import fcntl

        path = Path(LOCK_DIR or tempfile.gettempdir()) / LOCK_NAME
        try:
            self._fh = self._open(path)
        except PermissionError:  # e.g. left read-only for others by an older sentei
            raise SenteiError(f"cannot open the accelerator lock {path}: another user owns it read-only; "
                              f"remove it (sudo rm {path}) when no sentei program is running") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise SenteiError(f"the FPGA accelerator is in use by {holder}; close that Segmenter first "
                              f"(seg.close() or a with-block), or stop that program") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{owner} (pid {os.getpid()})")
        self._fh.flush()

    @staticmethod
    def _open(path: Path):
        """The lock file, shared by every user: an existing one opened without O_CREAT (in a sticky
        /tmp, Linux's fs.protected_regular refuses a create-open of another user's file, even
        to root), a new one created exclusively and made writable for all (past the umask)."""
        try:  # O_EXCL answers EEXIST before fs.protected_regular is consulted
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return os.fdopen(os.open(path, os.O_RDWR), "r+")
        try:
            os.fchmod(fd, 0o666)
        except OSError:
            pass
        return os.fdopen(fd, "r+")

    def release(self) -> None:
        if self._fh is not None and not self._fh.closed:
            import fcntl

            self._fh.truncate(0)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


def pynq_allocator(ip) -> Callable:
    """``allocate(shape, dtype)``: ``pynq.allocate`` on the memory of the IP's device."""
    import pynq

    def allocate(shape, dtype):
        return pynq.allocate(shape, dtype=dtype, target=ip.device)

    return allocate


def find_ip(overlay) -> str:
    """Name of the sentei accelerator in ``overlay.ip_dict`` (matched by VLNV)."""
    for name, desc in overlay.ip_dict.items():
        if desc.get("type") == R.VLNV:
            return name
    raise SenteiError(f"the overlay has no sentei accelerator ({R.VLNV}): is it the sentei bitstream?")


def open_board(bitfile, owner: str, overlay=None):
    """Load the bitstream and bind the driver: ``(overlay, ip, allocate, release)``.

    Takes the board lock first (downloading a bitstream replaces whatever the programmable
    logic held), then builds ``pynq.Overlay`` with :func:`board_driver_class` imported, so
    ``overlay.<ip>`` is a ``SenteiIP`` also where the ``pynq.lib`` entry point is not installed. With ``overlay`` (a ``pynq.Overlay`` the caller
    already loaded) nothing is downloaded: the lock is taken and the driver bound to it.
    """
    lock = _BoardLock(owner)
    try:
        cls = board_driver_class()
        if overlay is None:
            import pynq

            overlay = pynq.Overlay(str(bitfile))
        name = find_ip(overlay)
        ip = getattr(overlay, name, None)
        if not isinstance(ip, cls):  # an overlay built before the driver was registered (or a stand-in)
            ip = cls(overlay.ip_dict[name])
        return overlay, ip, pynq_allocator(ip), lock.release
    except BaseException:
        lock.release()
        raise
