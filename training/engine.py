"""The PyTorch inference engine behind ``sentei eval --backend torch``.

:class:`TorchEngine` loads a checkpoint written by ``sentei train`` (the dense float
teacher) or ``sentei compress`` (a pruned network; after quantization-aware training it
runs the QAT network's exact integer path, the numbers the exported model file holds) and
labels frames at the model's input size like every other engine: logits at 1/8, bilinear
upsampling, argmax.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sentei.errors import SenteiError
from sentei.host.data.camvid import CLASSES as CAMVID_CLASSES, COLORS as CAMVID_COLORS
from sentei.host.modelfile.reference import labels_from_scores
from sentei.training import baseline
from sentei.training.quantize import QATNet
from sentei.training.train import build_from_checkpoint, load_checkpoint


def resolve_checkpoint(path_or_name) -> Path:
    """A checkpoint path, or the file of a bundled ``torch-checkpoint`` model (e.g. ``teacher``)."""
    path = Path(str(path_or_name))
    if path.exists():
        return path
    from sentei.host.modelfile import bundled

    return bundled.resolve(str(path_or_name), kind="torch-checkpoint")[0]


class TorchEngine:
    """Checkpoint -> labels, on CPU or GPU.

    Parameters
    ----------
    path_or_name : checkpoint path or bundled name (``teacher``).
    device : ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    exact : for a quantization-aware checkpoint, its exact integer path (True, the model
        file's numbers) or its fake-quantized training forward (False: what QAT optimised,
        whose agreement with the integer engine ``sentei eval --agree-with`` measures).

    Attributes
    ----------
    input_size : ``(height, width)`` the model takes.
    name, class_names, class_colors, kind (``teacher`` / ``compressed``), phase.
    """

    def __init__(self, path_or_name, device: str | None = None, exact: bool = True):
        path = resolve_checkpoint(path_or_name)
        ckpt = load_checkpoint(path)
        self.kind = ckpt.get("kind")
        self.phase = ckpt.get("phase", "float")
        self.net = build_from_checkpoint(ckpt).eval()
        self.exact = bool(exact)
        self.path = ("exact integer path" if exact else "fake-quantized forward") if isinstance(self.net, QATNet) \
            else "float forward"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net.to(self.device)
        cfg = ckpt["config"]
        self.name = cfg.get("name") or path.stem
        inp = self.net.quant
        self.input_size = (int(inp.height), int(inp.width))
        n = self.net.fcn.num_classes if isinstance(self.net, QATNet) else self.net.num_classes
        self.class_names = tuple(cfg["model"].get("class_names", CAMVID_CLASSES))[:n]
        self.class_colors = tuple(CAMVID_COLORS)[:n]

    @torch.no_grad()
    def logits(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames ``[N, H, W, 3]`` -> real logits ``[N, classes, h, w]`` (float32)."""
        x = torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(0, 3, 1, 2).to(self.device)
        if isinstance(self.net, QATNet):
            return self.net(x, exact=self.exact).float()
        return self.net(x).float()

    def predict(self, frame: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 RGB ``[H, W, 3]`` at :attr:`input_size` -> uint8 labels ``[H, W]``, or at ``size``
        (the logits upsampled to it, as the Segmenter labels a frame at the frame's own size)."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise SenteiError(f"frame must be uint8 RGB [H, W, 3], got {frame.dtype} {list(frame.shape)}")
        if tuple(frame.shape[:2]) != self.input_size:
            raise SenteiError(f"frame is {frame.shape[0]}x{frame.shape[1]}, the model takes "
                              f"{self.input_size[0]}x{self.input_size[1]} (resize with sentei.host.data.preprocess)")
        logits = self.logits(frame[None])
        if self.exact and isinstance(self.net, QATNet):
            # the integer path's scores (its integers times the model file's output scale) labelled
            # as the reference engine labels them: torch's interpolate rounds otherwise, and where two
            # classes nearly tie a pixel flipped (one of 17.5 M on CamVid val for a compressed model)
            return labels_from_scores(logits[0].cpu().numpy(), *(size or self.input_size))
        return baseline.labels(logits, *(size or self.input_size)).cpu().numpy()
