"""Images and frames that are odd or wrong, through the commands that read images and through
the Segmenter: converted and resized as docs/model-format.md section 5 says, or refused in one
line -- and the Segmenter still works after a refused frame."""
import numpy as np
import pytest
from PIL import Image

from sentei.errors import SenteiError
from sentei.host.data import preprocess
from sentei.host.modelfile import reference
from sentei.host.runtime.segmenter import Segmenter
from sentei.host.modelfile.synthetic import random_frame

from .conftest import H, W, assert_one_line_error, files_under, png_header_only, run_main, tiny_model


BAD_IMAGES = {  # name -> (writer, a fragment of the message)
    "missing": (lambda p: None, "image not found"),
    "text-file": (lambda p: p.write_text("not an image"), "not a readable image"),
    "empty-file": (lambda p: p.write_bytes(b""), "not a readable image"),
    "truncated-png": (lambda p: p.write_bytes(png_header_only(W, H)[:40]), "not a readable image"),
    "zero-width": (lambda p: p.write_bytes(png_header_only(0, H)), "not a readable image"),
    # Pillow's own guard refuses above ~179 M pixels while reading the header (DecompressionBombError)
    "bomb-400M-pixels": (lambda p: p.write_bytes(png_header_only(20000, 20000)), "too large"),
    # Pillow only warns between ~89 M and ~179 M: the package's limit (100 M) refuses it quietly
    "120M-pixels": (lambda p: p.write_bytes(png_header_only(12000, 10000)), "12000x10000 is too large"),
    "float-tiff": (lambda p: Image.fromarray(np.full((H, W), 0.5, np.float32)).save(p), "float32 is not supported"),
    "negative-int32": (lambda p: Image.fromarray(np.full((H, W), -5, np.int32)).save(p), "int32 is not supported"),
}
SUFFIX = {"float-tiff": ".tif", "negative-int32": ".tif"}


def _bad_image(tmp_path, name):
    path = tmp_path / f"{name}{SUFFIX.get(name, '.png')}"
    BAD_IMAGES[name][0](path)
    return path


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_files_are_refused_by_every_command(name, tmp_path, capsys, model_file):
    path = _bad_image(tmp_path, name)
    fragment = BAD_IMAGES[name][1]
    out = tmp_path / "out"
    for argv in (["segment", path, "--model", model_file, "--out", out / "seg"],
                 ["demo", "--image", path, "--model", model_file, "--out", out / "demo", "--backend", "emu"],
                 ["overlay", "csim", "--model", model_file, "--image", path, "--json", out / "csim.json"]):
        status, _, err = run_main(argv, capsys)
        assert_one_line_error(status, err, fragment)
        assert files_under(out) == []
    with pytest.raises(SenteiError, match=fragment):
        preprocess.load_image(path)


def test_a_folder_as_image(tmp_path, capsys, model_file):
    status, _, err = run_main(["segment", tmp_path, "--model", model_file, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(status, err, "is a directory")


def test_one_bad_image_among_good_ones_writes_nothing(tmp_path, capsys, model_file, image_file):
    bad = _bad_image(tmp_path, "text-file")
    status, _, err = run_main(["segment", image_file, bad, "--model", model_file, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(status, err, str(bad))
    assert not (tmp_path / "o").exists()  # every input is checked before the first output


# -- accepted: converted, and resized to the model's input ---------------------------------

ODD_BUT_FINE = {  # mode/array -> how the frame becomes RGB (spec section 5)
    "grayscale": np.arange(H * W, dtype=np.uint8).reshape(H, W),
    "grayscale-1-channel": np.arange(H * W, dtype=np.uint8).reshape(H, W, 1),
    "rgba": np.dstack([random_frame(3, H, W), np.full((H, W), 7, np.uint8)]),
    "16-bit": (random_frame(4, H, W).astype(np.uint16) << 8) | 0xAB,
}


@pytest.mark.parametrize("name", sorted(ODD_BUT_FINE))
def test_odd_frames_are_converted_like_the_spec_says(name):
    model = tiny_model()
    frame = ODD_BUT_FINE[name]
    rgb = preprocess.to_rgb8(frame)
    if name.startswith("grayscale"):
        assert np.array_equal(rgb, np.repeat(frame.reshape(H, W, 1), 3, axis=2))  # replicated
    elif name == "rgba":
        assert np.array_equal(rgb, frame[:, :, :3])  # alpha dropped
    else:
        assert np.array_equal(rgb, (frame >> 8).astype(np.uint8))  # the high byte
    with Segmenter(model, backend="reference", quiet=True) as seg:
        assert np.array_equal(seg(frame), reference.predict(model, rgb))


def test_png_modes_on_disk_are_converted(tmp_path, capsys, model_file):
    for mode in ("L", "LA", "P", "1", "CMYK", "I;16", "RGBA"):
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (W, H)).save(path)
        assert preprocess.load_image(path).shape == (H, W, 3)
    status, out, err = run_main(["segment", *sorted(tmp_path.glob("*.*")), "--model", model_file,
                                 "--out", tmp_path / "o"], capsys)
    assert status == 0, err
    assert len(files_under(tmp_path / "o")) == 2 * 7


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 500, 3), (H * 7, W * 5, 3), (H, W + 1, 3)])
def test_frames_the_model_cannot_take_as_they_are_are_resized(shape):
    model = tiny_model()
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with Segmenter(model, backend="reference", quiet=True) as seg:
        labels = seg(frame)
    assert labels.shape == shape[:2]  # labels come back at the frame's own size
    resized = preprocess.prepare_frame(frame, H, W)  # bilinear, to the model's input
    assert resized.shape == (H, W, 3)
    expected = reference.labels_from_logits(model, reference.run(model, resized), *shape[:2])
    assert np.array_equal(labels, expected)


REFUSED_ARRAYS = {
    "zero-height": (np.zeros((0, W, 3), np.uint8), "empty"),
    "zero-width": (np.zeros((H, 0), np.uint8), "empty"),
    "two-channels": (np.zeros((H, W, 2), np.uint8), "is not an image"),
    "five-channels": (np.zeros((H, W, 5), np.uint8), "is not an image"),
    "4-d batch": (np.zeros((2, H, W, 3), np.uint8), "is not an image"),
    "1-d": (np.zeros(H * W * 3, np.uint8), "is not an image"),
    "float": (np.zeros((H, W, 3), np.float32), "float32 is not supported"),
    "negative int": (np.full((H, W, 3), -1, np.int16), "int16 is not supported"),
    "bool": (np.zeros((H, W), bool), "bool is not supported"),
    # a broadcast view: 300 MB if it were copied -- refused before any copy
    "very large": (np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_001, 10_001, 3)), "too large"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_ARRAYS))
def test_refused_frames_leave_the_segmenter_usable(name):
    model = tiny_model()
    bad, fragment = REFUSED_ARRAYS[name]
    good = random_frame(9, H, W)
    with Segmenter(model, backend="reference", quiet=True) as seg:
        with pytest.raises(SenteiError, match=fragment):
            seg(bad)
        # a bad frame in the middle of a pipelined stream: the frame in flight is collected
        results = []
        with pytest.raises(SenteiError, match=fragment):
            for result in seg.stream([good, bad, good]):
                results.append(result)
        assert len(results) <= 1 and seg._acc.running is None
        assert np.array_equal(seg(good), reference.predict(model, good))
        assert seg.overlay.memory.live_buffers() == 5  # weights + 2 frames + 2 logits, nothing leaked


def test_two_images_with_the_same_name_would_overwrite_each_other(tmp_path, capsys, model_file, image_file):
    """a/frame.png and b/frame.png both become frame_labels.png: refused before anything is written."""
    twin = tmp_path / "other" / image_file.name
    twin.parent.mkdir()
    twin.write_bytes(image_file.read_bytes())
    for argv in (["segment", image_file, twin, "--model", model_file, "--out", tmp_path / "seg"],
                 ["demo", "--image", image_file, "--image", twin.with_suffix(".jpg"), "--model", model_file,
                  "--out", tmp_path / "demo", "--backend", "emu"]):
        status, _, err = run_main(argv, capsys)
        assert_one_line_error(status, err, "would write the same outputs (frame_*.png)")
    assert files_under(tmp_path / "seg") == [] and files_under(tmp_path / "demo") == []
