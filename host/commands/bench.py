"""``sentei bench`` and ``sentei bench-report``: latency, throughput and power, measured the same way everywhere.

One run = one engine (backend x device x precision) timed frame by frame at batch 1:

* **end-to-end** (capture to labels): a uint8 frame as the camera gives it -> resize to the
  model's input (when ``--capture`` differs) -> the network -> bilinear upsampling and
  argmax -> a uint8 label map on the host;
* **accelerator-only**: the network alone, frame at the model's size in -> logits out
  (for torch: on the device, synchronized; for the FPGA: the overlay's own time).

Each run reports latency p50/p90/p99, mean FPS (frames / summed latency), peak memory,
power (:mod:`sentei.host.bench.power`: mean W, J/frame, frames/J, idle and dynamic power) and
the environment. Several backends run in one process (``--backend emu,torch``), taking
turns with ``--rounds``, each with its own frame count (``--frames 50,reference=3``), and the
ratios are printed. (A slow engine's rounds can disturb the next engine's: the reference
engine is best timed in its own command.)

The ``perf`` backend is not a measurement: it asks the overlay's performance model
(``sentei.overlay.report.perf_report``) for a board and clock and is labelled ``modeled``
in every report, table and plot.

Reports are JSON (``schema: sentei-bench``, ``schema_version``), written atomically;
``bench-report`` (:mod:`sentei.host.bench.report`) merges reports of several machines.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from sentei.errors import SenteiError
from sentei.host import engine_registry
from sentei.host.bench import power as pw  # stdlib-only at import
from sentei.host.bench.engine import BenchEngine, read_text
from sentei.host.bench.report import SCHEMA, SCHEMA_VERSION
from sentei.host.runtime.driver import MAX_BATCH
from sentei.host.options import model_option, non_negative_int, non_negative_seconds, parse_size

BACKENDS = tuple(engine_registry.BACKENDS)  # auto, fpga, emu, reference, csim, torch, perf
PRECISIONS = ("fp32", "fp16")
POWER_CHOICES = ("auto", "none", *pw.SOURCES)
DEFAULT_FRAMES = {"reference": 3, "csim": 2}
_OPTION_FLAGS: dict[str, str] = {}  # dest -> flag of every `sentei bench` option, filled by register()
TRTEXEC_TIMEOUT_S = 1800  # engine build + timed run; a hung GPU must not hang the benchmark
MAX_CAPTURE = 8192  # pixels per side of --capture: 8K video, and 4 test frames of it fit in memory

def register(sub) -> None:
    """Add ``bench`` and ``bench-report`` to the ``sentei`` subcommands."""
    p = sub.add_parser("bench", help="latency, FPS and power of one or several backends (batch 1; "
                                     "--batch N adds the throughput of N frames per accelerator start)",
                       description="Time the network frame by frame on one or several backends and write "
                                   "a JSON report (see docs/benchmarks.md).")

    def option(*flags, **kwargs):  # each option is also written into the report's command (command_line)
        _OPTION_FLAGS[p.add_argument(*flags, **kwargs).dest] = flags[0]

    option("--model", **model_option(more="; 'teacher' is the dense PyTorch teacher (torch only); 'synthetic' "
                                          "is a random model of the shipped architecture (360x480, 90%% "
                                          "filter-wise sparse)"))
    option("--backend", **engine_registry.backend_option(BACKENDS, several=True))
    option("--frames", default="30",
           help="timed frames: N for every backend, or e.g. '30,reference=3' per backend "
                f"(defaults: {', '.join(f'{k}={v}' for k, v in DEFAULT_FRAMES.items())})")
    option("--batch", type=non_negative_int, default=1, metavar="N",
           help="also time the Segmenter backends (emu, reference, csim, fpga) with N frames per accelerator "
                f"start (FRAMES = N, 2 to {MAX_BATCH}) and report that throughput beside the single-frame "
                "latency (default 1: single frames only)")
    option("--warmup", type=non_negative_int, default=5,
           help="untimed frames first (default 5; 1 for reference/csim), and at least --warmup-seconds")
    option("--warmup-seconds", type=non_negative_seconds, default=1.0, metavar="S",
           help="keep warming up until this much time has passed (default 1; oneDNN and cuDNN "
                "pick their kernels during the first calls)")
    option("--rounds", type=int, default=1, metavar="R",
           help="alternate the measured backends in R rounds of frames/R each (default 1: one "
                "after the other); on a shared machine a burst of load then falls on all of them")
    option("--threads", type=int, default=None, metavar="N",
           help="CPU threads of the emulator and of torch (default: their own default, all cores)")
    option("--device", type=parse_device, default="cpu", help="torch device: cpu or cuda[:N] (default cpu)")
    option("--precision", default="fp32", help="torch precision(s): fp32, fp16 or fp32,fp16")
    option("--power", default="auto", choices=POWER_CHOICES,
           help="power source (auto picks PYNQ PMBus, Jetson INA3221/tegrastats, NVML or RAPL)")
    option("--idle", type=non_negative_seconds, default=2.0, metavar="S",
           help="seconds of idle power sampled before each run (0: no idle, no dynamic power)")
    option("--min-seconds", type=non_negative_seconds, default=5.0, metavar="S",
           help="with power measured, keep timing frames until the run lasts this long (default 5)")
    option("--capture", default=None, metavar="WxH",
           help="camera frame size: end-to-end time then includes the resize to the model's input "
                f"(at most {MAX_CAPTURE} per side)")
    option("--trtexec", default=None, metavar="ARGS",
           help="also run `trtexec ARGS` (TensorRT, e.g. on a Jetson: \"--onnx=m.onnx --fp16 "
                "--duration=20\") with power sampled, and add its figures as a run")
    option("--trtexec-log", default=None, metavar="FILE",
           help="add the figures of a saved trtexec output as a run (no power)")
    option("--board", default="zcu104", help="perf backend: board (default zcu104)")
    option("--clock-mhz", "--clock", dest="clock", type=float, default=None, metavar="MHZ",
           help="perf backend: clock in MHz (--clock-mhz, as sentei perf and overlay; --clock is its old name)")
    option("--label", default=None, help="machine label in the report (default: CPU/GPU/board model)")
    option("--seed", type=non_negative_int, default=0, help="seed of the random test frames")
    option("--json", dest="json_out", default=None, metavar="OUT", help="write the report here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-report", help="merge bench reports into a Markdown table and a plot",
                       description="Merge `sentei bench` reports (from any machines) into DIR/benchmarks.md "
                                   "and DIR/benchmarks.png, with speedup and perf/W against a baseline.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--baseline", default=None, metavar="REPORT.json",
                   help="the report whose first run is the 1.0x baseline (default: the first report)")
    p.add_argument("--baseline-run", default=None, metavar="TEXT",
                   help="pick the baseline run of that report whose label contains TEXT")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--no-plot", action="store_true", help="write the table only (no matplotlib needed)")
    p.set_defaults(func=cmd_bench_report)


# ---------------------------------------------------------------------------------------
# arguments


def parse_frames(text: str, backends: list[str], auto: str | None = None) -> dict[str, int]:
    """``'30,reference=3'`` -> frames per backend (the bare number for all, then the overrides;
    ``auto=N`` counts for the backend ``auto`` resolved to, ``auto``)."""
    default, overrides = None, {}
    for part in filter(None, (s.strip() for s in str(text).split(","))):
        name, eq, value = part.partition("=")
        try:
            n = int(value if eq else name)
        except ValueError:
            raise SenteiError(f"--frames {text}: {part!r} is not N or BACKEND=N") from None
        if n < 1:
            raise SenteiError(f"--frames {text}: frame counts must be at least 1")
        if eq:
            if name not in BACKENDS:
                raise SenteiError(f"--frames {text}: unknown backend {name!r} (one of {', '.join(BACKENDS)})")
            overrides[auto if name == "auto" and auto else name] = n
        else:
            default = n
    out = {}
    for b in backends:
        if b in overrides:
            out[b] = overrides[b]
        elif b in DEFAULT_FRAMES and (default is None or default > DEFAULT_FRAMES[b]) and len(backends) > 1:
            out[b] = DEFAULT_FRAMES[b]  # the slow engines get a small count when run beside fast ones
        else:
            out[b] = default if default is not None else 30
    return out


def parse_device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (argparse ``type``)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; pass cpu, cuda or cuda:N")
    return text


def resolve_auto(backends: list[str]) -> tuple[list[str], str | None]:
    """``auto`` as every command takes it (:func:`sentei.host.runtime.segmenter.choose_backend`): ``fpga``
    where this machine has a board with a sentei bitstream, else ``emu``; the list with it
    replaced (a backend named twice kept once) and what it became (None: not asked for)."""
    if "auto" not in backends:
        return backends, None
    from sentei.host.runtime.segmenter import choose_backend

    name = "fpga" if choose_backend("auto").name == "fpga" else "emu"
    out: list[str] = []
    for b in (name if b == "auto" else b for b in backends):
        if b not in out:
            out.append(b)
    return out, name


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated option as a list, each item checked against ``allowed``."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if not items or bad:
        raise SenteiError(f"{what} {text}: {', '.join(bad) or 'empty'} is not one of {', '.join(allowed)}")
    return items


# ---------------------------------------------------------------------------------------
# engines: infer(frame) -> (labels, accelerator seconds or None)


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


# ---------------------------------------------------------------------------------------
# one run


def latency_stats(seconds) -> dict:
    """p50/p90/p99/mean/min/max in ms, and mean FPS (frames over the summed latency)."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "max_ms": float(a.max()), "fps": float(1e3 / a.mean())}


def time_run(engine: BenchEngine, frames: list[np.ndarray], n: int, warmup: int, power: str = "none",
             idle_s: float = 0.0, min_seconds: float = 0.0, warmup_seconds: float = 0.0) -> dict:
    """Time ``n`` frames (after ``warmup``) on ``engine`` and sample power around it.

    Parameters
    ----------
    engine : BenchEngine
    frames : list of numpy.ndarray
        Captured frames, cycled through.
    n, warmup : int
        Timed and untimed frame counts.
    warmup_seconds : float
        Warm up for at least this long, whatever ``warmup`` says.
    power : str
        ``--power`` choice.
    idle_s : float
        Seconds of idle power before the run (0: none).
    min_seconds : float
        With power measured, keep timing frames until the run lasts this long.

    Returns
    -------
    dict
        The run's entry of the report (without its label).
    """
    timer = RunTimer(engine, power, idle_s, min_seconds)
    timer.warm(frames, warmup, warmup_seconds)
    timer.time(frames, n)
    return timer.result()


class RunTimer:
    """The timed frames of one engine, taken in one round or several (``sentei bench --rounds``).

    With several engines in one command, ``--rounds R`` alternates them: engine A times
    n/R frames, then engine B, then A again... so a burst of other load on a shared machine
    falls on both instead of on whichever ran at that moment, and their ratio is fair.
    Power is sampled during each round; the rounds' energies are summed
    (:func:`sentei.host.bench.power.summarize_rounds`), never interpolated across another engine's round.
    """

    def __init__(self, engine: BenchEngine, power: str = "none", idle_s: float = 0.0, min_seconds: float = 0.0):
        self.engine, self.power, self.idle_s, self.min_seconds = engine, power, idle_s, min_seconds
        self.e2e: list[float] = []
        self.accel: list[float | None] = []
        self.rounds: list[tuple] = []  # (power trace or None, frames, wall seconds)
        self.memory: dict = {}  # the largest high-water marks of the rounds
        self.idle = None
        self.why_none = ""
        self.power_device: dict = {}
        self.warmup = 0
        self.wall = self.cpu = 0.0
        self.load_before = self.load_after = None
        self.final: dict | None = None

    def warm(self, frames: list[np.ndarray], warmup: int, warmup_seconds: float = 0.0) -> None:
        """Idle power first (the engine loaded, not running), then the untimed frames."""
        if self.idle_s > 0:
            source, _ = pw.open_source(self.power, self.engine.power_target)
            if source is not None:
                try:
                    self.idle = pw.measure_idle(source, self.idle_s)
                finally:
                    source.close()
        t_warm, done = time.perf_counter(), 0
        while done < warmup or time.perf_counter() - t_warm < warmup_seconds:
            self.engine.infer(frames[done % len(frames)])
            done += 1
        self.warmup += done
        self.engine.reset_peak_memory()

    def time(self, frames: list[np.ndarray], n: int) -> None:
        """One round: ``n`` timed frames (more while power needs ``min_seconds``)."""
        source, self.why_none = pw.open_source(self.power, self.engine.power_target)
        try:
            sampler = pw.PowerSampler(source).start() if source is not None else None
            if self.load_before is None:
                self.load_before = _load_average()
            cpu_before = os.times()
            start = time.perf_counter()
            i = 0
            while i < n or (sampler is not None and time.perf_counter() - start < self.min_seconds):
                t0 = time.perf_counter()
                _, acc = self.engine.infer(frames[(len(self.e2e)) % len(frames)])
                self.e2e.append(time.perf_counter() - t0)
                self.accel.append(acc)
                i += 1
            wall = time.perf_counter() - start
            cpu_after = os.times()
            trace = sampler.stop() if sampler is not None else None
            if source is not None:
                self.power_device = source.device_info()  # before close() shuts NVML down
            self.memory = _larger(self.memory, self.engine.peak_memory_mb())  # reset by warm()
        finally:
            if source is not None:
                source.close()
        self.load_after = _load_average()
        self.wall += wall
        self.cpu += (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        self.rounds.append((trace, i, wall))

    def result(self) -> dict:
        """The run's entry of the report (without its label)."""
        engine = self.engine
        run = {"kind": "measured", "backend": engine.backend, "device": engine.device,
               "precision": engine.precision, "frames": len(self.e2e), "warmup": self.warmup, "wall_s": self.wall,
               "rounds": len(self.rounds),
               "latency": {"end_to_end": latency_stats(self.e2e),
                           "accelerator": latency_stats(self.accel) if all(a is not None for a in self.accel)
                           else None},
               "memory": self.memory,
               # other load on the machine skews every figure: what the kernel saw, and this process's share
               "host_load": {"loadavg_1min_before": self.load_before, "loadavg_1min_after": self.load_after,
                             "process_cpu_s_per_s": self.cpu / self.wall if self.wall else None},
               "power": pw.summarize_rounds(self.rounds, self.idle, self.why_none),
               "engine": engine.info()}
        if self.power_device:
            run["engine"]["power_device"] = self.power_device
        return run


SEGMENTER_BACKENDS = tuple(b for b in engine_registry.SEGMENTER_BACKENDS if b != "auto")  # after resolve_auto


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


def _larger(old: dict, new: dict) -> dict:
    """``new`` with each figure the larger of it and ``old``'s (the rounds of one run)."""
    return {key: max(value, old[key]) if isinstance(value, float) and isinstance(old.get(key), float) else value
            for key, value in new.items()}


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


_TRT_FIELD = re.compile(r"(min|max|mean|median|percentile\((\d+)%\)) = ([-+\d.eE]+) ms")


def parse_trtexec(text: str) -> dict:
    """Throughput and the ``Latency`` / ``GPU Compute Time`` statistics of a trtexec performance summary.

    Returns
    -------
    dict
        ``{"throughput_qps": float, "latency": stats, "gpu_compute": stats}`` with stats in
        the report's form (``p50_ms`` = median; ``p90_ms``/``p99_ms`` when printed).
    """
    out: dict = {}
    for line in text.splitlines():
        m = re.search(r"Throughput: ([-+\d.eE]+) qps", line)
        if m:
            out["throughput_qps"] = float(m.group(1))
            continue
        m = re.search(r"\b(Latency|GPU Compute Time): min", line)
        if not m or line[:m.start()].rstrip().endswith(("H2D", "D2H", "Host")):
            continue
        fields = {}
        for name, pct, value in _TRT_FIELD.findall(line):
            fields[f"p{pct}" if pct else name] = float(value)
        stats = {"p50_ms": fields.get("median"), "p90_ms": fields.get("p90"), "p99_ms": fields.get("p99"),
                 "mean_ms": fields.get("mean"), "min_ms": fields.get("min"), "max_ms": fields.get("max")}
        stats["fps"] = 1e3 / stats["mean_ms"] if stats["mean_ms"] else None
        out["latency" if m.group(1) == "Latency" else "gpu_compute"] = stats
    if "throughput_qps" not in out or "gpu_compute" not in out:
        raise SenteiError("no trtexec performance summary found (expected 'Throughput: ... qps' and "
                          "'GPU Compute Time: ...' lines, as TensorRT 8 and later print them)")
    return out


def trtexec_run(text: str, power: dict | None = None, command: str | None = None) -> dict:
    """A report run from trtexec's output: accelerator-only = its GPU compute time (no capture, no labels)."""
    t = parse_trtexec(text)
    power = power or {"status": "none", "reason": "taken from a saved trtexec log"}
    return {"kind": "measured", "backend": "tensorrt", "device": "cuda", "precision": "trtexec",
            "frames": None, "warmup": None, "wall_s": None,
            "latency": {"end_to_end": None, "accelerator": t["gpu_compute"], "trtexec_latency": t.get("latency")},
            "memory": {}, "power": power,
            "engine": {"trtexec_throughput_qps": t["throughput_qps"], "trtexec": command}}


def find_trtexec() -> str:
    """The trtexec executable: on PATH, or where a Jetson's TensorRT puts it."""
    import shutil

    exe = shutil.which("trtexec") or shutil.which("/usr/src/tensorrt/bin/trtexec")
    if exe is None:
        raise SenteiError("--trtexec: trtexec is not on PATH (TensorRT; on a Jetson /usr/src/tensorrt/bin); "
                          "install TensorRT or drop --trtexec")
    return exe


_TRT_INFERENCE_START = "Starting inference"  # "[I] Starting inference" (8, 10), "... threads" (7)
_TRT_TIMING_DONE = re.compile(r"Timing trace has (\d+) queries")
_TRT_WARMUP = re.compile(r"Warmup completed (\d+) queries")


def trtexec_device(args: list[str]) -> str:
    """The GPU trtexec runs on as torch names it: ``--device=N`` (or ``--device N``), else ``cuda``."""
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--device=") else \
            (args[i + 1] if arg == "--device" and i + 1 < len(args) else None)
        if value is not None and value.isdigit():
            return f"cuda:{value}"
    return "cuda"


def run_trtexec(args_text: str, power_choice: str, idle_s: float, exe: str | None = None) -> dict:
    """Run ``trtexec`` with power sampled over its inference phase only.

    trtexec first parses the ONNX file and builds the engine (minutes on a Jetson, mostly on
    the CPU while the GPU idles), then runs inference. Its output is read line by line as it
    comes (under ``stdbuf -oL`` where available): the sampler starts at "Starting inference"
    and stops at "Timing trace has N queries", and energy per frame is that window's energy
    over the warm-up and timed queries trtexec reports for it. Where the lines do not come
    (another format, output held back until exit) the power is ``none`` with the reason,
    never a mean over the engine build.
    """
    import shlex
    import shutil
    import subprocess
    import threading

    exe = exe or find_trtexec()
    args = shlex.split(args_text)
    command = [exe, *args]
    if shutil.which("stdbuf"):
        command = ["stdbuf", "-oL", "-eL", *command]
    source, why_none = pw.open_source(power_choice, trtexec_device(args))
    lines: list[str] = []
    window: dict = {}  # start/end times, the sampler and its trace, the queries in between

    def pump(stream):
        for line in stream:
            now = time.perf_counter()
            lines.append(line)
            if "start" not in window and _TRT_INFERENCE_START in line:
                window["start"] = now
                if source is not None:
                    window["sampler"] = pw.PowerSampler(source).start()
            elif "start" in window and "end" not in window:
                warm, done = _TRT_WARMUP.search(line), _TRT_TIMING_DONE.search(line)
                if warm:
                    window["warmup"] = int(warm.group(1))
                if done:  # the window's queries: warm-up + timed
                    window["end"], window["queries"] = now, int(done.group(1)) + window.get("warmup", 0)
                    if "sampler" in window:
                        window["trace"] = window["sampler"].stop()

    try:
        idle = pw.measure_idle(source, idle_s) if source is not None and idle_s > 0 else None
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")  # a stray byte must not end the reader thread
        reader = threading.Thread(target=pump, args=(proc.stdout,), name="sentei-trtexec-output", daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=TRTEXEC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise SenteiError(f"--trtexec: trtexec did not finish within {TRTEXEC_TIMEOUT_S} s "
                              f"(lower its --duration/--iterations)") from None
        finally:
            reader.join(timeout=10)
    finally:
        if "sampler" in window and "trace" not in window:
            window["trace"] = window["sampler"].stop()
        if source is not None:
            source.close()
    text = "".join(lines)
    if returncode != 0:
        tail = text.strip().splitlines()[-1:] or ["no output"]
        raise SenteiError(f"--trtexec: trtexec exited with status {returncode}: {tail[0]}")
    if source is None:
        summary = pw.summarize(None, None, 1, 0.0, why_none)
    elif "end" not in window:
        summary = {"status": "none", "source": source.name,
                   "reason": "trtexec printed no 'Starting inference' ... 'Timing trace has N queries' lines: "
                             "its inference phase, and so its power, could not be told from the engine build"}
    else:
        seconds = window["end"] - window["start"]
        frames = window["queries"] or max(1, round(parse_trtexec(text)["throughput_qps"] * seconds))
        summary = pw.summarize(window["trace"], idle, frames, seconds, why_none)
        if summary["status"] == "measured":
            summary["note"] = (f"over trtexec's inference phase ({seconds:.2f} s, {frames} queries including "
                               f"its warm-up), not its engine build")
    return trtexec_run(text, summary, "trtexec " + args_text)


def run_label(run: dict) -> str:
    """Short label of a run: ``emu 1T``, ``torch cuda fp16``, ``fpga zcu104 @200 MHz (modeled)``."""
    b = run["backend"]
    if b == "tensorrt":
        return "tensorrt (trtexec)"
    if b == "perf":
        clock = run.get("engine", {}).get("clock_mhz")
        at = f" @{clock:g} MHz" if clock else ""
        return f"fpga {run['device'].split(':', 1)[-1]}{at} (modeled)"
    eng = run.get("engine", {})
    threads = eng.get("torch_threads") if b == "torch" else eng.get("numba_threads")
    if b == "torch":
        label = f"torch {run['device']} {run['precision']}"
        return f"{label} {threads}T" if threads and run["device"] == "cpu" else label
    return f"{b} {threads}T" if threads else b


# ---------------------------------------------------------------------------------------
# environment


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    text = read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(label: str | None = None) -> dict:
    """Where the run happened: CPU, cores, clocks, memory, board/GPU, versions."""
    from sentei import __version__
    cores = os.cpu_count()
    env = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
           "cpu": {"model": cpu_model(), "logical_cores": cores,
                   "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores}}
    freq = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if freq and freq.isdigit():
        env["cpu"]["cur_freq_mhz"] = int(freq) / 1000
    fmax = read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if fmax and fmax.isdigit():
        env["cpu"]["max_freq_mhz"] = int(fmax) / 1000
    mem = read_text("/proc/meminfo")
    if mem and mem.startswith("MemTotal"):
        env["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    if pw.is_jetson():
        env["jetson"] = {"model": read_text("/proc/device-tree/model"),
                         "l4t": (read_text("/etc/nv_tegra_release") or "").split("\n")[0] or None}
    if pw.is_zynq():
        env["board"] = {"model": read_text("/proc/device-tree/model"), "BOARD": os.environ.get("BOARD")}
    env["versions"] = {name: _version(dist) for name, dist in (
        ("sentei", "sentei"), ("numpy", "numpy"), ("torch", "torch"), ("numba", "numba"), ("pynq", "pynq"),
        ("nvidia-ml-py", "nvidia-ml-py"))}
    env["versions"]["sentei"] = env["versions"]["sentei"] or __version__
    env["label"] = label or default_label(env)
    return env


def default_label(env: dict) -> str:
    if "jetson" in env and env["jetson"].get("model"):
        return env["jetson"]["model"]
    if "board" in env and env["board"].get("model"):
        return env["board"]["model"]
    return f"{env['cpu']['model']} ({env['cpu']['usable_cores']} cores)"


# ---------------------------------------------------------------------------------------
# models


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


# ---------------------------------------------------------------------------------------
# commands


def command_line(args) -> str:
    """The ``sentei bench`` command that reproduces ``args`` (every option spelled out)."""
    import shlex

    words = ["sentei", "bench"]
    for key, flag in _OPTION_FLAGS.items():
        value = getattr(args, key, None)
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def set_emulator_threads(threads: int) -> None:
    """Give the fast emulator ``threads`` threads (``NUMBA_NUM_THREADS``, read when numba is imported)."""
    if threads < 1:
        raise SenteiError(f"--threads {threads}: must be at least 1")
    if "numba" in sys.modules:
        import numba

        if numba.config.NUMBA_NUM_THREADS != threads:
            raise SenteiError(f"--threads {threads}: numba is already loaded with "
                              f"{numba.config.NUMBA_NUM_THREADS} threads; set NUMBA_NUM_THREADS={threads} instead")
        return
    os.environ["NUMBA_NUM_THREADS"] = str(threads)


def cmd_bench(args) -> int:
    from sentei.atomic_write import write_json
    from sentei.host.modelfile.bundled import model_file
    from sentei.output_paths import check_json_out
    from sentei.host.modelfile.synthetic import random_frame

    backends, auto = resolve_auto(parse_list(args.backend, BACKENDS, "--backend"))
    precisions = parse_list(args.precision, PRECISIONS, "--precision")
    counts = parse_frames(args.frames, backends, auto)
    if args.rounds < 1:
        raise SenteiError(f"--rounds {args.rounds}: at least 1")
    if not 1 <= args.batch <= MAX_BATCH:
        raise SenteiError(f"--batch {args.batch}: 1 to {MAX_BATCH} frames per accelerator start")
    capture = parse_size(args.capture, "--capture", width_first=True, maximum=MAX_CAPTURE) if args.capture else None
    check_json_out(args, model_file(args.model), args.trtexec_log)
    trtexec = find_trtexec() if args.trtexec else None  # looked for before anything is timed
    saved = None  # the saved trtexec log's run, parsed before the benchmark (a log without figures fails now)
    if args.trtexec_log is not None:
        try:
            saved = trtexec_run(Path(args.trtexec_log).read_text(errors="replace"))
        except SenteiError as exc:
            raise SenteiError(f"--trtexec-log {args.trtexec_log}: {exc}") from None
    model, model_info = load_bench_model(args.model)
    if model is not None:
        model_info.update(describe_model(model))
    env = environment(args.label)
    report = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": command_line(args),
              "environment": env, "model": model_info, "runs": []}

    if args.threads is not None:
        set_emulator_threads(args.threads)
    h, w = (model.input.height, model.input.width) if model is not None else (360, 480)
    ch, cw = capture or (h, w)
    model_info["capture"] = [ch, cw]
    frames = [random_frame(args.seed + i, ch, cw) for i in range(4)]

    if "perf" in backends and model is None:
        raise SenteiError("--backend perf models a model file, not a PyTorch checkpoint")
    measured = [(b, p) for b in backends if b != "perf" for p in (precisions if b == "torch" else ["int8"])]
    done = _interleaved(measured, args, model, frames, counts, args.rounds)
    if args.batch > 1:  # after every single-frame run, so the batched runs disturb none of them
        for backend in (b for b in backends if b in SEGMENTER_BACKENDS):
            engine = open_engine(backend, args.model, model, args.device, "int8", args.threads)
            try:
                done[(backend, "int8")]["batched"] = batched_run(engine, frames, counts[backend], args.batch)
            finally:
                engine.close()
    for backend in backends:  # in the order asked for (the first is the ratios' reference)
        if backend == "perf":
            _add_run(report, modeled_run(model, args.board, args.clock))
            continue
        for precision in (precisions if backend == "torch" else ["int8"]):
            _add_run(report, done[(backend, precision)])
    extra = []
    if args.trtexec:
        extra.append(run_trtexec(args.trtexec, args.power, args.idle, exe=trtexec))
    if saved is not None:
        extra.append(saved)
    for run in extra:
        _add_run(report, run)
    _print_ratios(report["runs"])
    if args.json_out:
        write_json(args.json_out, report)
        print(f"report: {args.json_out}")
    return 0


def _add_run(report: dict, run: dict) -> None:
    run["label"] = run_label(run)
    report["runs"].append(run)
    _print_run(run)


def _interleaved(measured, args, model, frames, counts, rounds: int) -> dict:
    """The measured backends in turn, ``rounds`` times (``--rounds``), each opened afresh for its round.

    Each round opens the engine, warms it (idle power only before the first round), times
    its share of the frames and closes it again: two engines left open side by side on a
    small CPU disturb each other (their OpenMP thread pools; measured: torch 10-15 % slower
    while an emulator that has run stays open), which alternation must not add.
    Returns ``{(backend, precision): run}``.
    """
    timers = {}
    for r in range(rounds):
        for backend, precision in measured:
            n = counts[backend]
            share = n * (r + 1) // rounds - n * r // rounds  # this round's frames; they sum to n
            if share == 0:
                continue
            engine = open_engine(backend, args.model, model, args.device, precision, args.threads)
            try:
                timer = timers.get((backend, precision))
                if timer is None:
                    timer = timers[(backend, precision)] = RunTimer(engine, args.power, args.idle, args.min_seconds)
                else:
                    timer.engine, timer.idle_s = engine, 0.0
                warmup = min(args.warmup, 1) if backend in ("reference", "csim") else args.warmup
                timer.warm(frames, warmup, args.warmup_seconds)
                timer.time(frames, share)
                if r == rounds - 1:  # every run has frames in the last round (its share >= 1)
                    timer.final = timer.result()  # while the engine is open: its info
            finally:
                engine.close()
    return {spec: timer.final for spec, timer in timers.items()}


def _print_run(run: dict) -> None:
    lat = run["latency"]
    e2e, acc = lat["end_to_end"], lat["accelerator"]
    parts = [f"{run['label']:<32}"]
    if e2e:
        parts.append(f"end-to-end p50/p90/p99 {e2e['p50_ms']:.1f}/{e2e['p90_ms']:.1f}/{e2e['p99_ms']:.1f} ms "
                     f"{e2e['fps']:.2f} FPS")
    if acc:
        parts.append(f"accelerator {acc['fps']:.2f} FPS")
    p = run["power"]
    if p["status"] in ("measured", "modeled"):
        dyn = f", dynamic {p['dynamic_w']:.2f} W" if "dynamic_w" in p else ""
        parts.append(f"power {p['mean_w']:.2f} W{dyn} ({p['source']}), {p['energy_per_frame_j'] * 1e3:.1f} mJ/frame")
    else:
        parts.append(f"power: none ({p['reason']})")
    frames = f" [{run['frames']} frames]" if run.get("frames") else ""
    print(" | ".join(parts) + frames)
    b = run.get("batched")
    if b:
        acc = f", accelerator {b['accelerator_fps']:.2f} FPS" if b.get("accelerator_fps") else ""
        print(f"  {'batched x' + str(b['batch']) + ' (throughput)':<30} end-to-end {b['fps'] or 0:.2f} FPS{acc} "
              f"[{b['frames']} frames in {b['starts']} starts of FRAMES={b['batch']}; latency above is single-frame]")


def _print_ratios(runs: list[dict]) -> None:
    if len(runs) < 2:
        return
    first = runs[0]

    def fps(run, part):
        stats = run["latency"][part]
        return stats["fps"] if stats else None

    print(f"ratios to {first['label']} (FPS of {first['label']} / FPS of the other):")
    for run in runs[1:]:
        items = []
        for part, name in (("end_to_end", "end-to-end"), ("accelerator", "accelerator-only")):
            a, b = fps(first, part), fps(run, part)
            if a and b:
                items.append(f"{name} {a / b:.2f}x")
        print(f"  vs {run['label']}: " + (", ".join(items) or "no common figure"))


def cmd_bench_report(args) -> int:
    from sentei.output_paths import check_output
    from sentei.host.bench import report as benchreport

    out = check_output(args.out, "--out", folder=True)
    inputs = [*args.reports, args.baseline]
    for name in benchreport.OUTPUTS[:1 if args.no_plot else None]:  # no report replaced by the table
        check_output(out / name, "--out", inputs=inputs)
    paths = benchreport.write_report(args.reports, args.out, baseline=args.baseline,
                                     baseline_run=args.baseline_run, plot=not args.no_plot)
    for p in paths:
        print(p)
    return 0

