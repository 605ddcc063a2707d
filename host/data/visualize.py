"""Label maps out: colour maps, blended overlays, and PNG writing (atomic)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from sentei.atomic_write import atomic_write_bytes


def colorize(labels: np.ndarray, colors) -> np.ndarray:
    """uint8 labels ``[H, W]`` -> uint8 RGB ``[H, W, 3]``; labels beyond the palette are black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(colors)] = np.asarray(colors, dtype=np.uint8)
    return palette[np.asarray(labels, dtype=np.uint8)]


def blend(frame: np.ndarray, labels: np.ndarray, colors, alpha: float = 0.5) -> np.ndarray:
    """The frame with its colour-coded labels laid over it (``alpha`` = label opacity)."""
    color = colorize(labels, colors).astype(np.float32)
    out = frame.astype(np.float32) * (1.0 - alpha) + color * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 ``[H, W]`` or ``[H, W, 3]`` array as PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure as PNG, atomically (no half-written plot); closing it is the caller's."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())
