"""CamVid loading, class weights and batch augmentation."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from sentei.errors import SenteiError  # noqa: E402
from sentei.training import data  # noqa: E402

CAMVID = __import__("pathlib").Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "camvid"


def write_split(root, split, n, fmt):
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / split / f"f{i}.{fmt}")
        Image.fromarray(rng.integers(0, 12, (24, 32), dtype=np.uint8)).save(root / f"{split}annot" / f"f{i}.png")


def test_load_png_and_jpg_frames_and_resize(tmp_path):
    write_split(tmp_path, "train", 3, "png")
    write_split(tmp_path, "val", 2, "jpg")
    tr = data.load_camvid(tmp_path, "train", progress=False)
    assert tuple(tr.frames.shape) == (3, 3, 24, 32) and tr.frames.dtype == torch.uint8
    assert tuple(tr.labels.shape) == (3, 24, 32) and int(tr.labels.max()) <= 11
    va = data.load_camvid(tmp_path, "val", size=(12, 16), workers=2, progress=False)
    assert tuple(va.frames.shape) == (2, 3, 12, 16) and tuple(va.labels.shape) == (2, 12, 16)
    assert set(np.unique(va.labels.numpy())) <= set(range(12))  # nearest: no invented labels


def test_loading_draws_no_progress_bar_into_a_log(tmp_path, capfd):
    """stderr that is not a terminal (a log file, CI) gets no bar: tqdm's redraws would fill it."""
    write_split(tmp_path, "val", 3, "png")
    data.load_camvid(tmp_path, "val", progress=True)
    assert "load val" not in capfd.readouterr().err


def test_median_frequency_weights_known_case():
    labels = torch.zeros(2, 4, 4, dtype=torch.uint8)
    labels[0, :2] = 1  # frame 0: 8 px class 0, 8 px class 1
    labels[1] = 2  # frame 1: all class 2
    labels[1, 0, 0] = 11  # void is ignored
    w = data.median_frequency_weights(labels, num_classes=3)
    # freq: c0 = 8/16, c1 = 8/16, c2 = 15/15 -> median 0.5
    np.testing.assert_allclose(w.numpy(), [1.0, 1.0, 0.5], rtol=1e-6)
    w11 = data.median_frequency_weights(labels, num_classes=11)
    assert float(w11[5]) == 0.0  # absent class


def test_augment_keeps_frames_and_labels_aligned():
    split = data.synthetic_split(6, 40, 56, seed=3)
    aug = data.Augment(scale=(0.7, 1.6), brightness=0.0, contrast=0.0, saturation=0.0)
    x, lab = aug(split.frames.float(), split.labels, torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 40, 56) and lab.shape == (6, 40, 56)
    assert torch.all(x == x.round()) and float(x.min()) >= 0 and float(x.max()) <= 255
    # the same geometry moves an "image" that is the label map itself
    same, lab2 = aug(split.labels[:, None].float().expand(-1, 3, -1, -1).contiguous(), split.labels,
                     torch.Generator().manual_seed(0))
    inside = lab2 != 11
    near = (same[:, 0] - lab2.float()).abs() <= 0.5
    assert float(near[inside].float().mean()) > 0.9


def test_augment_crop_cuts_windows_of_the_frame():
    """At zoom 1 a crop is a window of the frame: its labels are the frame's, shifted by whole pixels."""
    split = data.synthetic_split(6, 40, 56, seed=3)
    aug = data.Augment(scale=(1.0, 1.0), flip=False, brightness=0.0, contrast=0.0, saturation=0.0, crop=(24, 32))
    x, lab = aug(split.frames.float(), split.labels, torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, 24, 32) and lab.shape == (6, 24, 32)
    found = []
    for i in range(6):
        hits = [(oy, ox) for oy in range(40 - 24 + 1) for ox in range(56 - 32 + 1)
                if torch.equal(lab[i], split.labels[i, oy:oy + 24, ox:ox + 32].long())]
        assert hits, f"sample {i}: the label crop is no window of its frame"
        found.append(hits[0])
    assert len(set(found)) > 1  # the offsets are drawn, not fixed


def test_augment_whole_frame_crop_is_no_crop():
    """``crop`` equal to the frame draws the same numbers as no crop, and both give what the
    augmentation gave before crops existed (figures from commit 779fdbf): older runs reproduce."""
    split = data.synthetic_split(4, 40, 56, seed=3)
    a = data.Augment()(split.frames.float(), split.labels, torch.Generator().manual_seed(5))
    b = data.Augment(crop=(40, 56))(split.frames.float(), split.labels, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    x, lab = a
    assert float(x.sum()) == 3703485.0
    assert x[0, :, 10, 20].tolist() == [253.0, 56.0, 255.0] and x[3, :, 33, 7].tolist() == [47.0, 61.0, 216.0]
    assert torch.bincount(lab.flatten(), minlength=12).tolist() == [4365, 279, 672, 0, 1176, 1279, 60, 0, 477, 0, 0,
                                                                     652]


def test_augment_refuses_a_crop_larger_than_the_frames_or_off_the_stride():
    data.Augment(crop=(40, 56)).check(40, 56, 8)
    with pytest.raises(SenteiError, match="crop 41x56 .* larger than the 40x56 frames"):
        data.Augment(crop=(41, 56)).check(40, 56)
    with pytest.raises(SenteiError, match="crop 36x20 .* multiples of the network's output stride 8, e.g. 32x16$"):
        data.Augment(crop=(36, 20)).check(40, 56, 8)


def test_batches_cover_an_epoch_once_and_split_across_ranks():
    g = torch.Generator().manual_seed(0)
    b = data.batches(10, 3, g)
    assert [len(x) for x in b] == [3, 3, 3]
    r0 = torch.cat(data.batches(10, 2, torch.Generator().manual_seed(1), rank=0, world=2))
    r1 = torch.cat(data.batches(10, 2, torch.Generator().manual_seed(1), rank=1, world=2))
    assert len(set(r0.tolist()) & set(r1.tolist())) == 0


@pytest.mark.camvid
def test_real_camvid_val_split():
    if not CAMVID.exists():
        pytest.skip("CamVid is not beside the checkout")
    va = data.load_camvid(CAMVID, "val", limit=4, progress=False)
    assert tuple(va.frames.shape) == (4, 3, 360, 480)
