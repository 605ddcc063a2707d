"""The Segmenter API: every backend equals the reference engine bit for bit; frames of any
size, type and aspect; backend choice; timings; closing."""
import shutil

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.emulator import engine as emulator
from sentei.host.modelfile import schema, reference, synthetic
from sentei.host.data import preprocess
from sentei.host.runtime import segmenter
from sentei.host.runtime.segmenter import Segmenter, _pad_color, choose_backend


@pytest.fixture(scope="module")
def model():
    return synthetic.random_model(seed=31, height=24, width=32)


@pytest.fixture(scope="module")
def frames():
    return [synthetic.random_frame(i, 24, 32) for i in range(3)]


ENGINE_BACKENDS = ["reference", pytest.param("emu", marks=pytest.mark.skipif(
    not emulator.available()[0], reason="numba is not installed: the fast emulator is unavailable"))]


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
def test_backend_is_bit_exact_with_the_reference(model, frames, backend):
    with Segmenter(model, backend=backend) as seg:
        assert seg.backend == backend
        for frame in frames:
            assert np.array_equal(seg.logits(frame), reference.run(model, frame))
            labels = seg(frame)
            assert labels.dtype == np.uint8
            assert np.array_equal(labels, reference.predict(model, frame))


@pytest.mark.slow
def test_csim_backend_is_bit_exact_with_the_reference(model, frames):
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the C-simulation build is unavailable")
    with Segmenter(model, backend="csim") as seg:
        assert seg.backend == "csim"
        for frame in frames:
            assert np.array_equal(seg.logits(frame), reference.run(model, frame))
    # a batch is one start of the C-simulation build: the frames overlap in its pipeline
    with Segmenter(model, backend="csim", batch=3) as seg:
        labels = seg.segment_batch(frames)
        assert all(np.array_equal(got.labels, reference.predict(model, frame)) for got, frame in zip(labels, frames))
        assert all(np.array_equal(got.logits, reference.run(model, frame)) for got, frame in zip(labels, frames))


def test_unbalanced_model_with_narrow_input(frames):
    m = synthetic.random_model(seed=32, height=24, width=32, balanced=False, input_bits=5)
    with Segmenter(m, backend="reference") as seg:
        assert np.array_equal(seg.logits(frames[0]), reference.run(m, frames[0]))


def test_frame_of_another_size_gives_labels_at_its_size(model):
    frame = synthetic.random_frame(5, 50, 70)
    with Segmenter(model, backend="reference") as seg:
        labels = seg(frame)
        logits = seg.logits(frame)
    prepared = preprocess.prepare_frame(frame, 24, 32)
    assert np.array_equal(logits, reference.run(model, prepared))
    assert labels.shape == (50, 70)
    assert np.array_equal(labels, reference.labels_from_logits(model, logits, 50, 70))


@pytest.mark.parametrize("shape, dtype", [((24, 32), np.uint8), ((24, 32, 4), np.uint8), ((24, 32, 3), np.uint16)])
def test_grayscale_rgba_and_16_bit_frames(model, shape, dtype):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    with Segmenter(model, backend="reference") as seg:
        assert np.array_equal(seg.logits(frame), reference.run(model, preprocess.to_rgb8(frame)))
        assert seg(frame).shape == (24, 32)


def test_letterbox_pads_with_zero_activations_and_maps_labels_back(model):
    frame = synthetic.random_frame(6, 12, 32)  # 8:3, the model is 4:3 -> borders above and below
    with Segmenter(model, backend="reference", fit="letterbox") as seg:
        prepared, box = seg._prepare(frame)
        labels = seg(frame)
    assert (box.top, box.left, box.inner_h, box.inner_w) == (6, 0, 12, 32)
    assert np.array_equal(prepared[6:18], frame)
    q = reference.quantize_input(model, prepared)
    assert np.abs(q[:, :6]).max() <= 1 and np.abs(q[:, 18:]).max() <= 1  # borders ~ the network's zero padding
    assert labels.shape == (12, 32)
    # the content rows of the stretched-to-model-size scores, sampled at the frame's pixels
    scores = reference.upsample_bilinear(reference.run(model, prepared) * np.float32(model.output_scale), 24, 32)
    expected = np.argmax(scores[:, 6:18, :], axis=0)
    assert np.mean(labels == expected) > 0.9  # same geometry up to the one-step vs two-step interpolation


def test_letterbox_of_a_frame_with_the_model_aspect_equals_stretch(model):
    frame = synthetic.random_frame(7, 48, 64)
    with Segmenter(model, backend="reference", fit="letterbox") as a, Segmenter(model, backend="reference") as b:
        assert np.array_equal(a(frame), b(frame))


def test_pad_color_quantizes_to_zero(model):
    pix = _pad_color(model.input)
    frame = np.broadcast_to(pix, (1, 1, 3)).astype(np.uint8)
    assert np.abs(reference.quantize_input(model, frame)).max() <= 1


def test_timings_are_recorded(model, frames):
    with Segmenter(model, backend="reference") as seg:
        assert seg.mean_timing().total == 0.0
        for frame in frames:
            seg(frame)
        t = seg.timings
        assert 0 < t.accelerator <= t.total and t.preprocess >= 0 and t.postprocess > 0
        assert len(seg.history) == 3
        assert seg.mean_timing().total == pytest.approx(np.mean([h.total for h in seg.history]))


def test_model_from_a_file_and_closing(model, tmp_path):
    path = schema.save(model, tmp_path / "m.sentei")
    with Segmenter(str(path), backend="reference") as seg:
        assert seg.model.name == model.name and "open" in repr(seg)
    assert seg.closed and "closed" in repr(seg)


def test_bad_arguments_are_one_line_errors(model):
    with pytest.raises(SenteiError, match="unknown backend 'gpu'"):
        Segmenter(model, backend="gpu")
    with pytest.raises(SenteiError, match="fit='crop'"):
        Segmenter(model, fit="crop")
    with pytest.raises(SenteiError, match="timeout=0"):
        Segmenter(model, backend="reference", timeout=0)


def test_emu_without_numba_falls_back_to_the_reference_and_says_so(model, frames, monkeypatch, capsys):
    monkeypatch.setenv("SENTEI_DISABLE_NUMBA", "1")
    monkeypatch.setattr(segmenter, "_SAID", set())
    assert choose_backend("emu").name == "reference"
    for _ in range(2):
        with Segmenter(model, backend="emu") as seg:
            assert seg.backend == "reference"
            assert np.array_equal(seg.logits(frames[0]), reference.run(model, frames[0]))
    err = capsys.readouterr().err
    assert err.count("SENTEI_DISABLE_NUMBA") == 1


def test_explicit_backend_is_quiet(model, monkeypatch, capsys):
    monkeypatch.setattr(segmenter, "_SAID", set())
    with Segmenter(model, backend="reference"):
        pass
    assert capsys.readouterr().err == ""


def test_no_default_model_is_a_clear_error(monkeypatch, tmp_path):
    from sentei.host.modelfile import bundled

    monkeypatch.setattr(bundled, "MANIFEST", tmp_path / "models.json")
    with pytest.raises(SenteiError, match="no trained model is bundled"):
        Segmenter(None, backend="reference")


def test_on_a_board_without_its_bitstream_auto_emulates_and_fpga_refuses(monkeypatch):
    """A PYNQ board whose installed bitstreams are all for other boards: `auto` runs the
    emulation and says why; `fpga` is a one-line error naming the board."""
    from sentei.host.runtime import driver as drv

    monkeypatch.setattr(drv, "pynq_device_status", lambda: (True, "pynq finds the ZCU104"))

    def other_boards(bitfile=None):
        raise SenteiError("no installed bitstream is for this board ($BOARD=ZCU104); installed: kv260/sentei.bit")

    monkeypatch.setattr(drv, "find_bitstream", other_boards)
    choice = choose_backend("auto")
    assert choice.name in ("emu", "reference") and "$BOARD=ZCU104" in choice.reason
    with pytest.raises(SenteiError, match=r"no installed bitstream is for this board \(\$BOARD=ZCU104\)"):
        choose_backend("fpga")
    monkeypatch.setattr(drv, "find_bitstream", lambda bitfile=None: None)
    assert "no sentei bitstream is installed" in choose_backend("auto").reason


# ---------------------------------------------------------------------------------------
# several frames in one accelerator start


def _frames_written(ov):
    from sentei.overlay import registers as R

    return [e[2] for e in ov.log if e[:2] == ("write", R.FRAMES)]


def test_a_list_of_frames_runs_in_one_start_and_equals_single_frames(model):
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay

    frames = [synthetic.random_frame(60 + i, 24, 32) for i in range(3)] + [synthetic.random_frame(63, 50, 70)]
    ov = EmulatedOverlay(model)
    with Segmenter(model, overlay=ov) as seg:
        singles = [seg.segment(f) for f in frames]
        mark = len(_frames_written(ov))
        labels = seg(frames)  # a list: one start
        batch = seg.segment_batch(frames)
        assert _frames_written(ov)[mark:] == [4, 4]
        assert seg(tuple(frames[:2])) and seg([]) == []
    assert len(labels) == 4
    for single, lab, res, frame in zip(singles, labels, batch, frames):
        assert res.frame is frame
        assert np.array_equal(res.logits, single.logits) and np.array_equal(lab, single.labels)
        assert np.array_equal(res.labels, single.labels)
    assert np.array_equal(batch[0].logits, reference.run(model, frames[0]))


def test_stream_in_batches_keeps_the_order_and_a_short_last_batch(model):
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay

    frames = [synthetic.random_frame(70 + i, 24, 32) for i in range(5)]
    ov = EmulatedOverlay(model, delay_s=0.01)
    with Segmenter(model, overlay=ov, batch=2) as seg:
        results = list(seg.stream(iter(frames)))
        assert _frames_written(ov) == [1, 2, 2, 1]  # LOAD_WEIGHTS (FRAMES written as 1), then the batches
        assert len(seg.history) == 5 and all(t.accelerator > 0 for t in seg.history)
        for frame, res in zip(frames, results):
            assert res.frame is frame and np.array_equal(res.logits, reference.run(model, frame))
        for res in seg.stream(frames, batch=3):  # stopped early: the batch in flight is collected
            break
        assert seg._acc.running is None
        assert np.array_equal(seg.logits(frames[4]), reference.run(model, frames[4]))


@pytest.mark.parametrize("batch", [0, 65, 2.0, True])
def test_a_bad_batch_is_a_one_line_error(model, batch):
    with pytest.raises(SenteiError, match=r"^batch=.*: frames per accelerator start, 1 to 64$"):
        Segmenter(model, backend="reference", batch=batch)
