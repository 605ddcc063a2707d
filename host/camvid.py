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

    try:
        with Image.open(path) as img:
            labels = np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise SenteiError(f"{path}: not a readable label map ({exc.__class__.__name__})") from None
    if labels.ndim != 2:
        raise SenteiError(f"{path}: label maps are single-channel images, got shape {list(labels.shape)}")
    if labels.size and int(labels.max()) > num_classes:
        raise SenteiError(f"{path}: label value {int(labels.max())} is outside the classes 0..{num_classes - 1} "
                          f"and void {num_classes}; fix the annotation")
    return labels.astype(np.uint8)
