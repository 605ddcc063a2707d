"""The fast emulator: the reference engine's integers, computed the way the accelerator does.

Only the K stored weights of each filter are multiplied, and every filter of a layer has
the same K, so each layer is one regular gather-multiply-accumulate: for every filter and
every stored weight, a contiguous multiply-accumulate over a run of output pixels
(:mod:`sentei.host.emulator.kernels`, compiled by numba, parallel on all cores). Dense and
high-density layers instead run every filter over the union of the layer's taps, four
filters per pass (:func:`~sentei.host.emulator.kernels.conv_rows_dense`).

The integers are exactly those of :func:`sentei.host.modelfile.reference.run` (docs/model-format.md
section 3). A layer accumulates in float32 only when no partial sum can reach ``2**24``
(``max_o sum_j |w[o, j]| * amax < 2**24``, checked per layer at construction:
:func:`route_layer`), so every partial sum is an integer float32 holds exactly; otherwise
in int32. The bias, the requantization and the saturation are int64 in both cases.
:meth:`Emulator.plan` says which layer runs how, and why (docs/emulator.md).

All working buffers (the padded input of every layer, the accumulators, the logits)
are allocated once, when the :class:`Emulator` is built; a frame only writes into them.

numba is an optional dependency (``pip install sentei[fast]``). :func:`available` says
whether it can be used, and :func:`make_engine` falls back to the reference engine with a
one-line reason when it cannot.

Example
-------
>>> from sentei.host.emulator.engine import Emulator
>>> emu = Emulator(model)            # compiles on the first use on a machine, then cached
>>> logits = emu.run(frame)          # == sentei.host.modelfile.reference.run(model, frame), bit for bit
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sentei.cache import cache_dir
from sentei.errors import SenteiError
from sentei.host.modelfile import reference
from sentei.host.modelfile.schema import ConvLayer, Model, act_range

UNROLL = 4  # must equal sentei.host.emulator.kernels.UNROLL (checked when the kernels load)
FILTER_BLOCK = 4  # must equal sentei.host.emulator.kernels.FILTER_BLOCK (and TAP_BLOCK)
FLOAT_EXACT = 2**24  # float32 holds every integer of magnitude <= 2**24 exactly
DENSE_SPEEDUP = 2.0  # the dense kernel's MAC rate over the gather's, conservatively (docs/emulator.md)
FLOAT_PATHS = ("auto", "never", "always")
INT16 = (-(2**15), 2**15 - 1)
ROW_WIDTH = 100  # stride-1 layers with at least this many output columns run row by row
CHUNK = 1024  # output pixels per accumulator chunk of a narrow stride-1 layer (4 KiB: in L1)


def available() -> tuple[bool, str]:
    """Whether the fast emulator can run here.

    Returns
    -------
    ok : bool
        True when numba imports and the kernels load.
    reason : str
        Empty when ``ok``; otherwise one line naming what is missing and what to do.
    """
    if os.environ.get("SENTEI_DISABLE_NUMBA"):
        return False, "the fast emulator is disabled by SENTEI_DISABLE_NUMBA"
    try:
        _kernels()
    except ImportError as exc:
        return False, (f"the fast emulator needs numba ({exc}); install it with "
                       f"`pip install sentei[fast]` -- using the slow reference engine")
    return True, ""


def _kernels():
    # numba's cache=True writes beside the source by default, i.e. into site-packages; point it
    # at sentei's cache unless the user chose a place (read when numba is first imported)
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir("numba")))
    # import_module, not ``from sentei.host import ...``: it honours sys.modules, so a
    # missing numba is seen even after the kernels were imported once (the fallback test)
    emulator_kernels = importlib.import_module("sentei.host.emulator.kernels")
    if (emulator_kernels.UNROLL, emulator_kernels.FILTER_BLOCK, emulator_kernels.TAP_BLOCK) != (
            UNROLL, FILTER_BLOCK, FILTER_BLOCK):  # pragma: no cover - a guard against a half edit
        raise ImportError("sentei.host.emulator.kernels block sizes differ from sentei.host.emulator.engine's")
    return emulator_kernels


def set_emulator_threads(threads: int) -> None:
    """Give the fast emulator ``threads`` threads (``NUMBA_NUM_THREADS``, read when numba is imported)."""
    if threads < 1:
        raise SenteiError(f"--threads {threads}: must be at least 1")
    if "numba" in sys.modules:
        import numba

        if numba.config.NUMBA_NUM_THREADS != threads:
            raise SenteiError(f"--threads {threads}: numba is already loaded with "
                              f"{numba.config.NUMBA_NUM_THREADS} threads; set NUMBA_NUM_THREADS={threads} instead")
        return
    os.environ["NUMBA_NUM_THREADS"] = str(threads)


@dataclass
class _Plan:
    """Everything one layer needs at run time, computed once per model."""

    layer: ConvLayer
    kind: str  # "rows" (conv_rows), "chunks" (accumulate + requantize) or "dense" (conv_rows_dense)
    arith: str  # "float32" (exact: the bound is below 2**24) or "int32"
    src: np.ndarray  # the layer's phase-split input buffer (flat, with slack)
    out_shape: tuple[int, int, int]  # (Cout, Ho, Wo)
    offs: np.ndarray  # int64 [Cout, Kp]; "dense": int64 [Up], the taps every filter reads
    vals: np.ndarray  # int32 or float32 [Cout, Kp]; "dense": float32 [Coutp, Up], the dense-unpacked weights
    bias: np.ndarray  # int32 [Cout]
    mult: np.ndarray  # int64 [Cout]
    shift: np.ndarray  # int64 [Cout]
    requant: bool  # False for the logits (stored as accumulated)
    lo: int
    hi: int
    pitch: int  # input offset between two output rows
    acc: np.ndarray  # [Cout, chunks, chunk] (chunks), [Ho, Wo] (rows), [Ho, 4, Wo] (dense); of dtype arith
    scratch: np.ndarray  # int32 [Ho, Wo]: each requantized row before it is stored

    @property
    def rows(self) -> bool:
        """Whether the layer is computed one output row at a time (``rows`` or ``dense``)."""
        return self.kind != "chunks"


@dataclass(frozen=True)
class LayerRoute:
    """How the emulator computes one layer, and why (:meth:`Emulator.plan`).

    Attributes
    ----------
    name : str
        The layer's name.
    kind : str
        ``"dense"``: every filter over the union of the layer's taps, 4 filters per pass
        (:func:`~sentei.host.emulator.kernels.conv_rows_dense`, always float32);
        ``"rows"`` or ``"chunks"``: the gather of the K stored weights of each filter, row by
        row or in chunks.
    arith : str
        ``"float32"`` (integers held exactly: ``exact_in_float``) or ``"int32"``.
    k : int
        Stored weights per filter.
    taps : int
        Distinct ``(ci, ky, kx)`` taps the filters use together (what ``dense`` multiplies).
    bound : int
        ``max_o sum_j |w[o, j]| * amax``: the largest magnitude any partial sum can reach.
    exact_in_float : bool
        ``bound < 2**24`` (and the input range fits float32): the float path cannot round.
    reason : str
        One line: why this kind.
    """

    name: str
    kind: str
    arith: str
    k: int
    taps: int
    bound: int
    exact_in_float: bool
    reason: str


@dataclass(frozen=True)
class _Layout:
    """Where element (c, y, x) of an unpadded map lies in a padded, phase-split buffer.

    Padded element ``(c, r, q)`` is at ``c*plane + (r % s)*Hq*pitch + (r // s)*pitch +
    (q % s)*Wq + q // s`` with ``pitch = s*Wq`` (docs/emulator.md); ``s = 1`` is the
    plain padded channel-first layout.
    """

    channels: int
    height: int
    width: int
    pad: int
    stride: int

    @property
    def hq(self) -> int:
        return -(-(self.height + 2 * self.pad) // self.stride)

    @property
    def wq(self) -> int:
        """Length of one column phase of a padded row."""
        return -(-(self.width + 2 * self.pad) // self.stride)

    @property
    def pitch(self) -> int:
        """Distance between two consecutive output rows of the layer reading this buffer."""
        return self.stride * self.wq

    @property
    def plane(self) -> int:
        return self.stride * self.hq * self.pitch

    @property
    def size(self) -> int:
        return self.channels * self.plane

    def row_offsets(self) -> np.ndarray:
        """In-plane offset of every unpadded row ``y`` (int64 ``[height]``)."""
        r = np.arange(self.height, dtype=np.int64) + self.pad
        return (r % self.stride) * self.hq * self.pitch + (r // self.stride) * self.pitch

    def column_offsets(self) -> np.ndarray:
        """In-row offset of every unpadded column ``x`` (int64 ``[width]``)."""
        q = np.arange(self.width, dtype=np.int64) + self.pad
        return (q % self.stride) * self.wq + q // self.stride

    def tap_offsets(self, ci: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Offset of padded element ``(ci, dy, dx)``: what output pixel (0, 0) reads for a tap."""
        s = self.stride
        return (ci * self.plane + (dy % s) * self.hq * self.pitch + (dy // s) * self.pitch
                + (dx % s) * self.wq + dx // s)

    def unpack(self, buf: np.ndarray) -> np.ndarray:
        """The unpadded map ``[C, H, W]`` (int32) held in ``buf``."""
        planes = buf[:self.size].reshape(self.channels, self.plane)
        where = self.row_offsets()[:, None] + self.column_offsets()[None, :]
        return planes[:, where].astype(np.int32)


def _buffer_dtype(lo: int, hi: int) -> np.dtype:
    return np.dtype(np.int16) if INT16[0] <= lo and hi <= INT16[1] else np.dtype(np.int32)


class Emulator:
    """Bit-exact fast inference of a sentei model on the CPU.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
        A validated model (``sentei.host.modelfile.schema.load``).
    threads : int, optional
        Worker threads for the kernels; all cores by default.
    row_width : int, optional
        Stride-1 layers with at least this many output columns are computed row by row,
        narrower ones in chunks of the flattened map (both give the same integers; the
        tests force each schedule on every layer).
    float_path : {"auto", "never", "always"}, optional
        Which layers run in exact float32. ``"auto"``: every layer where it is exact, as the
        dense kernel (:func:`~sentei.host.emulator.kernels.conv_rows_dense`) where the cost
        model says it beats the gather (dense and high-density layers), else as the float
        gather; ``"always"``: the dense kernel for every layer where it is exact;
        ``"never"``: the integer gather everywhere. A layer whose partial sums could reach
        ``2**24`` always runs the integer gather. :meth:`plan` says what was chosen and why.

    Raises
    ------
    SenteiError
        When numba is not installed (check :func:`available` first, or use
        :func:`make_engine`, which falls back to the reference engine), or for a bad
        ``threads`` or ``float_path``.
    """

    def __init__(self, model: Model, threads: int | None = None, row_width: int = ROW_WIDTH,
                 float_path: str = "auto"):
        ok, reason = available()
        if not ok:
            raise SenteiError(reason)
        if float_path not in FLOAT_PATHS:
            raise SenteiError(f"float_path={float_path!r}: use one of {', '.join(FLOAT_PATHS)}")
        import numba

        self._numba = numba
        self._k = _kernels()
        self.model = model
        self.threads = int(threads) if threads else numba.config.NUMBA_NUM_THREADS
        if not 1 <= self.threads <= numba.config.NUMBA_NUM_THREADS:
            raise SenteiError(f"threads={threads} must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
                              f"(NUMBA_NUM_THREADS)")
        shapes = model.shapes()
        self._routes = [route_layer(model, n, row_width, float_path) for n in range(len(model.layers))]
        layouts = [_Layout(*shapes[n], layer.padding, layer.stride) for n, layer in enumerate(model.layers)]
        layouts.append(_Layout(*shapes[-1], 0, 1))  # the logits
        self._layouts = layouts
        # a float layer reads a float32 buffer (exact: its input range is below 2**24)
        dtypes = [np.dtype(np.float32) if r.arith == "float32" else _buffer_dtype(*model.input_range(n))
                  for n, r in enumerate(self._routes)] + [np.dtype(np.int32)]
        # a chunked layer computes rows of P (not Wo) pixels, up to a whole last chunk:
        # slack after its input so that those dropped pixels read inside the buffer
        runs = [self._run_shape(layouts[n], shapes[n + 1]) for n in range(len(model.layers))]
        slack = [nchunks * chunk for _, nchunks, chunk in runs] + [0]
        # zeros once: only interiors are ever written, so the padding stays zero for good
        self.buffers = [np.zeros(lay.size + extra, dtype=dt) for lay, extra, dt in zip(layouts, slack, dtypes)]
        self._plans = [self._plan(layer, self._routes[n], layouts[n], self.buffers[n], shapes[n + 1], runs[n])
                       for n, layer in enumerate(model.layers)]
        self._dst = [(lay.row_offsets(), lay.plane, lay.stride, lay.pad, lay.wq) for lay in layouts]
        self._cols = [lay.column_offsets() for lay in layouts]
        # the input quantization of every 8-bit pixel value per channel, by the reference itself
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # [1, 256, 3]
        self._lut = reference.quantize_input(model, ramp)[:, 0, :].astype(self.buffers[0].dtype)  # [3, 256]
        self._closed = False

    @staticmethod
    def _run_shape(src: _Layout, out_shape) -> tuple[int, int, int]:
        """``(length, chunks, chunk)`` of the flattened output run ``t = y*P + x`` of a layer."""
        _, ho, wo = out_shape
        length = (ho - 1) * src.pitch + wo
        chunk = min(CHUNK, -(-length // 64) * 64)
        return length, -(-length // chunk), chunk

    @staticmethod
    def _plan(layer: ConvLayer, route: LayerRoute, src: _Layout, buf: np.ndarray, out_shape, run) -> _Plan:
        kind, arith = route.kind, np.dtype(route.arith)
        k, d = layer.kernel, layer.dilation
        cout, kk = layer.out_channels, layer.k_nonzero
        if kind == "dense":
            # every filter over the union of the taps, zeros where it has no stored weight
            taps, where = np.unique(layer.indices.astype(np.int64), return_inverse=True)
            up = -(-taps.size // FILTER_BLOCK) * FILTER_BLOCK
            coutp = -(-cout // FILTER_BLOCK) * FILTER_BLOCK
            ci, rem = np.divmod(taps, k * k)
            ky, kx = np.divmod(rem, k)
            offs = np.zeros(up, dtype=np.int64)  # padding taps: weight 0 at offset 0
            offs[:taps.size] = src.tap_offsets(ci, ky * d, kx * d)
            dense = np.zeros((coutp, up), dtype=np.int64)
            np.add.at(dense, (np.repeat(np.arange(cout), kk), where.reshape(-1)), layer.values.reshape(-1))
            vals = dense.astype(np.float32)  # |w| <= 2**24 (the bound), so exact
        else:
            kp = -(-kk // UNROLL) * UNROLL
            ci, rem = np.divmod(layer.indices.astype(np.int64), k * k)
            ky, kx = np.divmod(rem, k)
            offs = np.zeros((cout, kp), dtype=np.int64)  # padding entries: weight 0 at offset 0
            offs[:, :kk] = src.tap_offsets(ci, ky * d, kx * d)
            vals = np.zeros((cout, kp), dtype=arith)
            vals[:, :kk] = layer.values
        requant = layer.act != "logits"
        lo, hi = act_range(layer.act, layer.out_bits) if requant else (-(2**31), 2**31 - 1)
        mult = layer.mult.astype(np.int64) if requant else np.ones(cout, np.int64)
        shift = layer.shift.astype(np.int64) if requant else np.zeros(cout, np.int64)
        _, nchunks, chunk = run
        _, ho, wo = out_shape
        acc = np.zeros({"rows": (ho, wo), "chunks": (cout, nchunks, chunk), "dense": (ho, FILTER_BLOCK, wo)}[kind],
                       dtype=arith)
        return _Plan(layer=layer, kind=kind, arith=route.arith, src=buf, out_shape=tuple(out_shape), offs=offs,
                     vals=vals, bias=layer.bias.astype(np.int32), mult=mult, shift=shift, requant=requant,
                     lo=int(lo), hi=int(hi), pitch=src.pitch, acc=acc, scratch=np.zeros((ho, wo), dtype=np.int32))

    def plan(self) -> list[LayerRoute]:
        """How each layer is computed (float or integer, which schedule) and why, in layer order."""
        return list(self._routes)

    # ---------------------------------------------------------------------------------

    def _check(self, frame: np.ndarray) -> np.ndarray:
        if self._closed:
            raise SenteiError("this Emulator is closed; build a new one")
        frame = np.asarray(frame)
        q = self.model.input
        if frame.dtype != np.uint8 or frame.shape != (q.height, q.width, 3):
            raise SenteiError(f"frame must be uint8 RGB [{q.height}, {q.width}, 3] (the model's input size), "
                              f"got {frame.dtype} {list(frame.shape)} (use sentei.host.data.preprocess.prepare_frame)")
        return np.ascontiguousarray(frame)

    def _forward(self, frame: np.ndarray) -> None:
        k, numba = self._k, self._numba
        previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            k.quantize_frame(frame, self._lut, self.buffers[0], self._dst[0][0], self._cols[0], self._dst[0][1])
            for n, p in enumerate(self._plans):
                requant = p.requant
                dst = self.buffers[n + 1]
                if p.kind == "dense":
                    k.conv_rows_dense(p.src, p.offs, p.vals, p.bias, p.mult, p.shift, p.lo, p.hi, requant, p.pitch,
                                      p.out_shape[2], p.acc, dst, *self._dst[n + 1], p.scratch)
                elif p.kind == "rows":
                    k.conv_rows(p.src, p.offs, p.vals, p.bias, p.mult, p.shift, p.lo, p.hi, requant, p.pitch,
                                p.out_shape[2], p.acc, dst, *self._dst[n + 1], p.scratch)
                else:
                    k.accumulate(p.src, p.offs, p.vals, p.acc)
                    k.requantize(p.acc, p.bias, p.mult, p.shift, p.lo, p.hi, requant, p.pitch, p.out_shape[1],
                                 p.out_shape[2], dst, *self._dst[n + 1], p.scratch)
        finally:
            numba.set_num_threads(previous)

    def run(self, frame: np.ndarray) -> np.ndarray:
        """Frame -> int32 logits ``[num_classes, h, w]``, equal to ``reference.run(model, frame)``.

        Parameters
        ----------
        frame : numpy.ndarray
            uint8 RGB ``[H, W, 3]`` at the model's input size.

        Returns
        -------
        numpy.ndarray
            A new int32 array (the emulator's own buffer is reused by the next frame).
        """
        self._forward(self._check(frame))
        return self.buffers[-1].reshape(self._layouts[-1].channels, self._layouts[-1].height,
                                        self._layouts[-1].width).copy()

    def run_all(self, frame: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits and every layer's output, like ``reference.run(model, frame, return_all=True)``.

        Returns
        -------
        logits : numpy.ndarray
            int32 ``[num_classes, h, w]``.
        activations : list of numpy.ndarray
            int32 ``[C, H, W]`` maps: the quantized input first, then each layer's output.
        """
        logits = self.run(frame)
        acts = [lay.unpack(buf) for lay, buf in zip(self._layouts, self.buffers)]
        return logits, acts

    def close(self) -> None:
        """Release the working buffers; the emulator cannot run afterwards."""
        self._closed = True
        self.buffers = []
        self._plans = []

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def float_bound(model: Model, index: int) -> int:
    """``max_o sum_j |w[o, j]| * amax`` of layer ``index``: no partial sum of any order exceeds it.

    ``amax`` is the largest magnitude of the layer's input (:meth:`Model.input_range`).
    Below ``2**24`` every partial sum is an integer float32 holds exactly (docs/emulator.md).
    """
    lo, hi = model.input_range(index)
    amax = max(abs(int(lo)), abs(int(hi)))
    layer = model.layers[index]
    if layer.out_channels == 0 or layer.k_nonzero == 0:
        return 0
    return int(np.abs(layer.values.astype(np.int64)).sum(axis=1).max()) * amax


def route_layer(model: Model, index: int, row_width: int = ROW_WIDTH, float_path: str = "auto") -> LayerRoute:
    """Choose how the emulator computes layer ``index`` (see :class:`Emulator` ``float_path``).

    The float path needs exactness (``bound < 2**24``, input range within ``2**24``). Under
    ``"auto"`` it is also cheaper: its cost ``Coutp * Up`` (every filter over the union
    of the taps, padded to blocks of 4) divided by :data:`DENSE_SPEEDUP` against the
    gather's ``Cout * Kp``.
    """
    layer = model.layers[index]
    cout, kk = layer.out_channels, layer.k_nonzero
    taps = int(np.unique(layer.indices).size)
    bound = float_bound(model, index)
    lo, hi = model.input_range(index)
    exact = bound < FLOAT_EXACT and max(abs(int(lo)), abs(int(hi))) <= FLOAT_EXACT
    _, _, wo = model.shapes()[index + 1]
    gather = "rows" if wo >= row_width or layer.stride > 1 else "chunks"  # stride-2 chunks: half waste
    dense_cost = -(-cout // FILTER_BLOCK) * FILTER_BLOCK * (-(-taps // FILTER_BLOCK) * FILTER_BLOCK) / DENSE_SPEEDUP
    gather_cost = cout * (-(-kk // UNROLL) * UNROLL)
    route = dict(name=layer.name, k=kk, taps=taps, bound=bound, exact_in_float=exact)
    if not exact:
        return LayerRoute(kind=gather, arith="int32",
                          reason=f"integer gather: partial sums up to {bound} >= 2^24 would round in float32", **route)
    if float_path == "never":
        return LayerRoute(kind=gather, arith="int32", reason="integer gather: float_path='never'", **route)
    exact_why = f"exact (bound {bound} < 2^24)"
    if float_path == "always":
        return LayerRoute(kind="dense", arith="float32", reason=f"float dense: {exact_why}, float_path='always'",
                          **route)
    if dense_cost < gather_cost:
        return LayerRoute(kind="dense", arith="float32", reason=f"float dense: {exact_why}, "
                          f"{gather_cost / dense_cost:.1f}x cheaper than the gather by the cost model", **route)
    return LayerRoute(kind=gather, arith="float32", reason=f"float gather: {exact_why}, "
                      f"{dense_cost / gather_cost:.1f}x cheaper than the dense kernel by the cost model", **route)


def make_engine(model: Model, prefer: str = "emu", warn: Callable[[str], None] | None = None):
    """A ``frame -> logits`` callable: the fast emulator when possible, else the reference engine.

    Parameters
    ----------
    model : Model
        The model to run.
    prefer : {"emu", "reference"}
        ``"emu"`` uses :class:`Emulator` when :func:`available`, otherwise falls back to
        :func:`sentei.host.modelfile.reference.run` and passes the reason to ``warn``.
    warn : callable, optional
        Receives the one-line fallback message (default: print to stderr).

    Returns
    -------
    engine : callable
        ``engine(frame) -> int32 logits``; it has a ``name`` attribute
        (``"emu"`` or ``"reference"``) and a ``close()`` method.
    """
    if prefer not in ("emu", "reference"):
        raise SenteiError(f"unknown engine {prefer!r}: use 'emu' or 'reference'")
    if prefer == "emu":
        ok, reason = available()
        if ok:
            emu = Emulator(model)
            return _Engine("emu", emu.run, emu.close)
        if warn is None:
            def warn(msg):
                print(f"sentei: warning: {msg}", file=sys.stderr)
        warn(reason)
    return _Engine("reference", lambda frame: reference.run(model, frame), lambda: None)


@dataclass
class _Engine:
    name: str
    run: Callable[[np.ndarray], np.ndarray]
    close: Callable[[], None]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.run(frame)
