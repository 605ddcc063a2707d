"""Labels from logits: the fused numba path gives exactly the reference's labels."""
from __future__ import annotations

import numpy as np
import pytest

from sentei.host.emulator import postprocess
from sentei.host.modelfile import reference
from sentei.host.runtime.segmenter import _Box as Box
from sentei.host.modelfile.synthetic import random_model

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def model():
    return random_model(3, 24, 32)  # logits at 1/upsample of 24x32


@pytest.mark.parametrize("size", [(24, 32), (360, 480), (7, 5), (61, 97), (1, 1)])
def test_fused_labels_equal_the_reference_at_any_frame_size(model, size):
    _, h, w = model.shapes()[-1]
    rng = np.random.default_rng(size[0])
    logits = rng.integers(-2000, 2000, (model.num_classes, h, w)).astype(np.int32)
    logits[:, :2] = 7  # exact ties: the first class wins, as np.argmax
    ys, xs = postprocess.grid(model, Box(*size, 0, 0, 24, 32))
    scores = logits.astype(np.float32) * np.float32(model.output_scale)
    kernel = postprocess.fused_kernel()
    assert kernel is not None
    fused = postprocess.labels(scores, ys, xs, kernel)
    assert fused.dtype == np.uint8 and fused.shape == size
    assert np.array_equal(fused, reference.labels_from_logits(model, logits, *size))


def test_fused_labels_equal_numpy_through_a_letterbox(model):
    _, h, w = model.shapes()[-1]
    logits = np.random.default_rng(5).normal(0, 300, (model.num_classes, h, w)).astype(np.int32)
    scores = logits.astype(np.float32) * np.float32(model.output_scale)
    for box in (Box(100, 300, 4, 0, 11, 32), Box(300, 100, 0, 11, 24, 8), Box(48, 64, 0, 0, 24, 32)):
        ys, xs = postprocess.grid(model, box)
        assert np.array_equal(postprocess.labels(scores, ys, xs, postprocess.fused_kernel()),
                              postprocess.labels(scores, ys, xs))


def test_without_numba_the_numpy_formula_runs(model, monkeypatch):
    from sentei.host.emulator import engine as emulator

    monkeypatch.setenv("SENTEI_DISABLE_NUMBA", "1")
    assert not emulator.available()[0] and postprocess.fused_kernel() is None
    _, h, w = model.shapes()[-1]
    logits = np.random.default_rng(1).integers(-99, 99, (model.num_classes, h, w)).astype(np.int32)
    ys, xs = postprocess.grid(model, Box(30, 40, 0, 0, 24, 32))
    scores = logits.astype(np.float32) * np.float32(model.output_scale)
    assert np.array_equal(postprocess.labels(scores, ys, xs), reference.labels_from_logits(model, logits, 30, 40))
