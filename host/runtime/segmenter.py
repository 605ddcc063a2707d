"""``Segmenter``: frames in, label maps out, on the FPGA or on its register-level emulation.

>>> from sentei.host import Segmenter
>>> with Segmenter("model.sentei", backend="auto") as seg:   # the board if there is one
...     labels = seg(frame)              # uint8 class per pixel, at the frame's size
...     maps = seg([f0, f1, f2, f3])     # four frames in one accelerator start (FRAMES = 4)
...     print(seg.backend, seg.timings)  # "fpga" or "emu", where the time went

Backends (every one runs :class:`sentei.host.runtime.driver.SenteiDriver`, the board's driver code,
down to the register writes and buffer addresses):

========== ==========================================================================
``fpga``   the board: ``pynq.Overlay`` with the sentei bitstream
``emu``    emulated overlay, computing with the fast emulator (numba); without numba the
           reference engine, said once
``reference`` emulated overlay, computing with the numpy reference engine
``csim``   emulated overlay, computing with the C-simulation build of the HLS sources
``auto``   ``fpga`` when pynq finds a board and a sentei bitstream, else ``emu``; says
           once which and why
========== ==========================================================================

Around the accelerator (docs/model-format.md section 5, identical for every backend): the
frame is converted to uint8 RGB and resized to the model's input (``fit="stretch"``) or
scaled into it with borders (``fit="letterbox"``); the accelerator quantizes it with the
model's input constants and returns int32 logits; the host scales them, upsamples them
bilinearly to the frame's size and takes the argmax.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from sentei.errors import HardwareTimeoutError, SenteiError
from sentei.host.runtime import driver as drv
from sentei.host.emulator import postprocess
from sentei.host.engine_registry import DEFAULT_BACKEND, SEGMENTER_BACKENDS

BACKENDS = SEGMENTER_BACKENDS  # the names of sentei.host.engine_registry.BACKENDS a Segmenter runs
FITS = ("stretch", "letterbox")
# seconds each command may take before HardwareTimeoutError (the board: milliseconds per frame;
# the reference engine on a large model: tens of seconds)
DEFAULT_TIMEOUT = {"fpga": 10.0, "emu": 300.0, "reference": 1800.0, "csim": 1800.0}
# frames whose timings a Segmenter keeps (a camera loop runs for hours: the history stays bounded
# and small, and mean_timing() stays cheap to call every frame)
HISTORY_FRAMES = 1000

_SAID: set[str] = set()


def say_once(message: str) -> None:
    """Print ``sentei: <message>`` on stderr the first time this process sees ``message``."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"sentei: {message}", file=sys.stderr)


@dataclass(frozen=True)
class BackendChoice:
    """The backend a request resolved to, and why."""

    name: str  # fpga | emu | reference | csim
    reason: str
    bitfile: object = None  # the .bit for fpga


def choose_backend(requested: str = DEFAULT_BACKEND, bitfile=None) -> BackendChoice:
    """Resolve a backend name (see the module docstring) without opening anything.

    Raises
    ------
    SenteiError
        For an unknown name, or ``fpga`` without a board or without a bitstream.
    """
    if requested not in BACKENDS:
        raise SenteiError(f"unknown backend {requested!r}: use one of {', '.join(BACKENDS)}")
    if requested in ("auto", "fpga"):
        ok, why = drv.pynq_device_status()
        if ok:
            path, missing = None, f"no sentei bitstream is installed (pass bitfile= or set ${drv.BITSTREAM_ENV})"
            try:
                path = drv.find_bitstream(bitfile)
            except SenteiError as exc:  # installed ones, none for this board: auto emulates and says why
                if requested == "fpga" or bitfile is not None:
                    raise
                missing = str(exc)
            if path is not None:
                return BackendChoice("fpga", f"the FPGA: {why}, bitstream {path}", path)
            why = f"{why}, but {missing}"
        if requested == "fpga":
            raise SenteiError(f"backend fpga: {why}; use --backend emu to run the emulated overlay")
        suffix = f" -- no FPGA: {why}"
        requested = "emu"
    else:
        suffix = ""
    if requested == "emu":
        from sentei.host.emulator.engine import available

        ok, why = available()
        if ok:
            return BackendChoice("emu", "emulated overlay on the fast emulator" + suffix)
        return BackendChoice("reference", f"emulated overlay on the reference engine ({why})" + suffix)
    if requested == "reference":
        return BackendChoice("reference", "emulated overlay on the numpy reference engine")
    return BackendChoice("csim", "emulated overlay on the C-simulation of the HLS sources")


@dataclass
class SegmentedFrame:
    """One frame's result."""

    frame: np.ndarray  # the frame as it was given
    labels: np.ndarray | None  # uint8 [H, W] at the frame's size (None when only logits were asked)
    logits: np.ndarray  # int32 [num_classes, h, w], the accelerator's output
    timing: drv.FrameTiming = field(default_factory=drv.FrameTiming)


@dataclass(frozen=True)
class _Box:
    """Where the frame went inside the model input: frame size and the content rectangle."""

    height: int
    width: int
    top: int
    left: int
    inner_h: int
    inner_w: int


class Segmenter:
    """Semantic segmentation of frames with one model on one accelerator.

    Parameters
    ----------
    model : Model, str, pathlib.Path or None
        A model, a ``.sentei`` file, a bundled model's name, or None for the default bundled model.
    backend : {"auto", "fpga", "emu", "reference", "csim"}
        Where it runs (see the module docstring).
    overlay : optional
        An overlay to use instead of a new one: a ``pynq.Overlay`` holding the sentei
        accelerator, or an :class:`~sentei.host.runtime.emulated_overlay.EmulatedOverlay` (then ``backend``
        is what that overlay computes with).
    bitfile : str or Path, optional
        The ``.bit`` to load on a board (default ``$SENTEI_BITSTREAM`` or the installed one).
    timeout : float, optional
        Seconds each accelerator command may take per frame (default by backend,
        :data:`DEFAULT_TIMEOUT`): a batch of n frames in one start may take n times it.
    fit : {"stretch", "letterbox"}
        How a frame of another aspect ratio is brought to the model's input.
    quiet : bool
        Do not print which backend ``auto`` picked.
    batch : int
        Frames per accelerator start in :meth:`stream` (1 to ``driver.MAX_BATCH``; default 1,
        the lowest latency); the buffers are sized for it. :meth:`segment_batch` and a list
        given to ``seg(...)`` run all their frames in one start whatever it is.

    Attributes
    ----------
    model : Model
    backend : str
        The resolved backend: ``"fpga"``, ``"emu"``, ``"reference"`` or ``"csim"``.
    backend_reason : str
        Why that backend.
    timings : FrameTiming
        Where the time of the last frame went (``accelerator`` is start -> done only).
    history : collections.deque of FrameTiming
        The last :data:`HISTORY_FRAMES` (1000) frames' timings.

    Raises
    ------
    SenteiError
        Unknown backend, ``fpga`` without a board, the accelerator in use by another
        Segmenter, or a model the bitstream cannot run.
    """

    def __init__(self, model=None, backend: str = DEFAULT_BACKEND, *, overlay=None, bitfile=None,
                 timeout: float | None = None, fit: str = "stretch", quiet: bool = False, batch: int = 1):
        if fit not in FITS:
            raise SenteiError(f"fit={fit!r}: use 'stretch' or 'letterbox'")
        if backend not in BACKENDS:
            raise SenteiError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        from sentei.host.modelfile import bundled

        self.model = bundled.load_model(model)
        self.fit = fit
        self.timings = drv.FrameTiming()
        self.history: deque = deque(maxlen=HISTORY_FRAMES)
        self._acc = None
        self._release = None
        self._own_overlay = None
        self.overlay = None
        from sentei.host.runtime.emulated_overlay import EmulatedOverlay

        if overlay is None:
            choice = choose_backend(backend, bitfile)
            if not quiet and (backend == "auto" or choice.name != backend):
                say_once(f"backend {choice.name}: {choice.reason}")
        elif isinstance(overlay, EmulatedOverlay):
            choice = BackendChoice(getattr(overlay.hardware, "name", "emulated"), "the given emulated overlay")
        else:
            choice = BackendChoice("fpga", "the given PYNQ overlay")
        self.backend, self.backend_reason = choice.name, choice.reason
        self.timeout = DEFAULT_TIMEOUT.get(self.backend, 300.0) if timeout is None else float(timeout)
        if self.timeout <= 0:
            raise SenteiError(f"timeout={timeout}: must be positive seconds")
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or not 1 <= batch <= drv.MAX_BATCH:
            raise SenteiError(f"batch={batch!r}: frames per accelerator start, 1 to {drv.MAX_BATCH}")
        self.batch = int(batch)
        owner = f"Segmenter(model {self.model.name!r}, backend {self.backend})"
        try:
            row_bytes, row_ports = 0, []  # the row buffer and row ports of a network with rows in DDR
            shared = []  # its layers with one window for all lanes: weights in schedule order
            if self.backend == "fpga":
                bitfile = choice.bitfile if overlay is None else getattr(overlay, "bitfile_name", None)
                if bitfile:  # before downloading anything: the model must be the bitstream's network
                    facts = drv.check_network(self.model, bitfile)
                    row_bytes, row_ports = drv.row_ports_of(facts, bitfile)
                    shared = drv.shared_windows_of(facts, self.model, bitfile)
                self.overlay, ip, allocate, self._release = drv.open_board(choice.bitfile, owner, overlay)
            else:
                if overlay is None:
                    overlay = self._own_overlay = EmulatedOverlay(self.model, hardware=self.backend)
                overlay.claim(owner)
                self._release = overlay.release
                self.overlay = overlay
                ip = drv.EmulatedIP(overlay.ip_dict[drv.find_ip(overlay)])
                allocate = overlay.allocate
                row_bytes = getattr(overlay, "row_buffer_bytes", 0)
                row_ports = list(getattr(overlay, "row_ports", []))
                shared = list(getattr(overlay, "shared_windows", []))
            ip.timeout = self.timeout
            ip.check_register_map(row_ports)
            self.ip = ip
            self._acc = drv.Accelerator(ip, allocate, self.model, self.timeout, batch=self.batch,
                                        row_ports=row_ports, row_buffer_bytes=row_bytes, shared_windows=shared)
        except BaseException:
            self.close()
            raise
        q = self.model.input
        self._pad = _pad_color(q)
        self._grids: dict = {}  # frame box -> the upsampling grid (postprocess.grid)
        self._argmax = postprocess.fused_kernel()  # the labels' fused kernel, or None: numpy

    # -- the public API ----------------------------------------------------------------

    def __call__(self, frame):
        """uint8 label map ``[H, W]`` of ``frame`` (any size; RGB, grayscale or RGBA).

        A list (or tuple) of frames gives the list of their label maps, all in one accelerator
        start (:meth:`segment_batch`).
        """
        if isinstance(frame, (list, tuple)):
            return [r.labels for r in self.segment_batch(frame)]
        return self.segment(frame).labels

    def logits(self, frame: np.ndarray) -> np.ndarray:
        """The accelerator's int32 logits ``[num_classes, h, w]`` for ``frame``."""
        for result in self.stream([frame], labels=False):
            return result.logits

    def segment(self, frame: np.ndarray) -> SegmentedFrame:
        """Labels, logits and timing of one frame."""
        for result in self.stream([frame]):
            return result

    def segment_batch(self, frames, labels: bool = True) -> list[SegmentedFrame]:
        """Labels, logits and timing of several frames, in one accelerator start.

        All of ``frames`` go through one ``CMD_RUN_FRAME`` with ``FRAMES = len(frames)``,
        overlapped in the accelerator's pipeline (more than :data:`sentei.host.runtime.driver.MAX_BATCH`:
        several starts of that many). The frame/logits buffers grow to the batch on first use.
        Every backend runs it (the emulated ones through the same registers).
        """
        frames = list(frames)
        if not frames:
            return []
        return list(self.stream(frames, labels=labels, batch=min(len(frames), drv.MAX_BATCH)))

    def stream(self, frames: Iterable[np.ndarray], labels: bool = True,
               batch: int | None = None) -> Iterator[SegmentedFrame]:
        """Segment a sequence of frames, pipelined: batch n+1 is prepared while batch n runs.

        Two frame/logits buffer pairs alternate: while the accelerator computes batch n from
        one, the host converts batch n+1 into the other, then waits for n, starts n+1, and
        post-processes n while n+1 runs. Results come in order, one batch behind the input.

        Parameters
        ----------
        frames : iterable of numpy.ndarray
            Frames of any size (a camera, a video, a list of images).
        labels : bool
            Also compute the label maps (False: logits only).
        batch : int, optional
            Frames per accelerator start (``FRAMES``; default the Segmenter's ``batch``). A
            batch waits for its frames: more throughput, up to ``batch - 1`` frames more latency.
            The last batch of a finite iterable may be shorter.

        Yields
        ------
        SegmentedFrame
            ``timing.accelerator`` of a frame is its batch's start -> done time divided by the
            batch's frames.
        """
        self._check_open()
        acc = self._acc
        batch = self.batch if batch is None else batch
        acc.reserve(batch)
        pending = None
        slot = 0
        it = iter(frames)
        try:
            while True:
                group = []  # (frame, box, t0, t_pre) of this batch
                prepared = []
                for frame in it:
                    t0 = time.perf_counter()
                    image, box = self._prepare(frame)
                    prepared.append(image)
                    group.append((frame, box, t0, time.perf_counter() - t0))
                    if len(group) == batch:
                        break
                if not group:
                    break
                t_load = time.perf_counter()
                acc.load_frames(slot, prepared)  # the copy and flush count in each frame's preprocess share
                t_load = (time.perf_counter() - t_load) / len(group)
                group = [(frame, box, t0, t_pre + t_load) for frame, box, t0, t_pre in group]
                finished = self._collect(pending) if pending is not None else None
                t_start = time.perf_counter()
                acc.submit(slot, len(group))
                pending = (group, t_start)
                slot ^= 1
                if finished is not None:
                    yield from self._finish_batch(*finished, labels=labels)
            if pending is not None:
                finished, pending = self._collect(pending), None
                yield from self._finish_batch(*finished, labels=labels)
        except HardwareTimeoutError:
            self.close()
            raise
        finally:
            if pending is not None and self._acc is not None and self._acc.running is not None:
                try:  # the consumer stopped early: leave the accelerator idle for the next call
                    self._acc.collect_frames()
                except SenteiError:
                    self.close()

    def blend(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """``frame`` (converted to RGB) with the colour-coded ``labels`` over it."""
        from sentei.host.data import preprocess, visualize

        return visualize.blend(preprocess.to_rgb8(frame), labels, self.model.class_colors, alpha)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """uint8 RGB image of a label map in the model's class colours."""
        from sentei.host.data import visualize

        return visualize.colorize(labels, self.model.class_colors)

    def mean_timing(self) -> drv.FrameTiming:
        """Mean of :attr:`history` (zeros before the first frame)."""
        n = max(len(self.history), 1)
        return drv.FrameTiming(*(sum(getattr(t, k) for t in self.history) / n
                                 for k in ("preprocess", "accelerator", "postprocess", "total")))

    @property
    def closed(self) -> bool:
        return self._acc is None

    def close(self) -> None:
        """Free the buffers and give the accelerator back (idempotent)."""
        acc, self._acc = self._acc, None
        if acc is not None:
            acc.close()
        release, self._release = self._release, None
        if release is not None:
            release()
        own, self._own_overlay = self._own_overlay, None
        if own is not None:
            own.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Segmenter(model={self.model.name!r}, backend={self.backend!r}, {state})"

    # -- pre- and post-processing ------------------------------------------------------

    def _check_open(self) -> None:
        if self._acc is None:
            raise SenteiError("this Segmenter is closed (after close() or an accelerator timeout); "
                              "create a new one")

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, _Box]:
        from sentei.host.data import preprocess

        rgb = preprocess.to_rgb8(frame)
        q = self.model.input
        fh, fw = rgb.shape[:2]
        if self.fit == "stretch" or (fh, fw) == (q.height, q.width):
            return preprocess.prepare_frame(rgb, q.height, q.width), _Box(fh, fw, 0, 0, q.height, q.width)
        scale = min(q.height / fh, q.width / fw)
        ih, iw = max(1, min(q.height, round(fh * scale))), max(1, min(q.width, round(fw * scale)))
        top, left = (q.height - ih) // 2, (q.width - iw) // 2
        canvas = np.empty((q.height, q.width, 3), dtype=np.uint8)
        canvas[:] = self._pad
        canvas[top:top + ih, left:left + iw] = preprocess.prepare_frame(rgb, ih, iw)
        return canvas, _Box(fh, fw, top, left, ih, iw)

    def _collect(self, pending):
        group, t_start = pending
        logits = self._acc.collect_frames()
        return group, (time.perf_counter() - t_start) / len(group), logits

    def _finish_batch(self, group, t_acc, logits, labels: bool = True) -> Iterator[SegmentedFrame]:
        for (frame, box, t0, t_pre), out in zip(group, logits):
            yield self._finish(frame, box, t0, t_pre, t_acc, out, labels=labels)

    def _finish(self, frame, box, t0, t_pre, t_acc, logits, labels: bool = True) -> SegmentedFrame:
        t1 = time.perf_counter()
        lab = self._labels(logits, box) if labels else None
        t2 = time.perf_counter()
        timing = drv.FrameTiming(preprocess=t_pre, accelerator=t_acc, postprocess=t2 - t1, total=t2 - t0)
        self.timings = timing
        self.history.append(timing)
        return SegmentedFrame(frame=frame, labels=lab, logits=logits, timing=timing)

    def _labels(self, logits: np.ndarray, box: _Box) -> np.ndarray:
        """Upsample the logits to the frame (through the letterbox) and take the argmax.

        The labels of :func:`sentei.host.modelfile.reference.labels_from_logits` (same sampling grid,
        same float32 operations), fused and on all cores when numba is there
        (:func:`sentei.host.emulator.postprocess.labels`); the grid is computed once per frame size.
        """
        grid = self._grids.get(box)
        if grid is None:
            if len(self._grids) >= postprocess.GRIDS_KEPT:  # a stream of ever new sizes stays bounded
                self._grids.clear()
            grid = self._grids[box] = postprocess.grid(self.model, box)
        scores = logits.astype(np.float32) * np.float32(self.model.output_scale)
        return postprocess.labels(scores, *grid, kernel=self._argmax)


def _pad_color(q) -> np.ndarray:
    """The pixel whose quantized input is closest to 0 per channel: letterbox borders pad with 0
    activations, like the network's own zero padding."""
    mul = np.asarray(q.mul, dtype=np.float64)
    add = np.asarray(q.add, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = np.where(mul != 0, -add / np.where(mul != 0, mul, 1), 0)
    return np.clip(np.rint(pix), 0, 255).astype(np.uint8)
