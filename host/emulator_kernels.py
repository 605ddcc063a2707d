"""The numba kernels of the fast emulator (imported only by :mod:`sentei.host.emulator`).

Importing this module imports numba; :func:`sentei.host.emulator.available` does that
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

Two schedules of the same arithmetic (:class:`sentei.host.emulator.Emulator` picks one
per layer): :func:`conv_rows`, one output row per task, for wide or stride-2 layers, and
:func:`accumulate` + :func:`requantize`, chunks of the flattened map, for narrow stride-1
layers whose rows are too short to vectorize well.

Exactness: int32 accumulation never overflows (the model file bounds it,
docs/model-format.md section 3); requantization is done in int64 exactly as the
specification writes it (``(acc * mult + R) >> shift``, arithmetic shift, then clamp).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

UNROLL = 4  # stored weights per pass over a chunk; K is padded to a multiple of it


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
def _store(a, wo, m, sh, lo, hi, requant, dst, row, dst_stride, dst_pad, dst_wq):
    """Requantize ``a[:wo]`` (one output row of one filter) into row ``row`` of the next buffer.

    Output column ``x`` is padded column ``q = x + dst_pad`` of the next buffer, whose
    columns are split into ``dst_stride`` phases of ``dst_wq`` elements: each phase is
    written as one contiguous run (a scatter through a column table would not vectorize).
    Without ``requant`` (logits) the accumulator is stored as it is.
    """
    rnd = (np.int64(1) << (sh - 1)) if sh > 0 else np.int64(0)
    for ph in range(dst_stride):
        x0 = (ph - dst_pad) % dst_stride  # first output column in this phase
        d = dst[row + ph * dst_wq + (x0 + dst_pad) // dst_stride:]
        if requant:
            for i in range((wo - x0 + dst_stride - 1) // dst_stride):
                v = (np.int64(a[x0 + i * dst_stride]) * m + rnd) >> sh
                d[i] = min(max(v, lo), hi)
        else:
            for i in range((wo - x0 + dst_stride - 1) // dst_stride):
                d[i] = a[x0 + i * dst_stride]


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


@njit(parallel=True, cache=True, nogil=True)
def conv_rows(src, offs, vals, bias, mult, shift, lo, hi, requant, pitch, wo, acc, dst, dst_rows, dst_plane,
              dst_stride, dst_pad, dst_wq):
    """One sparse conv layer, one output row at a time (parallel over rows): for wide rows.

    Each (row, filter) accumulates its ``wo`` pixels in ``acc[y]`` (L1-resident) and
    writes them out at once, as :func:`requantize` does. ``pitch`` is the input offset
    between two output rows; the other arguments are those of :func:`accumulate` and
    :func:`requantize`; ``acc`` is int32 ``[Ho, wo]``.
    """
    ho = acc.shape[0]
    cout = vals.shape[0]
    for y in prange(ho):
        a = acc[y]
        ybase = y * pitch
        for o in range(cout):
            b = bias[o]
            for x in range(wo):
                a[x] = b
            _gather_mac(a, wo, src, ybase, offs[o], vals[o])
            _store(a, wo, mult[o], shift[o], lo, hi, requant, dst, o * dst_plane + dst_rows[y], dst_stride, dst_pad,
                   dst_wq)


@njit(parallel=True, cache=True, nogil=True)
def accumulate(src, offs, vals, bias, acc):
    """The accumulators of one sparse conv layer, parallel over (chunk, filter).

    Parameters
    ----------
    src : 1-D int16 or int32
        The layer's phase-split input buffer (with slack at the end for the dropped columns).
    offs : int64 [Cout, Kp]
        Input offset of every stored weight for output pixel (0, 0); ``Kp`` is K rounded
        up to :data:`UNROLL` with zero weights at offset 0.
    vals, bias : int32 [Cout, Kp], int32 [Cout]
        Weights (zero for the padding entries) and bias.
    acc : int32 [Cout, chunks, chunk]
        Output: ``acc[o].ravel()[t]`` is the accumulator of pixel ``t = y*P + x``.
    """
    cout, nchunks, chunk = acc.shape
    for item in prange(nchunks * cout):
        c = item // cout
        o = item - c * cout
        a = acc[o, c]
        t0 = c * chunk
        b = bias[o]
        for t in range(chunk):
            a[t] = b
        _gather_mac(a, chunk, src, t0, offs[o], vals[o])


@njit(parallel=True, cache=True, nogil=True)
def requantize(acc, mult, shift, lo, hi, requant, pitch, ho, wo, dst, dst_rows, dst_plane, dst_stride, dst_pad,
               dst_wq):
    """Requantize, activate, saturate and store the accumulators into the next layer's buffer.

    ``acc`` as written by :func:`accumulate`. Output ``(o, y, x)`` is padded column
    ``q = x + dst_pad`` of row ``o*dst_plane + dst_rows[y]`` of the next buffer, whose
    columns are split into ``dst_stride`` phases of ``dst_wq`` elements (:func:`_store`).
    Without ``requant`` (logits) the accumulator is stored as it is. Parallel over
    (filter, output row).
    """
    cout = acc.shape[0]
    flat = acc.reshape(cout, acc.shape[1] * acc.shape[2])
    for item in prange(cout * ho):
        o = item // ho
        y = item - o * ho
        a = flat[o, y * pitch:]
        _store(a, wo, mult[o], shift[o], lo, hi, requant, dst, o * dst_plane + dst_rows[y], dst_stride, dst_pad,
               dst_wq)
