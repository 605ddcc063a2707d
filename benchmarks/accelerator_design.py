"""The accelerator designed for every bundled model on every board: modeled and simulated.

For each bundled model file and each board of ``overlay/boards``, at the board's default
clock: the allocator's plan per layer (engine, lanes, chunk width), the modeled interval and
frames/s (``sentei perf``), the clock-level simulation of three frames in one start with the
FIFO depths codegen writes (``sentei perf --simulate``), the resources against the board, and
the design's share of the board's MAC limit. Nothing here is measured on a board or
synthesized: it is what the performance model and the simulator of the generated pipeline
say. Writes ``accelerator_design.json`` and ``accelerator_design.md`` into ``--out``.

    python benchmarks/accelerator_design.py --out benchmarks/results/accelerator-design

Needs g++ (the simulator is compiled on first use).
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.errors import SenteiError
from sentei.host.modelfile import bundled
from sentei.overlay import perf
from sentei.overlay.report import perf_report


def design(model_name: str, board: str) -> dict:
    b = perf.load_board(board)
    model = bundled.load_model(model_name)
    try:
        report = perf_report(model, b, b.default_clock_mhz, simulate=True)
    except SenteiError as exc:
        return {"model": model_name, "board": board, "clock_mhz": b.default_clock_mhz, "fits": False,
                "reason": str(exc)}
    pipe, sim, res = report["pipeline"], report["simulated"], report["resources"]
    return {"model": model_name, "board": board, "clock_mhz": b.default_clock_mhz, "fits": True,
            "plans": report["lanes"], "bottleneck": pipe["bottleneck"],
            "modeled_interval_cycles": pipe["interval_cycles"], "modeled_frames_per_s": pipe["frames_per_s"],
            "simulated_interval_cycles": sim["interval_cycles"], "simulated_frames_per_s": sim["frames_per_s"],
            "simulated_first_frame_ms": sim["latency_ms"], "simulation_vs_model": sim["error_vs_model"],
            "board_limit_frames_per_s": pipe["board_limit_frames_per_s"],
            "fraction_of_board_limit": pipe["fraction_of_board_limit"],
            "resources": {k: {"used": res[k]["used"], "budget": res[k]["budget"]} for k in perf.BUDGET_FIELDS},
            "within_ceilings": res["within_ceilings"]}


def markdown(rows: list[dict]) -> str:
    lines = ["| board @ MHz | model | plan per layer | bottleneck | modeled frames/s | simulated frames/s "
             "| first frame (sim.) | DSP48 | BRAM18 | URAM | LUT | of the board's MAC limit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['board']} @ {r['clock_mhz']:g} | {r['model']} "
        if not r["fits"]:
            lines.append(head + f"| does not fit: {r['reason']} |||||||||")
            continue
        res = r["resources"]

        def cell(key):
            return "–" if not res[key]["budget"] else f"{res[key]['used']:,} / {res[key]['budget']:,}"

        lines.append(head + f"| {','.join(r['plans'])} | {r['bottleneck']} | {r['modeled_frames_per_s']:.1f} "
                     f"| {r['simulated_frames_per_s']:.1f} | {r['simulated_first_frame_ms']:.2f} ms | {cell('dsp')} "
                     f"| {cell('bram18')} | {cell('uram')} | {cell('lut')} "
                     f"| {r['fraction_of_board_limit']:.1%} of {r['board_limit_frames_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for accelerator_design.json and .md")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = [name for name, entry in bundled.bundled_models().items() if entry["file"].endswith(".sentei")]
    t0 = time.perf_counter()
    rows = [design(m, b) for m in models for b in perf.known_boards()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"kind": "modeled and simulated, not measured", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "commit": commit or None, "machine": platform.platform(), "seconds": round(time.perf_counter() - t0, 1),
           "rows": rows}
    write_json(out / "accelerator_design.json", doc)
    atomic_write_bytes(out / "accelerator_design.md", markdown(rows).encode())
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
