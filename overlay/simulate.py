"""The clock-level simulation of the generated pipeline, and the FIFO depths it derives.

``overlay/sim/pipeline_sim.cpp`` runs every dataflow process of ``network.h`` clock by clock
with bounded FIFOs and blocking reads and writes (see its header); this module describes a
network to it, compiles it once per source (g++, cached beside the C-simulation builds),
and reads its report:

* :func:`simulate` -- frames through one start: the clock each frame's last logit leaves,
  hence the pipeline interval (frame to frame, frames overlapped) and the latency (the first
  frame), every stream's largest occupancy and full clocks, every process's busy and
  stalled clocks;
* :func:`derive_fifo_depths` -- as hls4ml's FIFO-depth pass does from co-simulation: the
  frames are fed at the modeled interval into FIFOs that never fill, and a FIFO deepened
  beyond its rule depth goes no deeper than its largest occupancy plus :data:`FIFO_MARGIN`;
  the code generator writes those depths.

Every figure is *simulated* from the HLS loops as written, not measured on a board, and
not a synthesis result: co-simulation with the real tools (``make -C overlay cosim``) is the
next check, and its stalls must match these.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from sentei.errors import SenteiError

SIM_SOURCE = Path(__file__).resolve().parent / "sim" / "pipeline_sim.cpp"
SIM_FLAGS = ("-O2", "-std=c++17")
FIFO_MARGIN = 2  # slots above the largest occupancy seen (hls4ml adds one)
MIN_DEPTH = 2  # Vitis HLS's default depth; no stream is shallower
UNBOUNDED = 1 << 40  # the depth of a FIFO that never fills, for deriving depths
LATENCY = {"io": 2, "window": 3, "engine": 10}  # clocks from an iteration to its token being readable
LOOP_OVERHEAD = 2  # clocks to leave one pipelined loop and enter the next
SIM_TIMEOUT_S = 1800


def binary() -> Path:
    """The compiled simulator (built on first use, cached by the hash of its source)."""
    from sentei.overlay.toolchain import cache_root, find_compiler

    cxx = find_compiler()
    digest = hashlib.sha256(SIM_SOURCE.read_bytes() + " ".join(SIM_FLAGS).encode() + cxx.encode()).hexdigest()[:16]
    folder = cache_root().parent / "sim" / digest
    exe = folder / "pipeline_sim"
    if exe.is_file():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pipeline_sim.", dir=folder)
    os.close(fd)
    try:
        run = subprocess.run([cxx, *SIM_FLAGS, str(SIM_SOURCE), "-o", tmp], capture_output=True, text=True,
                             timeout=300)
        if run.returncode:
            first = next((ln for ln in run.stderr.splitlines() if "error" in ln), run.stderr.strip()[:200])
            raise SenteiError(f"the pipeline simulator did not compile: {first}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return exe


def describe(facts, frames: int, pace: float = 0.0, depths: dict | None = None,
             max_clocks: int = 0) -> str:
    """The simulator's input for the network ``facts`` (sentei.overlay.codegen.NetworkFacts).

    ``depths`` overrides FIFO depths by stream name (``words``, ``rgb``, ``act<n>``, ``win<n>``;
    ``act<L>`` is the logits stream); ``pace`` feeds a frame every ``pace`` clocks (0: as fast
    as the pipeline takes it).
    """
    from sentei.overlay.perf import DDR_READ_LATENCY

    depths = depths or {}
    last = facts.layers[-1]
    lines = [f"frames {int(frames)}", f"pace {float(pace)!r}", f"max_clocks {int(max_clocks)}",
             f"loop_overhead {LOOP_OVERHEAD}", f"ddr_latency {DDR_READ_LATENCY}",
             f"latency {LATENCY['io']} {LATENCY['window']} {LATENCY['engine']}",
             f"input {facts.height} {facts.width} {facts.frame_words}",
             f"depths {depths.get('words', MIN_DEPTH)} {depths.get('rgb', MIN_DEPTH)} "
             f"{depths.get(f'act{len(facts.layers)}', MIN_DEPTH)}",
             f"output {last.out_height} {last.out_width} {last.cout}", f"layers {len(facts.layers)}"]
    for n, f in enumerate(facts.layers):
        g = dict(f.geometry)
        act = depths.get(f"act{n}", f.act_depth)
        win = depths.get(f"win{n}", f.win_depth)
        lines.append("layer " + " ".join(str(int(v)) for v in (
            0 if f.engine == "sparse" else 1, f.kernel, f.stride, f.dilation, f.padding, f.in_height, f.in_width,
            f.out_height, f.out_width, f.cin, f.cout, f.k_nonzero, f.lanes, f.folds, g["chunk_channels"],
            g["chunks"], g["pixel_iterations"], g["window_iterations"], g["requant_span"], act, win,
            g["pixels"], g["chunks"] // (f.cin // g["chunk_channels"]), g["spacing"], g["row_groups"],
            int(f.ddr_rows), g["pixel_beats"], g["row_beats"], depths.get(f"fetch{n}", f.fetch_depth))))
    return "\n".join(lines) + "\n"


def clock_bound(facts, frames: int, pace: float = 0.0) -> int:
    """Clocks no simulation of ``frames`` frames can need unless the pipeline deadlocks: every
    process's clocks for every frame run one after another, plus the pacing, plus slack for
    the loop overheads and pipeline depths."""
    per_frame = facts.frame_words + 2 * facts.height * facts.width + facts.logit_words
    for f in facts.layers:
        g = dict(f.geometry)
        per_frame += (g["window_iterations"] + f.out_height * g["row_groups"] * g["pixel_iterations"]
                      + 4 * g["chunks"] + g["pixels"] * g["spacing"] + g["row_memory_cycles"])
    return frames * (2 * per_frame + int(pace) + 1000) + 100_000


@functools.lru_cache(maxsize=256)
def _simulate(exe: str, description: str) -> str:
    """The simulator's report for one description (kept per process: codegen, a C-simulation
    build and ``perf --simulate`` of the same network ask for the same runs)."""
    proc = subprocess.run([exe], input=description, capture_output=True, text=True, timeout=SIM_TIMEOUT_S)
    if proc.returncode not in (0, 3) or not proc.stdout.strip():
        raise SenteiError(f"the pipeline simulator failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def run(facts, frames: int = 3, pace: float = 0.0, depths: dict | None = None, max_clocks: int | None = None) -> dict:
    """Simulate ``frames`` frames through one start; the simulator's report, plus ``interval_cycles``
    (median clocks between consecutive frames' last logits; None for one frame) and
    ``latency_cycles`` (the first frame's last logit). A pipeline that has not finished
    within ``max_clocks`` (default :func:`clock_bound`) is a deadlock: a one-line error
    naming the processes still waiting."""
    if frames < 1:
        raise SenteiError(f"frames {frames}: simulate at least one frame")
    bound = clock_bound(facts, frames, pace) if max_clocks is None else max_clocks
    report = json.loads(_simulate(str(binary()), describe(facts, frames, pace, depths, bound)))
    if not report["finished"]:
        waiting = [name for name, p in report["processes"].items() if not p["done"]]
        raise SenteiError(f"the simulated pipeline did not finish {frames} frame(s) in {bound:,} clocks: deadlock "
                          f"(still running: {', '.join(waiting[:6])})")
    done = report["frame_done"]
    gaps = [b - a for a, b in zip(done, done[1:])]
    report["interval_cycles"] = int(statistics.median(gaps)) if gaps else None
    report["latency_cycles"] = done[0] if done else None
    report["stalled"] = not report["finished"]
    return report


def stream_names(facts) -> list[str]:
    """The pipeline's streams in order: ``words``, ``rgb``, then ``act<n>`` (layer n's input) and
    ``win<n>`` (its chunks) per layer, and ``act<L>`` (the logits)."""
    names = ["words", "rgb"]
    for n, f in enumerate(facts.layers):
        names += [f"act{n}", f"win{n}"] + ([f"fetch{n}"] if f.ddr_rows else [])
    return names + [f"act{len(facts.layers)}"]


def rule_depths(facts) -> dict[str, int]:
    """The depths codegen starts from: the geometry's rules (perf.fifo_depth_*) per layer, the
    Vitis HLS default for the I/O streams."""
    depths = {name: MIN_DEPTH for name in stream_names(facts)}
    depths["words"], depths["rgb"], depths[f"act{len(facts.layers)}"] = facts.io_depths
    for n, f in enumerate(facts.layers):
        depths[f"act{n}"], depths[f"win{n}"] = f.act_depth, f.win_depth
        if f.ddr_rows:
            depths[f"fetch{n}"] = f.fetch_depth
    return depths


def derive_fifo_depths(facts, interval: int, frames: int = 3, tolerance: float = 0.005,
                       rounds: int = 16) -> tuple[dict[str, int], dict]:
    """FIFO depths that let the pipeline run at ``interval`` clocks a frame, and the last
    simulation's report.

    As hls4ml's FIFO-depth pass does from co-simulation, the largest occupancy of each stream
    is measured -- here with the frames fed every ``interval`` clocks into FIFOs that never
    fill: no depth above it (plus :data:`FIFO_MARGIN`) can help. Starting from the rule depths
    (:func:`rule_depths`: never below them, they are what the allocator priced -- a FIFO cut
    below 65 words would move from BRAM to LUTRAM, against the allocator's budget), the
    pipeline is simulated with bounded FIFOs; while its interval is
    more than ``tolerance`` above ``interval``, every FIFO whose producer waited for room is
    deepened (doubled, up to its measured largest occupancy plus the margin). Doubling every
    blocked FIFO also grows ones whose waiting costs nothing (a window generator ahead of its
    engine), so once the interval is reached each grown FIFO is tried back at its starting
    depth, one simulation each, and kept there where the interval holds.
    """
    names = stream_names(facts)
    unbounded = run(facts, 2, pace=interval, depths={name: UNBOUNDED for name in names})
    cap = {name: max(MIN_DEPTH, fifo["max"] + FIFO_MARGIN) for name, fifo in unbounded["fifos"].items()}
    start = rule_depths(facts)
    depths = dict(start)
    report = run(facts, frames, depths=depths)
    for _ in range(rounds):
        if report["interval_cycles"] is None or report["interval_cycles"] <= interval * (1 + tolerance):
            break
        grow = [name for name in names if depths[name] < cap[name] and report["fifos"][name]["blocked"]]
        if not grow:
            break
        for name in grow:
            depths[name] = min(cap[name], 2 * depths[name])
        report = run(facts, frames, depths=depths)

    def reached(rep) -> bool:
        return rep["interval_cycles"] is not None and rep["interval_cycles"] <= interval * (1 + tolerance)

    if reached(report):
        for name in sorted((n for n in names if depths[n] > start[n]), key=lambda n: -depths[n]):
            trial = dict(depths, **{name: start[name]})
            shrunk = run(facts, frames, depths=trial)
            if reached(shrunk):
                depths, report = trial, shrunk
    return depths, report


def compare(model_interval: int, report: dict) -> dict:
    """The modeled interval against the simulated one: ``{"modeled", "simulated", "error"}``
    (error = simulated / modeled - 1)."""
    sim = report["interval_cycles"]
    return {"modeled": model_interval, "simulated": sim,
            "error": None if sim is None else sim / model_interval - 1.0}
