"""Frames of every kind a user passes: converted or refused, as documented."""
import numpy as np
import pytest
from PIL import Image

from sentei.errors import SenteiError
from sentei.host.data import preprocess


@pytest.mark.parametrize("mode, shape", [("L", (5, 7)), ("RGBA", (5, 7, 4)), ("RGB", (5, 7, 3))])
def test_modes_become_rgb(tmp_path, mode, shape):
    arr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(tmp_path / "x.png")
    img = preprocess.load_image(tmp_path / "x.png")
    assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    expected = np.repeat(arr[:, :, None], 3, 2) if arr.ndim == 2 else arr[:, :, :3]
    assert np.array_equal(img, expected)


def test_16_bit_is_scaled_to_8_bit(tmp_path):
    arr = np.array([[0, 256, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    assert preprocess.load_image(tmp_path / "x.png")[0, :, 0].tolist() == [0, 1, 255]


def test_bad_paths_and_non_images(tmp_path):
    with pytest.raises(SenteiError, match="image not found"):
        preprocess.load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SenteiError, match="not a readable image"):
        preprocess.load_image(tmp_path / "notes.txt")
    with pytest.raises(SenteiError, match="directory"):
        preprocess.load_image(tmp_path)


def test_frames_are_resized_or_refused():
    frame = np.zeros((10, 20, 3), np.uint8)
    assert preprocess.prepare_frame(frame, 6, 8).shape == (6, 8, 3)
    assert preprocess.prepare_frame(frame, 10, 20) is not None
    with pytest.raises(SenteiError, match="empty"):
        preprocess.prepare_frame(np.zeros((0, 4, 3), np.uint8), 6, 8)
    with pytest.raises(SenteiError, match="not an image"):
        preprocess.prepare_frame(np.zeros((4, 4, 5), np.uint8), 6, 8)
    with pytest.raises(SenteiError, match="pixel type float32"):
        preprocess.prepare_frame(np.zeros((4, 4, 3), np.float32), 6, 8)


def test_resize_labels_is_nearest():
    labels = np.array([[1, 2], [3, 4]], np.uint8)
    assert preprocess.resize_labels(labels, 4, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2],
                                                               [3, 3, 4, 4], [3, 3, 4, 4]]
