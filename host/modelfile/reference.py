"""The reference engine: the integer semantics of docs/model-format.md in plain numpy.

This is the definition of "correct" for every other engine (the fast emulator, the
C-simulation of the HLS sources, the FPGA): they must produce these integers bit for bit.
It is written to be obviously right, not fast: each conv layer is the spec's sum over the
K stored weights of each filter, one shifted slice of the padded input per weight.

Frame in (uint8 RGB at the model's input size) -> :func:`quantize_input` -> one
:func:`conv` per layer -> int32 logits at 1/upsample resolution -> :func:`labels_from_logits`
(bilinear upsampling and argmax, as the host does for every engine).
"""
from __future__ import annotations

import numpy as np

from sentei.errors import SenteiError
from sentei.host.modelfile.schema import ConvLayer, Model, act_range


def quantize_input(model: Model, frame: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` at the model's input size -> input activation ``[3, H, W]`` (int64)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise SenteiError(f"frame must be uint8 RGB of shape [H, W, 3], got {frame.dtype} {list(frame.shape)} "
                          f"(use sentei.host.data.preprocess.prepare_frame)")
    q = model.input
    x = frame.astype(np.int64).transpose(2, 0, 1)
    mul = np.asarray(q.mul, dtype=np.int64)[:, None, None]
    add = np.asarray(q.add, dtype=np.int64)[:, None, None]
    rnd = (1 << (q.shift - 1)) if q.shift > 0 else 0
    y = (x * mul + add + rnd) >> q.shift
    lo, hi = model.input_range(0)
    return np.clip(y, lo, hi)


def accumulate(layer: ConvLayer, x: np.ndarray) -> np.ndarray:
    """The int accumulators ``bias + sum_j w_j * x_pad[...]`` of one layer, ``[Cout, Ho, Wo]`` (int64)."""
    cin, h, w = x.shape
    if cin != layer.in_channels:
        raise SenteiError(f"layer {layer.name}: input has {cin} channels, expected {layer.in_channels}")
    k, s, d, p = layer.kernel, layer.stride, layer.dilation, layer.padding
    ho, wo = layer.out_size(h, w)
    xp = np.zeros((cin, h + 2 * p, w + 2 * p), dtype=np.int64)
    xp[:, p:p + h, p:p + w] = x
    acc = np.empty((layer.out_channels, ho, wo), dtype=np.int64)
    for o in range(layer.out_channels):
        a = np.full((ho, wo), int(layer.bias[o]), dtype=np.int64)
        for j in range(layer.k_nonzero):
            wv = int(layer.values[o, j])
            ci, rem = divmod(int(layer.indices[o, j]), k * k)
            ky, kx = divmod(rem, k)
            y0, x0 = ky * d, kx * d
            a += wv * xp[ci, y0:y0 + s * (ho - 1) + 1:s, x0:x0 + s * (wo - 1) + 1:s]
        acc[o] = a
    return acc


def requantize(layer: ConvLayer, acc: np.ndarray) -> np.ndarray:
    """Requantize, activate and saturate accumulators (``relu``/``linear``); ``logits`` pass through."""
    if layer.act == "logits":
        return acc
    mult = layer.mult.astype(np.int64)[:, None, None]
    shift = layer.shift.astype(np.int64)[:, None, None]
    rnd = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    r = (acc * mult + rnd) >> shift
    lo, hi = act_range(layer.act, layer.out_bits)
    return np.clip(r, lo, hi)


def conv(layer: ConvLayer, x: np.ndarray) -> np.ndarray:
    """One layer of the network: accumulate, then requantize/activate/saturate."""
    return requantize(layer, accumulate(layer, x))


def run(model: Model, frame: np.ndarray, return_all: bool = False):
    """Whole network: frame -> int32 logits ``[num_classes, h, w]``.

    With ``return_all`` also returns the list of every layer's integer output (input
    activation first), which the layer-by-layer comparison and the testbenches use.
    """
    x = quantize_input(model, frame)
    acts = [x]
    for layer in model.layers:
        x = conv(layer, x)
        acts.append(x)
    logits = x.astype(np.int32)
    return (logits, [a.astype(np.int32) for a in acts]) if return_all else logits


def bilinear_axis(n_out: int, n_in: int, inner: float | None = None, offset: float = 0.0,
                  n_model: int | None = None):
    """Sampling positions of one axis: ``(lo, hi, frac)`` with output ``i`` = ``(1-frac) in[lo] + frac in[hi]``.

    Half-pixel centres, source coordinates clamped at the edges. By default the ``n_out``
    outputs span the ``n_in`` inputs. With ``inner``/``offset``/``n_model`` (a letterboxed
    frame) output ``i`` sits at ``(i + 1/2) inner / n_out + offset`` on a model axis of
    ``n_model`` pixels, which the ``n_in`` inputs span.
    """
    i = np.arange(n_out, dtype=np.float64) + 0.5
    if inner is None:
        src = i * (n_in / n_out) - 0.5
    else:
        src = (i * (inner / n_out) + offset) * (n_in / n_model) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    return lo, hi, frac


def resample(maps: np.ndarray, ys, xs) -> np.ndarray:
    """``[C, h, w]`` float32 maps sampled at the grid ``ys`` x ``xs`` (:func:`bilinear_axis` triples).

    Rows first, then columns, each ``a * (1 - f) + b * f`` in float32: these operations, in
    this order, define the labels (a fast path must give the same floats).
    """
    (ylo, yhi, fy), (xlo, xhi, fx) = ys, xs
    rows = maps[:, ylo, :] * (1 - fy)[None, :, None] + maps[:, yhi, :] * fy[None, :, None]
    return rows[:, :, xlo] * (1 - fx)[None, None, :] + rows[:, :, xhi] * fx[None, None, :]


def upsample_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``[C, h, w]`` float maps to ``[C, height, width]``.

    Half-pixel centres (``align_corners=False``), source coordinates clamped at the edges:
    the convention of OpenCV's ``INTER_LINEAR`` and PyTorch's ``interpolate(...,
    mode="bilinear", align_corners=False)``.
    """
    maps = np.asarray(maps, dtype=np.float32)
    _, h, w = maps.shape
    return resample(maps, bilinear_axis(height, h), bilinear_axis(width, w))


def labels_from_logits(model: Model, logits: np.ndarray, height: int | None = None,
                       width: int | None = None) -> np.ndarray:
    """int32 logits -> uint8 label map at the model's input size (or ``height`` x ``width``)."""
    height = model.input.height if height is None else height
    width = model.input.width if width is None else width
    return labels_from_scores(logits.astype(np.float32) * np.float32(model.output_scale), height, width)


def labels_from_scores(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 class scores ``[C, h, w]`` (the logits times the output scale) -> uint8 labels at
    ``height`` x ``width``: bilinear upsampling, then the first largest score."""
    return np.argmax(upsample_bilinear(scores, height, width), axis=0).astype(np.uint8)


def predict(model: Model, frame: np.ndarray) -> np.ndarray:
    """Frame at the model's input size -> uint8 label map of the same size."""
    return labels_from_logits(model, run(model, frame))
