"""The fast emulator against the reference engine: the same integers, bit for bit."""
from __future__ import annotations  # `X | None` annotations on Python 3.9

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sentei.errors import ModelFormatError, SenteiError
from sentei.host.emulator import engine as E
from sentei.host.modelfile import reference as R
from sentei.host.modelfile.schema import validate
from sentei.host.modelfile.synthetic import TINY, LayerSpec, random_frame, random_model, shipped_specs

needs_numba = pytest.mark.skipif(not E.available()[0], reason="numba is not installed (pip install sentei[fast])")

SHIPPED = shipped_specs(0.9)  # the shipped network: dense first layer, 90 % filter-wise sparse body


def _assert_same(model, frames, emu=None):
    """Every layer's output of the emulator equals the reference's, for each frame in turn."""
    emu = emu or E.Emulator(model)
    for frame in frames:
        want_logits, want = R.run(model, frame, return_all=True)
        got_logits, got = emu.run_all(frame)
        assert got_logits.dtype == np.int32 and got_logits.shape == want_logits.shape
        for n, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, n
            bad = np.argwhere(g != w)
            assert bad.size == 0, f"layer output {n}: first mismatches at {bad[:3].tolist()}"
        assert np.array_equal(emu.run(frame), want_logits)
    return emu


@needs_numba
def test_tiny_model_two_frames_in_a_row():
    model = random_model(seed=3, height=24, width=32)
    _assert_same(model, [random_frame(1, 24, 32), random_frame(2, 24, 32)])


@needs_numba
def test_extreme_frames_saturate_identically():
    model = random_model(seed=4, height=17, width=23)
    black = np.zeros((17, 23, 3), np.uint8)
    _assert_same(model, [black, black + 255, random_frame(9, 17, 23)])


@needs_numba
@pytest.mark.parametrize("balanced", [True, False])
def test_shipped_architecture_at_full_resolution(balanced):
    model = random_model(seed=7, height=360, width=480, specs=SHIPPED, balanced=balanced)
    frame = random_frame(7, 360, 480)
    # a smooth frame as well as noise: real images have large flat regions
    yy, xx = np.mgrid[0:360, 0:480]
    smooth = np.stack([xx * 255 // 479, yy * 255 // 359, (xx + yy) * 255 // 838], axis=-1).astype(np.uint8)
    # every path is used: exact float32 for the dense first layer and the classifier, the
    # integer gather row by row for the wide and stride-2 layers, in chunks for the rest
    emus = [E.Emulator(model), E.Emulator(model, float_path="never")]
    assert [r.kind for r in emus[0].plan()] == ["dense", "rows", "rows", "rows", "chunks", "chunks", "chunks", "dense"]
    assert {r.arith for r in emus[0].plan()} == {"float32"}
    assert [r.kind for r in emus[1].plan()] == ["rows", "rows", "rows", "rows", "chunks", "chunks", "chunks", "chunks"]
    assert {r.arith for r in emus[1].plan()} == {"int32"}
    for f in (frame, smooth):
        want = R.run(model, f)
        for emu in emus:
            assert np.array_equal(emu.run(f), want)


layer_specs = st.builds(
    LayerSpec,
    out_channels=st.integers(1, 12),
    kernel=st.sampled_from([1, 3]),
    stride=st.sampled_from([1, 2]),
    dilation=st.integers(1, 4),
    padding=st.integers(0, 3),
    density=st.floats(0.05, 1.0),
    weight_bits=st.integers(2, 8),
    out_bits=st.integers(2, 16),
    act=st.sampled_from(["relu", "linear"]),
)


@needs_numba
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(layer_specs, min_size=0, max_size=3), seed=st.integers(0, 2**31),
       height=st.integers(1, 21), width=st.integers(1, 21), input_bits=st.integers(2, 16),
       classifier_bits=st.integers(2, 8), classifier_density=st.floats(0.05, 1.0),
       balanced=st.booleans(), num_classes=st.integers(1, 13), row_width=st.sampled_from([0, 8, 10**6]),
       float_path=st.sampled_from(E.FLOAT_PATHS))
def test_random_networks_are_bit_exact(specs, seed, height, width, input_bits, classifier_bits,
                                       classifier_density, balanced, num_classes, row_width, float_path):
    # row_width picks the integer schedule: 0 = every layer row by row, 10**6 = chunks for
    # stride 1; float_path "always" runs every layer whose bound allows it in float32
    specs = [s if s.kernel == 3 else dataclasses.replace(s, dilation=1) for s in specs]
    h, w = height, width
    for s in specs:  # every layer must have an output pixel
        span = s.dilation * (s.kernel - 1) + 1
        pad = s.dilation * (s.kernel - 1) // 2 if s.padding is None else s.padding
        h, w = (h + 2 * pad - span) // s.stride + 1, (w + 2 * pad - span) // s.stride + 1
        assume(h >= 1 and w >= 1)
    model = random_model(seed=seed, height=height, width=width, specs=tuple(specs), num_classes=num_classes,
                         classifier_density=classifier_density, classifier_bits=classifier_bits,
                         input_bits=input_bits, balanced=balanced)
    try:
        validate(model)
    except ModelFormatError:
        assume(False)  # e.g. 16-bit activations times 8-bit weights could overflow int32
    frames = [random_frame(seed % 1000, height, width), random_frame(seed % 1000 + 1, height, width)]
    emu = _assert_same(model, frames, E.Emulator(model, row_width=row_width, float_path=float_path))
    for n, r in enumerate(emu.plan()):
        assert r.bound == E.float_bound(model, n)
        assert (r.arith == "float32") == (r.exact_in_float and float_path != "never")
        assert r.kind != "dense" or r.arith == "float32"
        if float_path == "always":
            assert (r.kind == "dense") == r.exact_in_float


@needs_numba
@pytest.mark.parametrize("row_width,float_path", [(0, "never"), (10**6, "never"), (0, "always")])
@pytest.mark.parametrize("dilation,padding,stride", [(1, 0, 1), (2, 2, 1), (4, 4, 2), (3, 0, 2), (1, 3, 2)])
def test_single_layer_shapes_with_wide_activations(dilation, padding, stride, row_width, float_path):
    # relu at 16 bits: 0..65535 does not fit int16, so the next buffer is int32
    specs = (LayerSpec(6, dilation=dilation, padding=padding, stride=stride, density=0.4, out_bits=16,
                       weight_bits=3),
             LayerSpec(5, kernel=1, density=0.5, weight_bits=2, act="linear", out_bits=16))
    model = random_model(seed=11, height=19, width=27, specs=specs, classifier_bits=2)
    validate(model)
    emu = _assert_same(model, [random_frame(0, 19, 27)], E.Emulator(model, row_width=row_width,
                                                                      float_path=float_path))
    if float_path == "always":  # every bound is far below 2**24: every layer in float32
        assert [r.kind for r in emu.plan()] == ["dense"] * 3
        assert [b.dtype for b in emu.buffers] == [np.float32, np.float32, np.float32, np.int32]
    else:
        assert [p.rows for p in emu._plans] == [row_width == 0 or stride == 2, row_width == 0, row_width == 0]
        assert [b.dtype for b in emu.buffers] == [np.int16, np.int32, np.int16, np.int32]


@needs_numba
def test_one_thread_equals_all_threads():
    model = random_model(seed=5, height=40, width=56)
    frame = random_frame(5, 40, 56)
    one = E.Emulator(model, threads=1).run(frame)
    assert np.array_equal(one, E.Emulator(model).run(frame))
    with pytest.raises(SenteiError, match="threads"):
        E.Emulator(model, threads=10_000)


@needs_numba
def test_buffers_are_allocated_once_and_reused():
    model = random_model(seed=6, height=24, width=32)
    emu = E.Emulator(model)
    buffers = list(emu.buffers)
    addresses = [b.ctypes.data for b in buffers]
    scratch = [(p.acc, p.offs, p.vals) for p in emu._plans]
    first = emu.run(random_frame(1, 24, 32))
    second = emu.run(random_frame(2, 24, 32))
    assert all(a is b for a, b in zip(emu.buffers, buffers)) and len(emu.buffers) == len(model.layers) + 1
    assert [b.ctypes.data for b in emu.buffers] == addresses
    assert all(p.acc is s[0] and p.offs is s[1] and p.vals is s[2] for p, s in zip(emu._plans, scratch))
    # the returned logits are the caller's: the next frame does not overwrite them
    assert not np.shares_memory(first, emu.buffers[-1])
    assert np.array_equal(first, R.run(model, random_frame(1, 24, 32)))
    assert np.array_equal(second, R.run(model, random_frame(2, 24, 32)))


@needs_numba
def test_wrong_frames_and_closed_emulator_are_refused():
    model = random_model(seed=1, height=24, width=32)
    emu = E.Emulator(model)
    with pytest.raises(SenteiError, match=r"\[24, 32, 3\]"):
        emu.run(np.zeros((32, 24, 3), np.uint8))
    with pytest.raises(SenteiError, match="uint8"):
        emu.run(np.zeros((24, 32, 3), np.float32))
    emu.close()
    with pytest.raises(SenteiError, match="closed"):
        emu.run(random_frame(0, 24, 32))


@needs_numba
def test_context_manager_closes():
    model = random_model(seed=2, height=24, width=32, specs=TINY[:2])
    with E.Emulator(model) as emu:
        assert np.array_equal(emu.run(random_frame(0, 24, 32)), R.run(model, random_frame(0, 24, 32)))
    assert emu.buffers == []


@pytest.fixture
def no_numba(monkeypatch):
    """Make ``import numba`` fail, as on a plain install."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "sentei.host.emulator.kernels", raising=False)


def test_available_reports_missing_numba(no_numba):
    ok, reason = E.available()
    assert not ok and "numba" in reason and "sentei[fast]" in reason
    with pytest.raises(SenteiError, match="sentei\\[fast\\]"):
        E.Emulator(random_model(seed=0))


def test_engine_falls_back_to_reference_with_a_message(no_numba):
    model = random_model(seed=0)
    messages = []
    engine = E.make_engine(model, warn=messages.append)
    frame = random_frame(0, 24, 32)
    assert engine.name == "reference" and len(messages) == 1 and "numba" in messages[0]
    assert np.array_equal(engine(frame), R.run(model, frame))
    engine.close()


@needs_numba
def test_engine_is_the_emulator_when_numba_is_there():
    model = random_model(seed=0)
    messages = []
    engine = E.make_engine(model, warn=messages.append)
    assert engine.name == "emu" and messages == []
    frame = random_frame(3, 24, 32)
    assert np.array_equal(engine(frame), R.run(model, frame))
    assert E.make_engine(model, prefer="reference").name == "reference"
    with pytest.raises(SenteiError, match="unknown engine"):
        E.make_engine(model, prefer="fpga")


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("SENTEI_DISABLE_NUMBA", "1")
    ok, reason = E.available()
    assert not ok and "SENTEI_DISABLE_NUMBA" in reason


def _saturated_model(body: LayerSpec | None, body_values, body_bias: int, head_values, height=9, width=11):
    """A model whose layer 1 outputs 65535 (relu, 16 bits) at every pixel, then the layers under test.

    Layer 1 (3 -> 14, 1x1) has weights +1 and a bias of 2**20: its accumulator is at least
    2**20 - 3*128, far above 65535, so every pixel saturates, whatever the frame. Then an
    optional 3x3 ``body`` layer with every stored weight ``body_values`` (and ``body_bias``,
    multiplier 1, shift 0, so the output keeps every unit of the accumulator), then the
    1x1 logits classifier with stored weights ``head_values`` on input channels 0, 1, ...
    """
    specs = (LayerSpec(14, kernel=1, out_bits=16),) + ((body,) if body else ())
    model = random_model(seed=0, height=height, width=width, specs=specs, num_classes=1)
    layers = list(model.layers)
    first = layers[0]
    layers[0] = dataclasses.replace(first, values=np.ones_like(first.values), bias=np.full(14, 2**20, np.int32),
                                    mult=np.ones(14, np.int32), shift=np.zeros(14, np.uint8))
    if body:
        mid = layers[1]
        layers[1] = dataclasses.replace(mid, values=np.full_like(mid.values, body_values),
                                        bias=np.full(mid.out_channels, body_bias, np.int32),
                                        mult=np.ones(mid.out_channels, np.int32),
                                        shift=np.zeros(mid.out_channels, np.uint8))
    head = layers[-1]
    kk = len(head_values)
    layers[-1] = dataclasses.replace(head, values=np.array([head_values], np.int8),
                                     indices=np.arange(kk, dtype=np.uint32)[None, :], bias=np.zeros(1, np.int32))
    model = dataclasses.replace(model, layers=layers)
    validate(model)
    return model


@needs_numba
def test_float_path_is_exact_just_under_two_to_the_24():
    # all weights at the max magnitude of their bit width, inputs saturated at 65535:
    # the partial sums reach the bound itself, just under 2**24
    body = LayerSpec(4, kernel=3, weight_bits=2, act="linear", out_bits=16)  # K = 14*9 = 126 weights of -2
    bound = 126 * 2 * 65535  # 16_514_820
    # head on the body's signed 16-bit output: 511 * 32768 = 16_744_448
    model = _saturated_model(body, -2, bound + 1000, [-128, -128, -128, -127])
    assert 2**24 - bound == 262_396 and 2**24 - 511 * 32768 == 32768
    emu = E.Emulator(model, float_path="always")
    assert [(r.kind, r.bound) for r in emu.plan()] == [("dense", 3 * 128), ("dense", bound), ("dense", 511 * 32768)]
    frame = random_frame(0, 9, 11)
    _, acts = _assert_same(model, [frame], emu).run_all(frame)
    # the body's interior pixels sum all 126 products to -bound, then +bias: exactly 1000
    assert (acts[2][:, 1:-1, 1:-1] == 1000).all()
    # 8-bit weights on the saturated 16-bit input: 256 * 65535 = 2**24 - 256, and an odd sum below it
    for head in ([-128, -128], [-128, -127]):
        head_model = _saturated_model(None, 0, 0, head)
        emu = E.Emulator(head_model, float_path="always")
        assert emu.plan()[-1].kind == "dense"
        logits = _assert_same(head_model, [frame], emu).run(frame)
        assert (logits == -sum(abs(v) for v in head) * 65535).all()


@needs_numba
def test_layer_whose_bound_reaches_two_to_the_24_stays_integer(monkeypatch):
    # head: 257 * 65535 = 16_842_495 > 2**24, odd: float32 cannot hold it
    model = _saturated_model(None, 0, 0, [-128, -128, -1])
    frame = random_frame(1, 9, 11)
    want = R.run(model, frame)
    assert (want == -257 * 65535).all()
    for float_path in E.FLOAT_PATHS:
        emu = E.Emulator(model, float_path=float_path)
        route = emu.plan()[-1]
        assert route.kind != "dense" and route.arith == "int32" and not route.exact_in_float
        assert route.bound == 257 * 65535
        assert "2^24" in route.reason
        assert np.array_equal(emu.run(frame), want)
    # the guard is what keeps it exact: without it the float path rounds
    monkeypatch.setattr(E, "FLOAT_EXACT", 2**40)
    unguarded = E.Emulator(model, float_path="always")
    assert unguarded.plan()[-1].kind == "dense"
    got = unguarded.run(frame)
    assert not np.array_equal(got, want) and np.abs(got.astype(np.int64) - want).max() == 1


@needs_numba
def test_bad_float_path_is_refused():
    with pytest.raises(SenteiError, match="float_path"):
        E.Emulator(random_model(seed=0), float_path="sometimes")


SHIPPED_MODEL = Path(E.__file__).parents[1] / "bundled" / "sentei-camvid-fw90.sentei"
SAMPLES = sorted((Path(E.__file__).parents[1] / "samples").glob("*.jpg"))


@needs_numba
@pytest.mark.skipif(not SHIPPED_MODEL.exists() or not SAMPLES, reason="the shipped model or samples are absent")
def test_shipped_model_on_sample_frames():
    from sentei.host.modelfile.schema import load
    from sentei.host.data.preprocess import load_image, prepare_frame

    model = load(SHIPPED_MODEL)
    q = model.input
    emu = E.Emulator(model)
    # its dense layers (conv1, conv2, the classifier) run in float32, the sparse body as a gather
    assert [r.kind for r in emu.plan()] == ["dense", "dense", "rows", "rows", "chunks", "chunks", "chunks", "dense"]
    assert all(r.exact_in_float and r.arith == "float32" for r in emu.plan())
    frames = [prepare_frame(load_image(p), q.height, q.width) for p in SAMPLES[:2]]
    _assert_same(model, frames, emu)


@needs_numba
def test_numba_cache_lands_in_sentei_cache_not_in_the_package(tmp_path):
    """Kernels cached inside site-packages outlive `pip uninstall` and shadow a later editable install."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["SENTEI_CACHE"] = str(tmp_path)
    code = ("from sentei.host.emulator import engine as emulator; from sentei.host.modelfile import synthetic;"
            "m = synthetic.random_model(0, 12, 16);"
            "emulator.Emulator(m).run(synthetic.random_frame(0, 12, 16))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "numba").rglob("*.nbi")), "numba wrote no cache index under $SENTEI_CACHE/numba"
