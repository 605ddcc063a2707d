"""CamVid splits on disk (SegNet layout), read with numpy and Pillow only.

``<root>/<split>/<stem>.{png,jpg}`` frames pair with ``<root>/<split>annot/<stem>.png``
label maps (values 0..10 the classes, 11 void). Shared by ``sentei eval`` (no torch) and
the training data loader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sentei.errors import SenteiError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VOID = 11

#: the 11 classes of the SegNet CamVid split, in label order, and their colours (the default
#: class names and colours of a model file)
CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
COLORS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)


def list_split(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Sorted ``(frame, label)`` path pairs of a split; every frame must have its label."""
    root = Path(root)
    frames_dir, labels_dir = root / split, root / f"{split}annot"
    if not root.is_dir():
        raise SenteiError(f"data root not found: {root} (pass the folder that holds {split}/ and {split}annot/)")
    if not frames_dir.is_dir():
        raise SenteiError(f"split folder not found: {frames_dir} (is --split right? expected "
                          f"{root}/{split}/ beside {root}/{split}annot/)")
    if not labels_dir.is_dir():
        raise SenteiError(f"label folder not found: {labels_dir} (every split needs its {split}annot/ folder)")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise SenteiError(f"split {split} is empty: no .png/.jpg frames in {frames_dir}")
    pairs = []
    for frame in frames:
        label = labels_dir / f"{frame.stem}.png"
        if not label.exists():
            raise SenteiError(f"frame {frame.name} has no label map {label} (add it or remove the frame)")
        pairs.append((frame, label))
    return pairs


def read_label(path: str | Path, num_classes: int = 11) -> np.ndarray:
    """A label map as uint8 ``[H, W]``; values above void (``num_classes``) are refused."""
    from PIL import Image, UnidentifiedImageError

    import warnings

    from sentei.host.data.preprocess import MAX_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:  # before a pixel is decoded
                    raise SenteiError(f"{path}: label map {img.width}x{img.height} is too large (more than "
                                      f"{MAX_PIXELS} pixels); the annotations must match their frames")
                labels = np.asarray(img)
    except Image.DecompressionBombError:
        raise SenteiError(f"{path}: label map is too large (more than {MAX_PIXELS} pixels); the annotations "
                          f"must match their frames") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SenteiError(f"{path}: not a readable label map ({exc.__class__.__name__})") from None
    if labels.ndim != 2:
        raise SenteiError(f"{path}: label maps are single-channel images, got shape {list(labels.shape)}")
    if labels.dtype.kind not in "ub" and not (labels.dtype.kind == "i" and (labels.size == 0 or labels.min() >= 0)):
        # float labels would be truncated (2.7 -> class 2), negative ones wrap to classes
        raise SenteiError(f"{path}: label values of type {labels.dtype} are not class numbers; save the "
                          f"annotation as an 8-bit (or 16-bit) integer image")
    if labels.size and int(labels.max()) > num_classes:
        raise SenteiError(f"{path}: label value {int(labels.max())} is outside the classes 0..{num_classes - 1} "
                          f"and void {num_classes}; fix the annotation")
    return labels.astype(np.uint8)
