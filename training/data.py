"""CamVid (SegNet layout) and a synthetic stand-in, held as uint8 tensors, augmented in batches.

A split is loaded once into memory as ``uint8`` frames ``[N, 3, H, W]`` and labels
``[N, H, W]`` (11 = void) and, on a GPU, kept there: each batch is drawn by index and
augmented on the device (random scale and crop, horizontal flip, photometric jitter), then
rounded back to uint8 values so that the network input is, as on the accelerator, a
deterministic integer function of an 8-bit frame.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sentei.errors import SenteiError
from sentei.host.data import camvid, preprocess
from sentei.host.options import DEFAULT_WORKERS

VOID = camvid.VOID


@dataclass
class Split:
    """One split in memory: ``frames`` uint8 ``[N, 3, H, W]``, ``labels`` uint8 ``[N, H, W]``."""

    frames: torch.Tensor
    labels: torch.Tensor
    names: list

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def to(self, device) -> "Split":
        return Split(self.frames.to(device), self.labels.to(device), self.names)


def _read_pair(pair, size, num_classes):
    frame_path, label_path = pair
    frame = preprocess.load_image(frame_path)
    label = camvid.read_label(label_path, num_classes)
    if label.shape != frame.shape[:2]:
        raise SenteiError(f"{label_path}: label map {label.shape} differs from its frame {frame.shape[:2]}")
    if size is not None and tuple(frame.shape[:2]) != tuple(size):
        frame = preprocess.prepare_frame(frame, size[0], size[1])
        label = preprocess.resize_labels(label, size[0], size[1])
    return frame, label


def load_camvid(root, split: str, size: tuple[int, int] | None = None, limit: int | None = None,
                workers: int = DEFAULT_WORKERS, num_classes: int = 11, progress: bool = True) -> Split:
    """Read a CamVid split (``<root>/<split>`` + ``<root>/<split>annot``) into uint8 tensors.

    Parameters
    ----------
    root, split : dataset root and split name (``train``, ``val``, ``test``).
    size : ``(height, width)`` to resize to (frames bilinear, labels nearest); None keeps it.
    limit : read only the first ``limit`` frames (tests, smoke runs).
    workers : decoding threads.
    """
    pairs = camvid.list_split(root, split)
    if limit:
        pairs = pairs[:limit]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        items = pool.map(lambda p: _read_pair(p, size, num_classes), pairs)
        if progress:
            from tqdm import tqdm

            # disable=None: drawn on a terminal only (a log file would collect every redraw)
            items = tqdm(items, total=len(pairs), desc=f"load {split}", unit="frame", leave=False, disable=None)
        items = list(items)
    shapes = {f.shape for f, _ in items}
    if len(shapes) != 1:
        raise SenteiError(f"split {split}: frames have different sizes {sorted(shapes)}; pass a fixed size")
    frames = torch.from_numpy(np.stack([f for f, _ in items])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([lab for _, lab in items]))
    return Split(frames, labels, [p[0].name for p in pairs])


def synthetic_split(n: int = 16, height: int = 48, width: int = 64, num_classes: int = 11, seed: int = 0) -> Split:
    """A small learnable stand-in for CamVid: coloured rectangles on a noisy background.

    Each class has a fixed colour; a frame holds a few rectangles of random classes, the
    background is class 0, a border of void pixels checks that void is ignored.
    """
    palette = np.random.default_rng(12345).integers(0, 256, size=(num_classes, 3))  # shared by all splits
    g = np.random.default_rng(seed)
    frames = np.zeros((n, height, width, 3), np.uint8)
    labels = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        lab = np.zeros((height, width), np.uint8)
        for _ in range(4):
            c = int(g.integers(1, num_classes))
            h, w = int(g.integers(height // 4, height // 2)), int(g.integers(width // 4, width // 2))
            y, x = int(g.integers(0, height - h)), int(g.integers(0, width - w))
            lab[y:y + h, x:x + w] = c
        img = palette[lab] + g.normal(0, 12, size=(height, width, 3))
        lab[:2, :] = VOID
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
        labels[i] = lab
    return Split(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels),
                 [f"synthetic_{i:03d}" for i in range(n)])


def median_frequency_weights(labels: torch.Tensor, num_classes: int = 11) -> torch.Tensor:
    """Class weights by median frequency balancing (Eigen & Fergus; SegNet).

    ``freq(c)`` = pixels of class c / pixels of the frames where c occurs;
    ``w(c) = median(freq) / freq(c)``. Void is ignored; an absent class gets weight 0.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    present = torch.zeros(num_classes, dtype=torch.float64)
    for lab in labels:
        lab = lab.reshape(-1).to(torch.int64)
        valid = lab[lab < num_classes]
        c = torch.bincount(valid.cpu(), minlength=num_classes)[:num_classes].to(torch.float64)
        counts += c
        present += (c > 0).to(torch.float64) * float(valid.numel())
    freq = torch.where(present > 0, counts / present.clamp_min(1), torch.zeros_like(counts))
    med = freq[freq > 0].median() if bool((freq > 0).any()) else torch.tensor(1.0, dtype=torch.float64)
    return torch.where(freq > 0, med / freq.clamp_min(1e-12), torch.zeros_like(freq)).to(torch.float32)


@dataclass
class Augment:
    """Batch augmentation on tensors (any device).

    ``scale``: zoom range (a zoom below 1 pads with void); crops are uniform over the valid
    offsets; ``crop``: ``(height, width)`` of the output (None: the frame's own size) -- a
    smaller crop trains on the same pixel scale for a fraction of the compute (each step
    costs about ``crop area / frame area``; evaluation stays on whole frames); ``flip``:
    horizontal flip with probability 1/2; ``brightness``/``contrast``/``saturation``:
    multiplicative jitter ``1 +- value``. Output frames are rounded to uint8 values (float32
    tensor), labels stay integer with void where nothing was seen.
    """

    scale: tuple[float, float] = (0.8, 1.6)
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    crop: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, cfg: dict | None) -> "Augment":
        cfg = dict(cfg or {})
        return cls(scale=tuple(cfg.get("scale", (0.8, 1.6))), flip=bool(cfg.get("flip", True)),
                   brightness=float(cfg.get("brightness", 0.25)), contrast=float(cfg.get("contrast", 0.25)),
                   saturation=float(cfg.get("saturation", 0.25)),
                   crop=None if cfg.get("crop") is None else (int(cfg["crop"][0]), int(cfg["crop"][1])))

    def check(self, height: int, width: int, stride: int = 1) -> None:
        """Refuse a crop larger than the ``height`` x ``width`` frames it would be cut from, or
        one whose sides are not multiples of the network's output ``stride`` (its logits would
        then not line up with the labels as they do on whole frames)."""
        if self.crop is None:
            return
        ch, cw = self.crop
        if ch > height or cw > width:
            raise SenteiError(f"crop {ch}x{cw} (--crop, data.augment.crop) is larger than the "
                              f"{height}x{width} frames; crop at most {height}x{width}, or leave it out for whole frames")
        if ch % stride or cw % stride:
            fit = f"{max(stride, ch - ch % stride)}x{max(stride, cw - cw % stride)}"
            raise SenteiError(f"crop {ch}x{cw} (--crop, data.augment.crop): its sides must be multiples of the "
                              f"network's output stride {stride}, e.g. {fit}")

    def __call__(self, frames: torch.Tensor, labels: torch.Tensor, gen: torch.Generator):
        n, _, h, w = frames.shape
        ch, cw = self.crop or (h, w)
        dev = frames.device

        def u(lo, hi, size=(n,)):
            return torch.rand(size, generator=gen, device=dev) * (hi - lo) + lo

        x = frames.to(torch.float32)
        zoom = u(*self.scale)
        # output pixel (normalised) -> source: src = out * (crop / frame) / zoom + offset; the
        # crop stays inside the zoomed image where possible, else it is centred (zoom < 1 pads
        # with void). A whole-frame crop draws the same numbers as before crops existed.
        half_x, half_y = (cw / w) / zoom, (ch / h) / zoom
        tx = (u(-1, 1) * (1.0 - half_x).clamp_min(0.0))
        ty = (u(-1, 1) * (1.0 - half_y).clamp_min(0.0))
        sx = half_x.clone()
        if self.flip:
            flip = torch.rand(n, generator=gen, device=dev) < 0.5
            sx = torch.where(flip, -sx, sx)
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2] = sx, tx
        theta[:, 1, 1], theta[:, 1, 2] = half_y, ty
        grid = F.affine_grid(theta, (n, 3, ch, cw), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        lab = labels.to(torch.float32).unsqueeze(1) + 1.0  # 0 marks "outside the frame"
        lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        lab = lab.squeeze(1).to(torch.int64) - 1
        lab = torch.where(lab < 0, torch.full_like(lab, VOID), lab)
        # photometric jitter
        b = u(1 - self.brightness, 1 + self.brightness).view(n, 1, 1, 1)
        c = u(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1)
        s = u(1 - self.saturation, 1 + self.saturation).view(n, 1, 1, 1)
        x = x * b
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - gray) * s + gray
        return x.round().clamp(0, 255), lab


def batches(n: int, batch_size: int, gen: torch.Generator, shuffle: bool = True, rank: int = 0,
            world: int = 1, drop_last: bool = True):
    """Index batches of one epoch (the rank's share of one permutation under DDP)."""
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    per_rank = n // world if drop_last else -(-n // world)
    order = order[rank * per_rank:(rank + 1) * per_rank] if world > 1 else order
    stop = len(order) - (len(order) % batch_size if drop_last and len(order) >= batch_size else 0)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]
