"""TensorRT baselines: running NVIDIA's ``trtexec`` with power sampled over its inference phase, and
parsing its summary."""
from __future__ import annotations

import re
import time

from sentei.errors import SenteiError
from sentei.host.bench import power as pw  # stdlib-only at import

TRTEXEC_TIMEOUT_S = 1800  # engine build + timed run; a hung GPU must not hang the benchmark
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
