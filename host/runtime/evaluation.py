"""Scoring a model on a CamVid split: mIoU, pixel accuracy, per-class IoU, and engines' agreement.

:func:`evaluate` is what ``sentei eval`` runs and what a notebook or the bundling of a
trained model calls: the model on any engine of the Segmenter (``auto``, the default as in
every command: the FPGA when there is one, else ``emu``; ``reference``, ``csim``, ``fpga``)
or, through the engine registry, a PyTorch checkpoint (``torch``, whose engine the training
side registers; host/ never imports it). Frames are read one at a time.
"""
from __future__ import annotations

import importlib.util
import time

import numpy as np

from sentei.errors import SenteiError
from sentei.host.engine_registry import DEFAULT_BACKEND


def evaluate(model, data, split: str = "val", backend: str = DEFAULT_BACKEND, limit: int | None = None,
             agree_with=None) -> dict:
    """Score ``model`` (a model file, bundled name or, with ``backend="torch"``, a checkpoint) on
    split ``split`` of the CamVid root ``data``; ``limit``: only the first frames.

    ``agree_with``: also label every frame with this quantization-aware checkpoint's
    fake-quantized forward and report the share of pixels whose labels agree (``agreement``).
    Returns the figures as ``sentei eval --json`` writes them (an IoU never scored is None).
    """
    from sentei.host.data import camvid, metrics, preprocess

    pairs = camvid.list_split(data, split)
    if limit:
        pairs = pairs[:limit]
    other = _torch_predictor(agree_with, exact=False) if agree_with else None
    predictor, model_name, class_names, backend = _open_predictor(model, backend)
    n = len(class_names)
    conf = np.zeros((n, n), dtype=np.int64)
    same = pixels = 0
    t0 = time.perf_counter()
    bar = _progress(pairs, f"eval {split}")
    try:
        for frame_path, label_path in bar:
            frame = preprocess.load_image(frame_path)
            gt = camvid.read_label(label_path, n)
            if gt.shape != frame.shape[:2]:  # scored anyway, the resized prediction gives a bogus mIoU
                raise SenteiError(f"{label_path}: label map is {gt.shape[1]}x{gt.shape[0]} but its frame "
                                  f"{frame_path.name} is {frame.shape[1]}x{frame.shape[0]}; the annotations "
                                  f"must match their frames pixel for pixel")
            pred = predictor(frame)
            conf += metrics.confusion(pred, gt, n)
            if other is not None:  # every pixel, void ones too: the engines' agreement, not accuracy
                same += int(np.count_nonzero(other[0](frame) == pred))
                pixels += pred.size
    finally:
        for obj in (bar, predictor):  # the bar first: an error message then stands on its own line
            close = getattr(obj, "close", None)
            if close:
                close()
    if not conf.any():
        raise SenteiError(f"split {split}: every pixel of its {len(pairs)} label map(s) is void "
                          f"({camvid.VOID}): nothing to score; check the annotations")
    elapsed = time.perf_counter() - t0
    iou = metrics.iou_per_class(conf)
    result = {
        "model": model_name, "backend": backend, "backend_reason": getattr(predictor, "backend_reason", None),
        "data": str(data), "split": split,
        "frames": len(pairs), "miou": metrics.miou(conf), "pixel_accuracy": metrics.pixel_accuracy(conf),
        "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
        "seconds": elapsed,
    }
    if other is not None:
        result["agreement"] = {"with": agree_with, "path": other[1].path, "pixels": pixels,
                               "agree": same / pixels}
    return result


def summary(result: dict) -> str:
    """The lines ``sentei eval`` prints for a result of :func:`evaluate`."""
    why = f": {result['backend_reason']}" if result.get("backend_reason") else ""
    lines = [f"{result['model']} on {result['split']} ({result['frames']} frames, backend {result['backend']}{why}): "
             f"mIoU {100 * result['miou']:.2f}  pixel accuracy {100 * result['pixel_accuracy']:.2f}"]
    for name, v in result["iou"].items():
        lines.append(f"  {name:<12} {'-' if v is None else f'{100 * v:6.2f}'}")
    agreement = result.get("agreement")
    if agreement:
        lines.append(f"labels agree with {agreement['with']} ({agreement['path']}) on "
                     f"{100 * agreement['agree']:.3f} % of {agreement['pixels']} pixels")
    return "\n".join(lines)


def _torch_predictor(model_arg, exact: bool = True):
    """``(frame -> labels at the frame's size, TorchEngine)`` of a checkpoint (``exact``: a QAT
    checkpoint's integer path, else its fake-quantized forward)."""
    from sentei.host import engine_registry
    from sentei.host.data import preprocess
    from sentei.host.modelfile import bundled

    if importlib.util.find_spec("torch") is None:
        raise SenteiError("--backend torch and --agree-with need PyTorch: pip install 'sentei[train]'")
    path, _ = bundled.resolve(model_arg, kind="torch-checkpoint")
    # a TorchEngine, registered by sentei.training.torch_engines (host/ never imports training/)
    engine = engine_registry.lookup("checkpoint", "torch")(path, exact=exact)
    height, width = engine.input_size

    def predict(frame):  # labels at the frame's size from the upsampled logits, as the Segmenter makes them
        return engine.predict(preprocess.prepare_frame(frame, height, width), size=frame.shape[:2])

    return predict, engine


def _open_predictor(model_arg, backend: str):
    """A callable frame -> labels at the frame's size, plus the model's name and classes."""
    from sentei.host.modelfile import bundled

    if backend == "torch":
        predict, engine = _torch_predictor(model_arg)
        return predict, engine.name, tuple(engine.class_names), "torch"
    from sentei.host.runtime.segmenter import Segmenter

    model = bundled.load_model(model_arg)
    # quiet: the backend (and why, with auto) is in the result and its summary line, and an error
    # about a frame or label later is then the only line on stderr
    seg = Segmenter(model, backend=backend, quiet=True)
    return seg, model.name, tuple(model.class_names), seg.backend


def _progress(items, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the train/bench extras; the plain install iterates quietly
        return items
    # disable=None: no bar when stderr is not a terminal (logs, pipes, CI keep one line per error)
    return tqdm(items, desc=desc, unit="frame", leave=False, disable=None)
