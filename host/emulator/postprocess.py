"""From the accelerator's logits to a label map at the frame's size: upsampling and argmax.

The labels are defined by :func:`sentei.host.modelfile.reference.labels_from_logits` (bilinear,
half-pixel centres, float32, rows then columns; the first class wins a tie). At 360x480
that numpy code takes longer than the fast emulator's whole network (it builds two
``[C, H, W]`` float arrays and reduces them), so when numba is there :func:`labels` runs
:func:`~sentei.host.emulator.kernels.bilinear_argmax` instead: the same float32
operations in the same order, fused per pixel, on all cores -- the same labels, bit for
bit (tests/host/test_postprocess.py), several times faster. :func:`fused_kernel` says once
whether it can run.
"""
from __future__ import annotations

import numpy as np

from sentei.host.modelfile import reference

GRIDS_KEPT = 8  # frame sizes whose sampling grids a Segmenter keeps


def grid(model, box) -> tuple:
    """The sampling grid ``(ys, xs)`` of a frame: :func:`~sentei.host.modelfile.reference.bilinear_axis` triples.

    ``box`` says where the frame went in the model input (``height``, ``width``, ``top``,
    ``left``, ``inner_h``, ``inner_w``); a frame that filled the input (stretched or of
    the model's size) gets exactly the grid of ``reference.upsample_bilinear``.
    """
    q = model.input
    _, h, w = model.shapes()[-1]
    if (box.top, box.left, box.inner_h, box.inner_w) == (0, 0, q.height, q.width):
        return reference.bilinear_axis(box.height, h), reference.bilinear_axis(box.width, w)
    return (reference.bilinear_axis(box.height, h, box.inner_h, box.top, q.height),
            reference.bilinear_axis(box.width, w, box.inner_w, box.left, q.width))


def fused_kernel():
    """:func:`~sentei.host.emulator.kernels.bilinear_argmax` when numba can run here, else None."""
    from sentei.host.emulator import engine as emulator

    ok, _ = emulator.available()
    return emulator._kernels().bilinear_argmax if ok else None


def labels(scores: np.ndarray, ys, xs, kernel=None) -> np.ndarray:
    """``argmax_c`` of the float32 maps ``scores [C, h, w]`` resampled at ``ys`` x ``xs``: uint8 ``[H, W]``.

    ``kernel``: :func:`fused_kernel` (looked up once by the caller), or None for numpy.
    """
    if kernel is None:
        return np.argmax(reference.resample(scores, ys, xs), axis=0).astype(np.uint8)
    (ylo, yhi, fy), (xlo, xhi, fx) = ys, xs
    out = np.empty((ylo.size, xlo.size), dtype=np.uint8)
    kernel(np.ascontiguousarray(scores, dtype=np.float32), ylo, yhi, 1 - fy, fy, xlo, xhi, 1 - fx, fx, out)
    return out
