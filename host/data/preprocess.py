"""Frames in: read images and bring any frame to the model's input (spec section 5).

Every engine sees the same preprocessed frame, so this module is part of what makes two
engines agree; it needs only numpy and Pillow (the plain install).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sentei.errors import SenteiError

MAX_PIXELS = 100_000_000  # a frame larger than this is refused rather than exhausting memory


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``[H, W, 3]``.

    Grayscale, palette, 16-bit and RGBA images are converted (see :func:`prepare_frame`);
    a missing file or one that is not an image raises :class:`SenteiError`.
    """
    return _read_image(path, decode=True)


def check_image(path: str | Path) -> tuple[int, int]:
    """Open ``path``'s header only (no pixel decoded): ``(height, width)``, or one
    :class:`SenteiError` line for a missing, unreadable, empty or too large image."""
    return _read_image(path, decode=False)


def _read_image(path, decode: bool):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise SenteiError(f"image not found: {path} (check the path)")
    if path.is_dir():
        raise SenteiError(f"{path} is a directory, not an image (pass image files)")
    if not path.is_file():  # a FIFO or a device would be read without end
        raise SenteiError(f"{path} is not a regular file, not an image (pass image files)")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 M pixels and refuses above ~179 M as it reads the header:
            # MAX_PIXELS is the one limit here, with the one message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise SenteiError(f"{path}: {img.width}x{img.height} is too large "
                                      f"(more than {MAX_PIXELS} pixels); downscale it first")
                if img.width == 0 or img.height == 0:
                    raise SenteiError(f"{path}: the image is empty (0 pixels)")
                if not decode:
                    return img.height, img.width
                if img.mode in ("I;16", "I;16B", "I;16L", "I", "F", "RGB", "L", "RGBA"):
                    arr = np.asarray(img)  # 16/32-bit and float values go to to_rgb8 as they are
                else:
                    arr = np.asarray(img.convert("RGBA" if "A" in img.mode or "transparency" in img.info
                                                 else "RGB"))
    except Image.DecompressionBombError:
        raise SenteiError(f"{path}: the image is too large (more than {MAX_PIXELS} pixels); "
                          f"downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SenteiError(f"{path}: not a readable image ({exc.__class__.__name__}); "
                          f"pass a PNG or JPEG file") from None
    return to_rgb8(arr, str(path))


def iter_images(paths):
    """Every image's header checked (and the stems, as :func:`load_images`) before the first
    is decoded, then ``(path, rgb)`` one at a time: memory holds one frame, not all of them."""
    paths = [Path(p) for p in paths]
    _check_stems(paths)
    for path in paths:
        check_image(path)
    return ((path, load_image(path)) for path in paths)


def _check_stems(paths) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise SenteiError(f"{seen[path.stem]} and {path} would write the same outputs "
                              f"({path.stem}_*.png); rename one or run them separately")
        seen[path.stem] = path


def load_images(paths) -> list[tuple[Path, np.ndarray]]:
    """Read every image of a command before it writes anything: ``[(path, rgb), ...]``.

    Outputs are named after each image's file stem, so two images with the same stem (from
    different folders, or ``a.png`` and ``a.jpg``) are refused rather than one overwriting
    the other's results.
    """
    paths = [Path(p) for p in paths]
    _check_stems(paths)
    return [(path, load_image(path)) for path in paths]


def to_rgb8(image: np.ndarray, what: str = "frame") -> np.ndarray:
    """Any 2-D/3-D integer image -> uint8 RGB ``[H, W, 3]``.

    Grayscale is replicated to three channels, an alpha channel is dropped, 16-bit values
    are scaled to 8 bits (``>> 8``), other integer types are refused.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise SenteiError(f"{what}: shape {list(img.shape)} is not an image "
                          f"(expected [H, W], [H, W, 3] or [H, W, 4])")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise SenteiError(f"{what}: the image is empty ({img.shape[0]}x{img.shape[1]})")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:  # before any copy of it
        raise SenteiError(f"{what}: {img.shape[1]}x{img.shape[0]} is too large "
                          f"(more than {MAX_PIXELS} pixels); downscale it first")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype in (np.int32, np.int64, np.uint32, np.uint64) and img.min() >= 0 and img.max() <= 255:
        # a 32-bit image (Pillow's mode I) holding 8-bit values: taken as they are, not >> 8 (black)
        return np.ascontiguousarray(img.astype(np.uint8))
    if img.dtype in (np.uint16, np.int32, np.int64, np.uint32, np.uint64) and img.min() >= 0 and img.max() <= 65535:
        return np.ascontiguousarray((img.astype(np.uint32) >> 8).astype(np.uint8))
    raise SenteiError(f"{what}: pixel type {img.dtype} is not supported (use uint8 or uint16 RGB)")


def prepare_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bring ``image`` to the model input: uint8 RGB ``[height, width, 3]``.

    A frame of another size is resized bilinearly (Pillow's ``BILINEAR``); the aspect ratio
    is not preserved (CamVid-shaped cameras are 4:3 like the model).
    """
    frame = to_rgb8(image)
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (labels are categories, never interpolated)."""
    if labels.shape == (height, width):
        return labels
    ys = np.minimum(((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64), labels.shape[0] - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64), labels.shape[1] - 1)
    return labels[ys[:, None], xs[None, :]]
