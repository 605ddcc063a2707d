"""The numba kernels of the fast emulator (imported only by :mod:`sentei.host.emulator.engine`).

Importing this module imports numba; :func:`sentei.host.emulator.engine.available` does that
import inside a ``try`` so that a plain install (numpy + pillow) falls back to the
reference engine.

Data layout (docs/emulator.md). The input of every layer lives in one flat buffer,
channel-first, zero padded once at allocation, its rows and its columns split into the
``s`` phases of the stride ``s`` of the layer that reads it::

    padded element (c, r, q)  ->  c*plane + (r % s)*Hq*P + (r // s)*P + (q % s)*Wq + q // s

with ``Wq = ceil(Wp / s)``, ``Hq = ceil(Hp / s)`` and the row pitch ``P = s*Wq``. Output
pixel ``(y, x)`` reads padded element ``(ci, y*s + ky*d, x*s + kx*d)``, which is
``off_j + y*P + x`` with one constant ``off_j`` per stored weight ``j`` (computed once per
model). So for every weight, an output row -- and for stride 1 the whole output map
flattened as ``t = y*P + x`` (the ``P - Wo`` columns past ``Wo`` are computed and dropped) --
is one *contiguous* run of the input: each layer is, per filter, ``K`` contiguous
multiply-accumulates, which LLVM vectorizes, with no per-filter branching and no strided
access even for stride 2.

Three schedules (:class:`sentei.host.emulator.engine.Emulator` picks one per layer):
:func:`conv_rows`, one output row per task, for wide or stride-2 layers,
:func:`accumulate` + :func:`requantize`, chunks of the flattened map, for narrow stride-1
layers whose rows are too short to vectorize well, and :func:`conv_rows_dense`, every
filter over the union of the taps, four filters per pass, for dense layers.

Exactness: the gathers run on int16/int32 buffers with int32 accumulators, or on float32
buffers with float32 accumulators where the Emulator has proven that no partial sum can
reach ``2**24`` (then every partial sum is an integer float32 holds exactly;
docs/emulator.md). int32 accumulation never overflows (the model file bounds it,
docs/model-format.md section 3). The bias is added, and the requantization done, in int64
exactly as the specification writes it (``(acc + bias) * mult + R) >> shift``, arithmetic
shift, then clamp), by :func:`_store`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

UNROLL = 4  # stored weights per pass over a chunk; K is padded to a multiple of it
# LLVM may fuse ``a * b + c`` into one fused multiply-add (FMA: twice the multiply-adds per
# cycle). Only float arithmetic is affected, and there only on the float path, where every
# product and partial sum is an integer below 2**24: exact with or without the fusion
# (docs/emulator.md, "Why the float path is exact"). Nothing else of fastmath is enabled.
CONTRACT = {"contract"}


@njit(inline="always")
def _gather_mac(a, n, src, base, offs, vals):
    """``a[:n] += sum_j vals[j] * src[base + offs[j] : ... + n]``: one filter's stored weights.

    ``UNROLL`` weights per pass over ``a``, so the accumulator is loaded and stored once
    per four multiply-accumulates; the innermost loop is contiguous and vectorizes.
    """
    for j in range(0, vals.shape[0], UNROLL):
        w0 = vals[j]
        w1 = vals[j + 1]
        w2 = vals[j + 2]
        w3 = vals[j + 3]
        s0 = src[base + offs[j]:]
        s1 = src[base + offs[j + 1]:]
        s2 = src[base + offs[j + 2]:]
        s3 = src[base + offs[j + 3]:]
        for x in range(n):
            a[x] += w0 * s0[x] + w1 * s1[x] + w2 * s2[x] + w3 * s3[x]


@njit(inline="always")
def _store(a, b, wo, m, sh, lo, hi, requant, dst, row, dst_stride, dst_pad, dst_wq, r):
    """Requantize ``a[:wo] + b`` (one output row of one filter) into row ``row`` of the next buffer.

    Output column ``x`` is padded column ``q = x + dst_pad`` of the next buffer, whose
    columns are split into ``dst_stride`` phases of ``dst_wq`` elements. Two vectorizable
    passes: the requantization of the contiguous row into the int32 scratch row ``r``,
    then one contiguous run per phase, the strides 1 and 2 spelled out so that LLVM sees
    a constant stride (fused, or with a runtime stride, both passes stay scalar: 4-5x
    slower). Without ``requant`` (logits) the accumulator is stored as it is. ``a`` holds
    the sum of the products only: int32, or float32 holding exact integers (the float
    path); the bias ``b`` is added here, in int64, in both cases.
    """
    if requant:
        rnd = (np.int64(1) << (sh - 1)) if sh > 0 else np.int64(0)
        for x in range(wo):
            v = ((np.int64(a[x]) + b) * m + rnd) >> sh
            r[x] = min(max(v, lo), hi)
    else:
        for x in range(wo):
            r[x] = np.int64(a[x]) + b
    for ph in range(dst_stride):
        x0 = (ph - dst_pad) % dst_stride  # first output column in this phase
        d = dst[row + ph * dst_wq + (x0 + dst_pad) // dst_stride:]
        n = (wo - x0 + dst_stride - 1) // dst_stride
        if dst_stride == 1:
            for i in range(n):
                d[i] = r[x0 + i]
        elif dst_stride == 2:
            for i in range(n):
                d[i] = r[x0 + 2 * i]
        else:
            for i in range(n):
                d[i] = r[x0 + i * dst_stride]


@njit(parallel=True, cache=True, nogil=True)
def quantize_frame(frame, lut, dst, dst_rows, dst_cols, dst_plane):
    """uint8 frame ``[H, W, 3]`` -> the first layer's input buffer.

    ``lut[c, v]`` is the quantized value of pixel value ``v`` in channel ``c`` (256
    entries per channel, computed exactly in int64 by the host); pixel ``(y, x)`` of
    channel ``c`` goes to ``c*dst_plane + dst_rows[y] + dst_cols[x]``.
    """
    h, w, nc = frame.shape
    for y in prange(h):
        for c in range(nc):
            base = c * dst_plane + dst_rows[y]
            for x in range(w):
                dst[base + dst_cols[x]] = lut[c, frame[y, x, c]]


@njit(parallel=True, cache=True, nogil=True, fastmath=CONTRACT)
def conv_rows(src, offs, vals, bias, mult, shift, lo, hi, requant, pitch, wo, acc, dst, dst_rows, dst_plane,
              dst_stride, dst_pad, dst_wq, scratch):
    """One sparse conv layer, one output row at a time (parallel over rows): for wide rows.

    Each (row, filter) accumulates its ``wo`` pixels in ``acc[y]`` (L1-resident) and
    writes them out at once, as :func:`requantize` does. ``pitch`` is the input offset
    between two output rows; the other arguments are those of :func:`accumulate` and
    :func:`requantize`; ``acc`` and ``scratch`` are int32 ``[Ho, wo]``.
    """
    ho = acc.shape[0]
    cout = vals.shape[0]
    for y in prange(ho):
        a = acc[y]
        ybase = y * pitch
        for o in range(cout):
            for x in range(wo):
                a[x] = 0
            _gather_mac(a, wo, src, ybase, offs[o], vals[o])
            _store(a, np.int64(bias[o]), wo, mult[o], shift[o], lo, hi, requant, dst, o * dst_plane + dst_rows[y], dst_stride, dst_pad,
                   dst_wq, scratch[y])


@njit(parallel=True, cache=True, nogil=True, fastmath=CONTRACT)
def accumulate(src, offs, vals, acc):
    """The accumulators of one sparse conv layer, parallel over (chunk, filter).

    Parameters
    ----------
    src : 1-D int16, int32 or float32 (the float path: integers held exactly)
        The layer's phase-split input buffer (with slack at the end for the dropped columns).
    offs : int64 [Cout, Kp]
        Input offset of every stored weight for output pixel (0, 0); ``Kp`` is K rounded
        up to :data:`UNROLL` with zero weights at offset 0.
    vals : int32 or float32 [Cout, Kp]
        Weights (zero for the padding entries); the bias is added by :func:`requantize`.
    acc : int32 or float32 [Cout, chunks, chunk]
        Output: ``acc[o].ravel()[t]`` is the sum of products of pixel ``t = y*P + x``.
    """
    cout, nchunks, chunk = acc.shape
    for item in prange(nchunks * cout):
        c = item // cout
        o = item - c * cout
        a = acc[o, c]
        t0 = c * chunk
        for t in range(chunk):
            a[t] = 0
        _gather_mac(a, chunk, src, t0, offs[o], vals[o])


@njit(parallel=True, cache=True, nogil=True)
def requantize(acc, bias, mult, shift, lo, hi, requant, pitch, ho, wo, dst, dst_rows, dst_plane, dst_stride, dst_pad,
               dst_wq, scratch):
    """Requantize, activate, saturate and store the accumulators into the next layer's buffer.

    ``acc`` as written by :func:`accumulate`. Output ``(o, y, x)`` is padded column
    ``q = x + dst_pad`` of row ``o*dst_plane + dst_rows[y]`` of the next buffer, whose
    columns are split into ``dst_stride`` phases of ``dst_wq`` elements (:func:`_store`).
    Without ``requant`` (logits) the accumulator is stored as it is. Parallel over output
    rows (``scratch``: int32 ``[Ho, wo]``, one row per output row).
    """
    cout = acc.shape[0]
    flat = acc.reshape(cout, acc.shape[1] * acc.shape[2])
    for y in prange(ho):
        for o in range(cout):
            a = flat[o, y * pitch:]
            _store(a, np.int64(bias[o]), wo, mult[o], shift[o], lo, hi, requant, dst, o * dst_plane + dst_rows[y],
                   dst_stride, dst_pad, dst_wq, scratch[y])


FILTER_BLOCK = 4  # filters per pass of conv_rows_dense (Cout is padded to a multiple of it)
TAP_BLOCK = 4  # taps per pass of conv_rows_dense (the tap count is padded to a multiple of it)


@njit(parallel=True, cache=True, nogil=True, fastmath=CONTRACT)
def conv_rows_dense(src, offs, w, bias, mult, shift, lo, hi, requant, pitch, wo, acc, dst, dst_rows, dst_plane,
                    dst_stride, dst_pad, dst_wq, scratch):
    """One dense (or dense-unpacked) conv layer in exact float32, one output row per task.

    Every filter reads the same ``U`` taps, so each input run is loaded once for
    :data:`FILTER_BLOCK` filters: per pass, 4 taps x 4 filters = 16 multiply-adds for 4
    input loads and 4 accumulator loads and stores (the integer gather does 4 for 5), in
    float32 fused multiply-adds. Exact because the Emulator only routes a layer here when
    ``max_o sum_j |w[o, j]| * amax < 2**24`` (docs/emulator.md, "Why the float path is
    exact"): every partial sum, in any order, is an integer that float32 holds exactly.

    Parameters
    ----------
    src : 1-D float32
        The layer's phase-split input buffer (integers held exactly).
    offs : int64 [Up]
        Input offset of every tap for output pixel (0, 0); ``Up`` a multiple of
        :data:`TAP_BLOCK`, padding taps at offset 0 with zero weights.
    w : float32 [Coutp, Up]
        The dense weights (zeros where a filter does not use a tap; padding rows zero).
    bias, mult, shift : int32 [Cout], int64 [Cout], int64 [Cout]
        Added (bias, in int64 after the float sum) and requantization, as :func:`conv_rows`.
    acc : float32 [Ho, FILTER_BLOCK, wo]
        One accumulator row per filter of a block, per output row.
    scratch : int32 [Ho, wo]
        The requantized row before it is stored (:func:`_store`).
    """
    ho = acc.shape[0]
    cout = bias.shape[0]
    coutp, u = w.shape
    for y in prange(ho):
        a = acc[y]
        a0 = a[0]
        a1 = a[1]
        a2 = a[2]
        a3 = a[3]
        ybase = y * pitch
        for o in range(0, coutp, FILTER_BLOCK):
            for x in range(wo):
                a0[x] = 0
                a1[x] = 0
                a2[x] = 0
                a3[x] = 0
            for j in range(0, u, TAP_BLOCK):
                s0 = src[ybase + offs[j]:]
                s1 = src[ybase + offs[j + 1]:]
                s2 = src[ybase + offs[j + 2]:]
                s3 = src[ybase + offs[j + 3]:]
                w00, w01, w02, w03 = w[o, j], w[o, j + 1], w[o, j + 2], w[o, j + 3]
                w10, w11, w12, w13 = w[o + 1, j], w[o + 1, j + 1], w[o + 1, j + 2], w[o + 1, j + 3]
                w20, w21, w22, w23 = w[o + 2, j], w[o + 2, j + 1], w[o + 2, j + 2], w[o + 2, j + 3]
                w30, w31, w32, w33 = w[o + 3, j], w[o + 3, j + 1], w[o + 3, j + 2], w[o + 3, j + 3]
                for x in range(wo):
                    v0 = s0[x]
                    v1 = s1[x]
                    v2 = s2[x]
                    v3 = s3[x]
                    a0[x] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
                    a1[x] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
                    a2[x] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
                    a3[x] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3
            for q in range(min(FILTER_BLOCK, cout - o)):
                f = o + q
                _store(a[q], np.int64(bias[f]), wo, mult[f], shift[f], lo, hi, requant, dst,
                       f * dst_plane + dst_rows[y], dst_stride, dst_pad, dst_wq, scratch[y])


@njit(parallel=True, cache=True, nogil=True)
def bilinear_argmax(scores, ylo, yhi, wy0, wy1, xlo, xhi, wx0, wx1, out):
    """Labels: argmax over classes of the bilinearly resampled float32 maps (host post-processing).

    Output pixel ``(y, x)`` of class ``c`` is ``r(xlo) * wx0 + r(xhi) * wx1`` with
    ``r(q) = scores[c, ylo, q] * wy0 + scores[c, yhi, q] * wy1``: the float32 operations of
    :func:`sentei.host.modelfile.reference.resample`, in its order and without fused multiply-adds
    (no fastmath), so each value -- and the first class of the largest, as ``np.argmax``
    takes it -- is the reference's. Parallel over output rows; ``out`` is uint8 ``[H, W]``.
    """
    nc = scores.shape[0]
    hh, ww = out.shape
    for y in prange(hh):
        y0 = ylo[y]
        y1 = yhi[y]
        a0 = wy0[y]
        a1 = wy1[y]
        for x in range(ww):
            x0 = xlo[x]
            x1 = xhi[x]
            best = np.float32(0.0)
            arg = 0
            for c in range(nc):
                lo = scores[c, y0, x0] * a0 + scores[c, y1, x0] * a1
                hi = scores[c, y0, x1] * a0 + scores[c, y1, x1] * a1
                v = lo * wx0[x] + hi * wx1[x]
                if c == 0 or v > best:
                    best = v
                    arg = c
            out[y, x] = arg
