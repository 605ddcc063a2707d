"""The backends ``sentei bench`` times: the Segmenter backends (one frame or a batch), the FPGA
figure of the performance model (``perf``, labelled modeled), and the model a run loads."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from sentei.errors import SenteiError
from sentei.host import engine_registry
from sentei.host.bench.engine import BenchEngine


class SegmenterEngine(BenchEngine):
    """The host driver's :class:`~sentei.host.runtime.segmenter.Segmenter`: ``emu``, ``reference``, ``csim``, ``fpga``.

    End-to-end is ``seg.segment(frame)`` (resize, the accelerator through its registers,
    upsampling and argmax at the frame's size); accelerator-only is the Segmenter's own
    ``timing.accelerator`` (AP_START written to done seen).
    """

    def __init__(self, model, backend: str):
        from sentei.host.runtime.segmenter import Segmenter

        self.model = model
        self.seg = Segmenter(model, backend=backend, quiet=True)
        self.backend = self.seg.backend
        self.device = "fpga" if self.backend == "fpga" else "cpu"

    def infer(self, frame):
        result = self.seg.segment(frame)
        return result.labels, float(result.timing.accelerator)

    def infer_batch(self, frames: list[np.ndarray]) -> float:
        """Labels of ``frames`` in one accelerator start; the batch's accelerator-only seconds."""
        return float(sum(r.timing.accelerator for r in self.seg.segment_batch(frames)))

    def info(self):
        d = {"engine": f"Segmenter backend {self.backend}: {self.seg.backend_reason}"}
        if self.backend == "emu":
            import numba

            d["numba_threads"] = numba.config.NUMBA_NUM_THREADS
        if self.backend == "fpga":
            d.update(fpga_info(self.seg.overlay))
        return d

    def close(self):
        self.seg.close()


def fpga_info(overlay) -> dict:
    """The loaded bitstream (file, size, SHA-256) and the PL clock the accelerator runs at.

    Every board's block design clocks the accelerator from PL clock 0 (overlay/boards/*.json),
    read back through ``pynq.ps.Clocks.fclk0_mhz``; a figure that cannot be read is left out.
    """
    import hashlib

    info = {}
    bitfile = getattr(overlay, "bitfile_name", None)
    if bitfile:
        info["bitstream"] = str(bitfile)
        try:
            data = Path(bitfile).read_bytes()
            info["bitstream_bytes"], info["bitstream_sha256"] = len(data), hashlib.sha256(data).hexdigest()
        except OSError:
            pass
    try:
        from pynq.ps import Clocks

        info["pl_clock_mhz"] = float(Clocks.fclk0_mhz)
    except Exception:  # not a Zynq PS, or pynq without its clock driver
        pass
    return info


def open_engine(backend: str, model_arg, model, device: str, precision: str,
                threads: int | None = None) -> BenchEngine:
    """The engine for one run (``threads``: CPU threads of the emulator and torch)."""
    if backend == "torch":  # registered by sentei.training (sentei.training.torch_engines)
        if importlib.util.find_spec("torch") is None:
            raise SenteiError("--backend torch needs PyTorch: pip install 'sentei[train]'")
        return engine_registry.lookup("bench", "torch")(model_arg, model, device, precision, threads)
    if model is None:
        raise SenteiError(f"--backend {backend} runs a model file; {model_arg} is a PyTorch checkpoint "
                          f"(use --backend torch)")
    return SegmenterEngine(model, backend)


def batched_run(engine: SegmenterEngine, frames: list[np.ndarray], n: int, batch: int) -> dict:
    """Throughput of ``batch`` frames per accelerator start: one untimed batch, then batches until
    ``n`` frames (at least one batch). Throughput only: a frame of a batch waits for the others, so
    its latency is not the single-frame latency the run reports beside it."""
    def group(k):
        return [frames[(k * batch + i) % len(frames)] for i in range(batch)]

    engine.infer_batch(group(0))
    starts = max(1, -(-n // batch))
    accel = 0.0
    t0 = time.perf_counter()
    for k in range(starts):
        accel += engine.infer_batch(group(k + 1))
    wall = time.perf_counter() - t0
    done = starts * batch
    return {"batch": batch, "starts": starts, "frames": done, "wall_s": wall,
            "fps": done / wall if wall > 0 else None, "accelerator_fps": done / accel if accel > 0 else None,
            "note": f"throughput of {batch} frames per accelerator start (FRAMES={batch}), end-to-end and "
                    f"accelerator-only; no power; the latency figures of this run are single frames"}


def modeled_run(model, board: str, clock_mhz: float | None) -> dict:
    """The FPGA figure of the performance model (no board), labelled ``modeled``.

    Power is ``none`` unless the performance model gives an estimate (``power_w``).
    """
    from sentei.overlay.perf import load_board
    from sentei.overlay.report import perf_report

    clock = float(clock_mhz) if clock_mhz is not None else float(load_board(board).default_clock_mhz)
    rep = perf_report(model, board, clock)
    fps = float(rep["frames_per_s"])
    pipe = rep.get("pipeline", {})
    latency_ms = float(pipe.get("latency_ms", 1e3 / fps))
    stats = {"p50_ms": latency_ms, "p90_ms": latency_ms, "p99_ms": latency_ms, "mean_ms": latency_ms,
             "min_ms": latency_ms, "max_ms": latency_ms, "fps": fps}
    watts = _first_number(rep, ("power_w", "estimated_power_w"))
    if watts:
        power = {"status": "modeled", "source": "sentei.overlay.perf", "mean_w": watts,
                 "energy_per_frame_j": watts / fps, "frames_per_j": fps / watts}
    else:
        power = {"status": "none", "reason": "the performance model gives no power estimate"}
    keep = {k: rep[k] for k in ("board", "part", "clock_mhz", "lanes", "assumptions") if k in rep}
    keep["pipeline"] = {k: v for k, v in pipe.items() if isinstance(v, (int, float, str))}
    if "resources" in rep:
        keep["resources"] = rep["resources"]
    return {"kind": "modeled", "backend": "perf", "device": f"fpga:{rep.get('board', board)}", "precision": "int8",
            "frames": None, "warmup": None, "wall_s": None,
            "latency": {"end_to_end": None, "accelerator": stats}, "memory": {}, "power": power,
            "engine": {"board": rep.get("board", board), "clock_mhz": clock, "perf_report": _jsonable(keep)}}


def _first_number(d: dict, keys) -> float | None:
    for key in keys:
        value = d.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def load_bench_model(name):
    """``(model or None, description)``: None when ``name`` is a PyTorch checkpoint (the teacher)."""
    from sentei.host.modelfile import schema, bundled
    from sentei.host.modelfile.synthetic import shipped_model

    if name == "synthetic":
        model = shipped_model()
        return model, {"name": model.name, "synthetic": True, "source": "sentei.host.modelfile.synthetic.shipped_model"}
    path, kind = bundled.resolve(name)
    if kind == "torch-checkpoint":
        return None, {"name": str(name), "synthetic": False, "kind": kind, "file": Path(path).name}
    model = schema.load(path)
    return model, {"name": model.name, "synthetic": bool(model.metadata.get("synthetic")), "kind": kind,
                   "file": Path(path).name}


def describe_model(model) -> dict:
    from sentei.host.modelfile import schema

    t = schema.describe(model)["totals"]
    return {"input": [model.input.height, model.input.width], "layers": len(model.layers),
            "num_classes": model.num_classes, "sparsity": t["sparsity"], "macs_dense": t["macs_dense"],
            "macs_executed": t["macs_executed"]}
