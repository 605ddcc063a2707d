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
import re
import time
from pathlib import Path

from sentei.errors import SenteiError
from sentei.host import engine_registry
from sentei.host.bench import power as pw  # stdlib-only at import
from sentei.host.bench.backends import (
    batched_run, describe_model, load_bench_model, modeled_run, open_engine)
from sentei.host.bench.environment import environment
from sentei.host.bench.report import SCHEMA, SCHEMA_VERSION
from sentei.host.bench.timing import RunTimer
from sentei.host.bench.trtexec import find_trtexec, run_trtexec, trtexec_run
from sentei.host.emulator.engine import set_emulator_threads
from sentei.host.options import (
    add_board_option, add_clock_option, add_json_option, add_out_folder_option, add_seed_option, model_option,
    non_negative_int, non_negative_seconds, parse_size)
from sentei.host.runtime.driver import MAX_BATCH

BACKENDS = tuple(engine_registry.BACKENDS)  # auto, fpga, emu, reference, csim, torch, perf
PRECISIONS = ("fp32", "fp16")
POWER_CHOICES = ("auto", "none", *pw.SOURCES)
DEFAULT_FRAMES = {"reference": 3, "csim": 2}
_OPTION_FLAGS: dict[str, str] = {}  # dest -> flag of every `sentei bench` option, filled by register()
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
    _OPTION_FLAGS[add_board_option(p).dest] = "--board"  # for the perf backend
    _OPTION_FLAGS[add_clock_option(p, "--clock", dest="clock").dest] = "--clock-mhz"  # perf; --clock: its old name
    option("--label", default=None, help="machine label in the report (default: CPU/GPU/board model)")
    _OPTION_FLAGS[add_seed_option(p).dest] = "--seed"  # of the random test frames
    _OPTION_FLAGS[add_json_option(p).dest] = "--json"
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-report", help="merge bench reports into a Markdown table and a plot",
                       description="Merge `sentei bench` reports (from any machines) into DIR/benchmarks.md "
                                   "and DIR/benchmarks.png, with speedup and perf/W against a baseline.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--baseline", default=None, metavar="REPORT.json",
                   help="the report whose first run is the 1.0x baseline (default: the first report)")
    p.add_argument("--baseline-run", default=None, metavar="TEXT",
                   help="pick the baseline run of that report whose label contains TEXT")
    add_out_folder_option(p)
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
        for backend in (b for b in backends if b in engine_registry.SEGMENTER_BACKENDS):
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
