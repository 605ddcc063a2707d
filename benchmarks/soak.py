"""Soak test: the emulated accelerator for many frames, watching memory, buffers, threads and files.

Runs :class:`sentei.host.runtime.segmenter.Segmenter` on an :class:`~sentei.host.runtime.emulated_overlay.EmulatedOverlay`
(the same driver code as the board: register writes, buffer flushes, start/done) frame after
frame through ``Segmenter.stream`` -- the camera loop's pipelined path, labels included -- and
every ``--every`` frames records:

- the resident memory of the process (``VmRSS`` of ``/proc/self/status``),
- the emulated DDR's live buffers and bytes (``EmulatedMemory.live_buffers()/live_bytes()``),
- the emulated overlay's event log and command list lengths (they must stay bounded),
- live threads and open file descriptors,
- frames per second over the interval.

Verdict (``--max-growth-kib``, default 256 KiB per 1000 frames): the Theil-Sen slope (median
of the pairwise slopes; the least-squares one is reported beside it) of RSS over the last
``--fit-samples`` samples (default 8, i.e. the last 4000 frames at the defaults) must stay
below the threshold; live buffers and file descriptors must be the same at every sample, live
threads may differ by one (the emulated accelerator's worker for the frame in flight), and the
overlay's event log and command list must stay within their limits. The first samples
(allocator and JIT warm-up) are outside the fit window. A leak of one 360x480 frame per 1000 frames (506 KiB) fails it; the noise of the
allocator (tens of KiB) does not. The script exits with status 1 when the verdict fails.

Usage (from the repository root)::

    python benchmarks/soak.py                                   # 10,000 frames, the default model
    python benchmarks/soak.py --frames 2000 --every 250 --model synthetic --size 90x120
    python benchmarks/soak.py --json benchmarks/results/soak-cpu2.json
    python benchmarks/soak.py --table benchmarks/results/soak-cpu2.json   # its Markdown table

``--model`` takes a model file, a bundled model's name, or ``synthetic`` (random weights of the
shipped architecture, :func:`sentei.host.modelfile.synthetic.shipped_model`). Without it: the
default bundled model, else ``synthetic`` (said in the report).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import threading
import time

import numpy as np

from sentei.cli import parse_size
from sentei.host.options import add_json_option, add_seed_option
from sentei.errors import SenteiError
from sentei.host.bench.environment import environment
from sentei.host.emulator.engine import set_emulator_threads

DEFAULT_FRAMES = 10_000
DEFAULT_EVERY = 500
DEFAULT_FIT_SAMPLES = 8
DEFAULT_MAX_GROWTH_KIB = 256.0  # per 1000 frames


def rss_kib() -> int:
    """Resident set size of this process in KiB (Linux ``/proc``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def open_fds() -> int | None:
    """Open file descriptors of this process (None where ``/proc/self/fd`` does not exist)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def slope_per_1000(frames: list[int], values: list[float], robust: bool = True) -> float:
    """Slope of ``values`` against ``frames``, per 1000 frames.

    ``robust``: the Theil-Sen estimate (the median of the slopes between every pair of
    samples), which one step of the allocator (a new arena, a thread's stack) does not swing;
    otherwise the least-squares slope.
    """
    x = np.asarray(frames, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0
    if not robust:
        return float(np.polyfit(x, y, 1)[0] * 1000.0)
    i, j = np.triu_indices(len(x), k=1)
    keep = x[j] != x[i]
    return float(np.median((y[j] - y[i])[keep] / (x[j] - x[i])[keep]) * 1000.0)


def verdict(samples: list[dict], fit_samples: int = DEFAULT_FIT_SAMPLES,
            max_growth_kib: float = DEFAULT_MAX_GROWTH_KIB) -> dict:
    """Judge a soak run from its samples (see the module docstring for the rule).

    Returns
    -------
    dict
        ``ok``, the fitted ``rss_slope_kib_per_1000_frames`` over the last ``fit_samples``
        samples, ``rss_growth_kib`` from the first to the last of them, and ``reasons`` (why
        not ok; empty when ok).
    """
    window = samples[-fit_samples:]
    frames, rss = [s["frame"] for s in window], [s["rss_kib"] for s in window]
    slope = slope_per_1000(frames, rss)
    reasons = []
    if len(window) < 3:
        reasons.append(f"only {len(window)} samples: run more frames (at least 3 samples to fit)")
    if slope >= max_growth_kib:
        reasons.append(f"RSS grows {slope:.1f} KiB per 1000 frames over the last {len(window)} samples "
                       f"(limit {max_growth_kib:g})")
    for key in ("live_buffers", "live_bytes", "open_fds"):
        values = {s.get(key) for s in samples}
        if len(values) > 1:
            reasons.append(f"{key} changed during the run: {sorted(v for v in values if v is not None)}")
    threads = [s["threads"] for s in samples]
    if threads and max(threads) - min(threads) > 1:  # 1: the worker of the frame in flight, or not
        reasons.append(f"live threads went from {min(threads)} to {max(threads)}")
    for key in ("log_entries", "commands_kept"):  # bounded, not constant: they fill up to their limit
        limit = samples[0].get(f"{key}_limit") if samples else None
        if limit is None:
            reasons.append(f"{key}: the emulated overlay has no limit on it (grows with every frame)")
        elif max(s[key] for s in samples) > limit:
            reasons.append(f"{key} exceeds its limit {limit}")
    return {"ok": not reasons, "fit_samples": len(window), "max_growth_kib_per_1000_frames": max_growth_kib,
            "rss_slope_kib_per_1000_frames": round(slope, 2),
            "rss_least_squares_slope_kib_per_1000_frames": round(slope_per_1000(frames, rss, robust=False), 2),
            "rss_growth_kib": (window[-1]["rss_kib"] - window[0]["rss_kib"]) if window else 0,
            "reasons": reasons}


def pick_model(name: str | None, size: tuple[int, int] | None, density: float):
    """``(model, description)``: a file, a bundled name, ``synthetic``, or the default."""
    from sentei.host.modelfile import bundled
    from sentei.host.modelfile.synthetic import shipped_model

    if name is None and bundled.default_model_name() is not None:
        name = bundled.default_model_name()
    if name is None or name == "synthetic":
        h, w = size or (360, 480)
        model = shipped_model(1.0 - density, h, w)
        why = "synthetic: random weights of the shipped architecture"
        if name is None:
            why += " (no trained model is bundled)"
        return model, why
    if size is not None:
        raise SystemExit("soak: --size applies to --model synthetic only")
    model = bundled.load_model(name)
    return model, f"model file {name}"


def run_soak(model, frames: int = DEFAULT_FRAMES, every: int = DEFAULT_EVERY, hardware: str = "emu",
             distinct_frames: int = 8, seed: int = 0, echo=print) -> dict:
    """Stream ``frames`` frames through a Segmenter on an emulated overlay; sample every ``every``.

    Returns
    -------
    dict
        ``samples`` (one dict per sample), ``after_close`` (buffers and threads once the
        Segmenter and the overlay are closed), ``seconds``.
    """
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay
    from sentei.host.runtime.segmenter import Segmenter
    from sentei.host.modelfile.synthetic import random_frame

    q = model.input
    pool = [random_frame(seed + n, q.height, q.width) for n in range(distinct_frames)]
    overlay = EmulatedOverlay(model, hardware=hardware)
    samples: list[dict] = []
    t_start = time.perf_counter()
    with Segmenter(model, overlay=overlay, quiet=True) as seg:
        def source():
            for n in range(frames):
                yield pool[n % len(pool)]

        t_last, n_last = time.perf_counter(), 0
        checksum = 0
        for n, result in enumerate(seg.stream(source()), start=1):
            checksum = (checksum * 31 + int(result.labels[::37, ::41].sum())) % (2**61 - 1)
            if n % every == 0 or n == frames:
                gc.collect()
                now = time.perf_counter()
                sample = {
                    "frame": n,
                    "rss_kib": rss_kib(),
                    "live_buffers": overlay.memory.live_buffers(),
                    "live_bytes": overlay.memory.live_bytes(),
                    "log_entries": len(overlay.log),
                    "log_entries_limit": getattr(overlay.log, "limit", None),
                    "commands_kept": len(overlay.mmio.commands),
                    "commands_kept_limit": getattr(overlay.mmio.commands, "limit", None),
                    "threads": threading.active_count(),
                    "open_fds": open_fds(),
                    "fps": round((n - n_last) / (now - t_last), 2),
                    "seconds": round(now - t_start, 1),
                }
                samples.append(sample)
                t_last, n_last = now, n
                echo(f"frame {n:>6}: RSS {sample['rss_kib'] / 1024:8.1f} MiB, live buffers {sample['live_buffers']} "
                     f"({sample['live_bytes']} B), log {sample['log_entries']}, threads {sample['threads']}, "
                     f"fds {sample['open_fds']}, {sample['fps']:.1f} FPS")
    overlay.close()
    gc.collect()
    return {"samples": samples, "seconds": round(time.perf_counter() - t_start, 1), "label_checksum": checksum,
            "after_close": {"live_buffers": overlay.memory.live_buffers(),
                            "live_bytes": overlay.memory.live_bytes(),
                            "threads": threading.active_count(), "rss_kib": rss_kib()}}


def markdown_table(report: dict) -> str:
    """The samples of a soak report as a Markdown table (what docs/benchmarks.md shows)."""
    rows = ["| frame | RSS MiB | Δ RSS KiB | live buffers | live bytes | log entries | threads | fds | FPS |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    first = report["samples"][0]["rss_kib"]
    for s in report["samples"]:
        rows.append(f"| {s['frame']} | {s['rss_kib'] / 1024:.1f} | {s['rss_kib'] - first:+d} | {s['live_buffers']} | "
                    f"{s['live_bytes']} | {s['log_entries']} | {s['threads']} | {s['open_fds']} | {s['fps']:.1f} |")
    after = report["after_close"]
    rows.append(f"| after close | {after['rss_kib'] / 1024:.1f} | {after['rss_kib'] - first:+d} | "
                f"{after['live_buffers']} | {after['live_bytes']} | | {after['threads']} | | |")
    return "\n".join(rows)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text, "--size", minimum=8)  # the network strides by 8
    except SenteiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"frames to run (default {DEFAULT_FRAMES})")
    p.add_argument("--every", type=int, default=DEFAULT_EVERY, help=f"sample every N frames (default {DEFAULT_EVERY})")
    p.add_argument("--model", default=None, help="model file, bundled name, or 'synthetic' (default: the bundled "
                                                  "model, else synthetic)")
    p.add_argument("--size", type=_size, default=None, help="input HxW of the synthetic model (default 360x480)")
    p.add_argument("--density", type=float, default=0.1, help="kept weights per filter of the synthetic model")
    p.add_argument("--hardware", default="emu", choices=("emu", "reference"),
                   help="what the emulated overlay computes with (default emu, the fast emulator)")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's)")
    p.add_argument("--fit-samples", type=int, default=DEFAULT_FIT_SAMPLES,
                   help=f"samples in the RSS slope fit (default {DEFAULT_FIT_SAMPLES})")
    p.add_argument("--max-growth-kib", type=float, default=DEFAULT_MAX_GROWTH_KIB,
                   help=f"largest RSS slope that passes, KiB per 1000 frames (default {DEFAULT_MAX_GROWTH_KIB:g})")
    add_seed_option(p)
    p.add_argument("--label", default=None, help="machine label in the report")
    add_json_option(p)
    p.add_argument("--table", default=None, metavar="REPORT",
                   help="only print the Markdown table of an existing report (run nothing)")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as fh:
            print(markdown_table(json.load(fh)))
        return 0
    if args.frames < 1 or args.every < 1:
        p.error("--frames and --every must be at least 1")
    if args.threads is not None:  # before numba is imported; the emulator runs on the overlay's worker thread
        try:
            set_emulator_threads(args.threads)
        except SenteiError as exc:
            p.error(str(exc))
    model, why = pick_model(args.model, args.size, args.density)
    print(f"soak: {model.name} ({why}), input {model.input.height}x{model.input.width}, {args.frames} frames, "
          f"sample every {args.every}, emulated overlay on {args.hardware}", file=sys.stderr)
    run = run_soak(model, args.frames, args.every, args.hardware, seed=args.seed,
                   echo=lambda line: print(line, file=sys.stderr))
    judged = verdict(run["samples"], args.fit_samples, args.max_growth_kib)
    if run["after_close"]["live_buffers"] != 0:
        judged["ok"] = False
        judged["reasons"].append(f"{run['after_close']['live_buffers']} buffers live after close")
    report = {
        "schema": "sentei-soak", "schema_version": 1,
        "command": shlex.join(["python", "benchmarks/soak.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": {"name": model.name, "source": why, "input": [model.input.height, model.input.width],
                  "layers": len(model.layers)},
        "frames": args.frames, "every": args.every, "hardware": args.hardware,
        "machine": dict(environment(args.label), threads=args.threads,
                        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None),
        **run, "verdict": judged,
    }
    if args.json_out:
        from sentei.atomic_write import write_json

        write_json(args.json_out, report)
    v = judged
    print(f"soak {'PASSED' if v['ok'] else 'FAILED'}: RSS slope {v['rss_slope_kib_per_1000_frames']:.1f} KiB per "
          f"1000 frames over the last {v['fit_samples']} samples (limit {v['max_growth_kib_per_1000_frames']:g}); "
          f"live buffers {run['samples'][-1]['live_buffers']} during, {run['after_close']['live_buffers']} after close"
          + ("" if v["ok"] else "; " + "; ".join(v["reasons"])))
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
