"""Split listing and label reading: the data-set errors a user meets."""
import numpy as np
import pytest
from PIL import Image

from sentei.errors import SenteiError
from sentei.host.data import camvid


def _split(root, names, split="val", frame_ext=".jpg"):
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    for i, name in enumerate(names):
        Image.fromarray(np.full((4, 6, 3), i * 20, np.uint8)).save(root / split / f"{name}{frame_ext}")
        Image.fromarray(np.full((4, 6), i % 12, np.uint8)).save(root / f"{split}annot" / f"{name}.png")


def test_pairs_png_and_jpg_frames(tmp_path):
    _split(tmp_path, ["b", "a"])
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "val" / "c.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "valannot" / "c.png")
    pairs = camvid.list_split(tmp_path, "val")
    assert [(f.name, l.name) for f, l in pairs] == [("a.jpg", "a.png"), ("b.jpg", "b.png"), ("c.png", "c.png")]


def test_frame_without_label(tmp_path):
    _split(tmp_path, ["a"])
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "val" / "lonely.jpg")
    with pytest.raises(SenteiError, match="lonely.jpg has no label map"):
        camvid.list_split(tmp_path, "val")


def test_empty_and_missing_splits(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "testannot").mkdir()
    with pytest.raises(SenteiError, match="split test is empty"):
        camvid.list_split(tmp_path, "test")
    with pytest.raises(SenteiError, match="split folder not found"):
        camvid.list_split(tmp_path, "train")
    with pytest.raises(SenteiError, match="data root not found"):
        camvid.list_split(tmp_path / "nowhere", "val")


def test_label_outside_class_range(tmp_path):
    path = tmp_path / "l.png"
    Image.fromarray(np.array([[0, 11], [3, 12]], np.uint8)).save(path)
    with pytest.raises(SenteiError, match="label value 12 is outside"):
        camvid.read_label(path)
    Image.fromarray(np.array([[0, 11]], np.uint8)).save(path)
    assert camvid.read_label(path).tolist() == [[0, 11]]
