"""The PyTorch engines the host runs by name: ``--backend torch`` of ``sentei eval`` and ``sentei bench``.

``host/`` never imports the training side (a board image has no torch); this module puts
the torch engines into :mod:`sentei.host.engine_registry` when it is imported -- which
importing :mod:`sentei.training` does, and so does the registry itself through the
``sentei.engines`` entry point when it is asked for an engine it does not know yet.
Importing it needs no torch: the openers import it when an engine is opened.

- ``checkpoint``: :func:`open_checkpoint`, a :class:`~sentei.training.engine.TorchEngine`;
- ``bench``: :func:`open_bench_engine`, the float baseline of ``sentei bench`` (the model
  file's network as dense convolutions, or the teacher), or a QAT checkpoint's exact path.
"""
from __future__ import annotations

import time

from sentei.errors import SenteiError
from sentei.host import engine_registry
from sentei.host.bench.engine import BenchEngine


class TorchModuleEngine(BenchEngine):
    """A float PyTorch module on a device at batch 1 (the GPU/CPU baseline).

    End-to-end: uint8 frame -> device -> module -> upsample + argmax -> uint8 labels on the
    host. Accelerator-only: the module's forward on a device-resident input, synchronized.
    """

    backend = "torch"

    def __init__(self, module, height: int, width: int, device: str, precision: str, what: str):
        import torch

        from sentei.training.baseline import frame_to_tensor, labels

        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise SenteiError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; "
                                  f"use --device cpu")
            index = torch.device(device).index or 0
            if index >= torch.cuda.device_count():
                raise SenteiError(f"--device {device}: this machine has {torch.cuda.device_count()} visible GPU(s), "
                                  f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
            # Settings a deployed fp32/fp16 baseline would use, recorded in info(): cuDNN picks its
            # fastest algorithm for the one input shape during the warm-up, and fp32 means fp32
            # (Ampere and newer would otherwise run fp32 convolutions in TF32).
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.torch = torch
        self.device = "cuda" if device.startswith("cuda") else "cpu"
        self._device = torch.device(device)
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        # NHWC for weights and input alike (the input arrives as an HWC frame): cuDNN's tensor-core
        # kernels and oneDNN prefer it, and a module left NCHW would re-lay out every weight per call
        try:
            self.module = module.to(self._device, self.dtype).to(memory_format=torch.channels_last).eval()
        except RuntimeError as exc:  # out of memory, a CUDA error
            raise SenteiError(f"--device {device}: cannot place the network there: "
                              f"{' '.join(str(exc).split())[:200]}") from None
        self.height, self.width, self.what = height, width, what
        self._to_tensor, self._labels = frame_to_tensor, labels
        from sentei.host.data.preprocess import prepare_frame

        self._prepare = prepare_frame

    @property
    def power_target(self) -> str:
        return str(self._device)  # cuda:N: NVML reads that GPU

    def _sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize(self._device)

    def infer(self, frame):
        with self.torch.inference_mode():
            # channels_last already: frame_to_tensor permutes the HWC frame, like the module's weights
            x = self._to_tensor(self._prepare(frame, self.height, self.width), self._device, self.dtype)
            self._sync()
            t0 = time.perf_counter()
            logits = self.module(x)
            self._sync()
            t1 = time.perf_counter()
            out = self._labels(logits, frame.shape[0], frame.shape[1]).cpu().numpy()
        return out, t1 - t0

    def reset_peak_memory(self):
        super().reset_peak_memory()
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_mb(self):
        mem = super().peak_memory_mb()
        if self.device == "cuda":
            mem["device_peak_mb"] = self.torch.cuda.max_memory_allocated(self._device) / 2**20
        return mem

    def info(self):
        t = self.torch
        d = {"module": self.what, "torch_threads": t.get_num_threads(), "memory_format": "channels_last"}
        if self.device == "cuda":
            d["gpu"] = t.cuda.get_device_name(self._device)
            d["cudnn"] = t.backends.cudnn.version()
            d["cudnn_benchmark"] = bool(t.backends.cudnn.benchmark)
            d["tf32"] = bool(t.backends.cudnn.allow_tf32)
        return d

    def close(self):
        """Free the module, so that the next run's device peak memory does not count it."""
        self.module = None
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


class TorchPredictEngine(BenchEngine):
    """A torch engine known only through ``predict(frame) -> labels`` (no separate accelerator time)."""

    backend = "torch"

    def __init__(self, engine, what: str):
        from sentei.host.data.preprocess import prepare_frame

        self.engine, self.what = engine, what
        self._prepare = prepare_frame

    def infer(self, frame):  # labels from the logits upsampled to the frame, as the Segmenter and eval make them
        return self.engine.predict(self._prepare(frame, *self.engine.input_size), size=frame.shape[:2]), None

    def info(self):
        return {"module": self.what}


def open_bench_engine(model_arg, model, device: str, precision: str, threads: int | None = None) -> BenchEngine:
    """The torch baseline: the model file's network (pruned, zeros kept) or the dense teacher checkpoint."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    if model is not None:
        from sentei.training.baseline import build_module

        return TorchModuleEngine(build_module(model), model.input.height, model.input.width, device, precision,
                                 f"{model.name}: dense float convolutions with the pruned weights' zeros")
    from sentei.host.modelfile import bundled

    path, _ = bundled.resolve(model_arg, kind="torch-checkpoint")
    from sentei.training.engine import TorchEngine

    engine = TorchEngine(path, device="cpu")
    height, width = engine.input_size
    if engine.kind == "teacher":
        from sentei.training.baseline import teacher_module

        return TorchModuleEngine(teacher_module(engine.net), height, width, device, precision,
                                 f"{engine.name}: dense float teacher (batch-norm folded)")
    if device != "cpu" or precision != "fp32":
        raise SenteiError(f"{model_arg}: a quantization-aware checkpoint is timed through its exact integer "
                          f"path, on the CPU in fp32 only; for GPU or fp16 figures bench its model file "
                          f"(sentei export CHECKPOINT -o M.sentei, then --model M.sentei)")
    return TorchPredictEngine(engine, f"{engine.name}: quantization-aware checkpoint, exact integer path")


def open_checkpoint(path, exact: bool = True):
    """A checkpoint's :class:`~sentei.training.engine.TorchEngine` (``exact``: a QAT checkpoint's
    integer path, else its fake-quantized forward)."""
    from sentei.training.engine import TorchEngine

    return TorchEngine(path, exact=exact)


engine_registry.register("checkpoint", "torch", open_checkpoint)
engine_registry.register("bench", "torch", open_bench_engine)
