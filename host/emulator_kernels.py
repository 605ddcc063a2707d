"""The numba kernels of the fast emulator (imported only by :mod:`sentei.host.emulator`).

Importing this module imports numba; :func:`sentei.host.emulator.available` does that
import inside a ``try`` so that a plain install (numpy + pillow) falls back to the
reference engine.

Data layout (see docs/emulator.md). Every activation lives in one flat buffer per layer
input, channel-first and zero padded once at allocation::

    element (c, row, col) of the padded map  ->  c*plane + row*(s*Wq) + (col % s)*Wq + col // s

where ``s`` is the stride of the layer that *reads* the buffer and ``Wq = ceil(Wp / s)``:
the columns of each padded row are split into ``s`` phases, so that output pixel ``x``
of a stride-``s`` layer reads column ``x*s + kx*d`` at phase ``(kx*d) % s``, position
``x + (kx*d) // s`` -- contiguous in ``x`` for every stride. A stored weight ``j`` of
filter ``o`` therefore reads, for output row ``y``, the ``wo`` consecutive elements that
start at ``offs[o, j] + y*row_step``: the gather is one flat offset per weight, computed
once per model, and the innermost loop is a contiguous multiply-accumulate over ``x``
that LLVM vectorizes.

Exactness: the accumulator is int32, as in the accelerator; the model file guarantees
that ``|bias| + sum |w| * amax`` fits in 31 bits (docs/model-format.md section 3), so no
partial sum overflows. Requantization is done in int64 exactly as the specification
writes it (``(acc * mult + R) >> shift``, arithmetic shift, then clamp).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

UNROLL = 4  # stored weights per pass over an output row; K is padded to a multiple of it


@njit(parallel=True, cache=True, nogil=True)
def quantize_frame(frame, lut, dst, plane, row_pitch, row0, cols):
    """uint8 frame ``[H, W, 3]`` -> the first layer's padded input buffer.

    ``lut[c, v]`` is the quantized value of pixel value ``v`` in channel ``c`` (256
    entries per channel, computed in int64 by the host); ``cols[x]`` is the in-row
    offset of image column ``x`` and ``row0`` the offset of image row 0 (padding).
    """
    h, w, nc = frame.shape
    for y in prange(h):
        for c in range(nc):
            base = c * plane + row0 + y * row_pitch
            for x in range(w):
                dst[base + cols[x]] = lut[c, frame[y, x, c]]


@njit(parallel=True, cache=True, nogil=True)
def conv_layer(src, offs, vals, bias, mult, shift, lo, hi, requant, wo, row_step, acc,
               dst, dst_row0, dst_plane, dst_row, dst_cols):
    """One sparse conv layer over all output rows (parallel over rows).

    Parameters
    ----------
    src : 1-D int16 or int32
        The padded, phase-split input buffer of this layer.
    offs : int64 [Cout, Kp]
        Flat offset of every stored weight's input element for output pixel (0, 0);
        ``Kp`` is K rounded up to :data:`UNROLL` with zero weights at offset 0.
    vals : int32 [Cout, Kp]
        The weights (zero for the padding entries).
    bias, mult, shift : int32, int64, int64 [Cout]
        Bias and requantization constants (``mult``/``shift`` unused without ``requant``).
    lo, hi : int
        Saturation bounds of the output activation.
    requant : bool
        False for the ``logits`` layer: the accumulator is the output.
    wo, row_step : int
        Output width and the offset between the input windows of two output rows.
    acc : int32 [Ho, wo]
        Accumulator scratch, one row per output row (allocated once per model).
    dst : 1-D int16 or int32
        The next layer's input buffer (or the logits), written at
        ``dst_row0 + o*dst_plane + y*dst_row + dst_cols[x]``.
    """
    ho = acc.shape[0]
    cout, kp = vals.shape
    for y in prange(ho):
        a = acc[y]
        ybase = y * row_step
        for o in range(cout):
            b = bias[o]
            for x in range(wo):
                a[x] = b
            for j in range(0, kp, UNROLL):
                w0 = vals[o, j]
                w1 = vals[o, j + 1]
                w2 = vals[o, j + 2]
                w3 = vals[o, j + 3]
                s0 = src[ybase + offs[o, j]:]
                s1 = src[ybase + offs[o, j + 1]:]
                s2 = src[ybase + offs[o, j + 2]:]
                s3 = src[ybase + offs[o, j + 3]:]
                for x in range(wo):
                    a[x] += w0 * s0[x] + w1 * s1[x] + w2 * s2[x] + w3 * s3[x]
            dbase = dst_row0 + o * dst_plane + y * dst_row
            if requant:
                m = mult[o]
                sh = shift[o]
                rnd = (np.int64(1) << (sh - 1)) if sh > 0 else np.int64(0)
                for x in range(wo):
                    v = (np.int64(a[x]) * m + rnd) >> sh
                    if v < lo:
                        v = lo
                    elif v > hi:
                        v = hi
                    dst[dbase + dst_cols[x]] = v
            else:
                for x in range(wo):
                    dst[dbase + dst_cols[x]] = a[x]
