"""The fast emulator against the reference engine: the same integers, bit for bit."""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sentei.errors import ModelFormatError, SenteiError
from sentei.host import emulator as E
from sentei.host import reference as R
from sentei.host.format import validate
from sentei.host.synthetic import TINY, LayerSpec, random_frame, random_model, shipped_specs

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
    emu = E.Emulator(model)
    # both schedules are used: rows for the wide and stride-2 layers, chunks for the rest
    assert [p.rows for p in emu._plans] == [True, True, True, True, False, False, False, False]
    for f in (frame, smooth):
        assert np.array_equal(emu.run(f), R.run(model, f))


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
       balanced=st.booleans(), num_classes=st.integers(1, 13), row_width=st.sampled_from([0, 8, 10**6]))
def test_random_networks_are_bit_exact(specs, seed, height, width, input_bits, classifier_bits,
                                       classifier_density, balanced, num_classes, row_width):
    # row_width picks the schedule: 0 = every layer row by row, 10**6 = chunks for stride 1
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
    _assert_same(model, frames, E.Emulator(model, row_width=row_width))


@needs_numba
@pytest.mark.parametrize("row_width", [0, 10**6])
@pytest.mark.parametrize("dilation,padding,stride", [(1, 0, 1), (2, 2, 1), (4, 4, 2), (3, 0, 2), (1, 3, 2)])
def test_single_layer_shapes_with_wide_activations(dilation, padding, stride, row_width):
    # relu at 16 bits: 0..65535 does not fit int16, so the next buffer is int32
    specs = (LayerSpec(6, dilation=dilation, padding=padding, stride=stride, density=0.4, out_bits=16,
                       weight_bits=3),
             LayerSpec(5, kernel=1, density=0.5, weight_bits=2, act="linear", out_bits=16))
    model = random_model(seed=11, height=19, width=27, specs=specs, classifier_bits=2)
    validate(model)
    emu = _assert_same(model, [random_frame(0, 19, 27)], E.Emulator(model, row_width=row_width))
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
    monkeypatch.delitem(sys.modules, "sentei.host.emulator_kernels", raising=False)


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


BUNDLED = sorted((Path(E.__file__).parent / "bundled").glob("*.sentei"))


@needs_numba
@pytest.mark.skipif(not BUNDLED, reason="no shipped model bundled yet (sentei.host/bundled/*.sentei)")
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_shipped_model_on_sample_frames(path):
    from PIL import Image

    from sentei.host.format import load

    model = load(path)
    q = model.input
    samples = sorted((Path(E.__file__).parent / "samples").glob("*.png"))[:2]
    frames = [np.asarray(Image.open(p).convert("RGB").resize((q.width, q.height), Image.BILINEAR))
              for p in samples] or [random_frame(0, q.height, q.width)]
    emu = E.Emulator(model)
    for frame in frames:
        assert np.array_equal(emu.run(frame), R.run(model, frame))
