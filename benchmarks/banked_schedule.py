"""How many banks a shared window needs: the lane x bank schedules of every sparse layer.

A sparse layer with one window for all its lanes (plan suffix ``h``, overlay/hls/shared_window.hpp)
keeps the activations ``t = ci*k + ky`` of a window column in B banks (``t mod B``), read once a
clock each, so no two lanes may read one bank in a step. The order of a filter's weights is
free (the integer sum does not depend on it), so a fold of P filters needs a schedule: an edge
colouring of its lane x bank multigraph (an edge per stored weight), each colour a step,
``max(K, the fold's largest bank load)`` steps (Koenig; sentei.host.modelfile.schedule builds
and the driver lays the weights out by it). For every sparse layer of each bundled model's
allocated design on each board this script builds and checks (every weight once, no bank twice
in a step) the schedule at B = P and B = 2P -- the padding a fixed bank count would pay -- and,
where the design shares the window, at the B the performance model chose
(``perf.shared_banks``: the fewest banks with no padding), which must take exactly K steps.

    python benchmarks/banked_schedule.py --out benchmarks/results/banked-schedule

Writes ``banked_schedule.json`` and ``.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.host.modelfile import bundled
from sentei.host.modelfile.schedule import bank_loads, check, schedule, tap_channels
from sentei.overlay import perf


def layer_padding(model, index: int, lanes: int, banks: int) -> dict:
    """Steps a fold against K over the layer's folds (filter o in fold o // lanes, as the loader places it)."""
    layer = model.layers[index]
    channels = tap_channels(layer.indices, layer.kernel)  # t = ci*k + ky, banked t mod B (shared_window.hpp)
    k = layer.k_nonzero
    ratios = []
    for start in range(0, layer.out_channels, lanes):
        loads = bank_loads(channels[start:start + lanes], banks)
        steps = schedule(loads)
        check(loads, steps)
        assert len(steps) == max(k, int(loads.sum(axis=0).max()))
        ratios.append(len(steps) / k)
    return {"folds": len(ratios), "max": max(ratios), "mean": float(np.mean(ratios))}


def measure(model_name: str, board_name: str) -> list[dict]:
    board = perf.load_board(board_name)
    model = bundled.load_model(model_name)
    plans = perf.allocate(model, board)
    rows = []
    for n, plan in enumerate(plans):
        if plan.engine != "sparse":
            continue
        chosen = perf.layer_geometry(model, n, plan)["window_banks"]  # 0: per-lane copies
        for banks in (plan.lanes, 2 * plan.lanes) + ((chosen,) if chosen else ()):
            pad = layer_padding(model, n, plan.lanes, banks)
            if banks == chosen:
                assert pad["max"] == 1.0, f"{model_name} {plan.label()}: the chosen banks need padding"
            rows.append({"model": model_name, "board": board_name, "layer": model.layers[n].name,
                         "plan": plan.label(), "lanes": plan.lanes, "banks": banks, "chosen": banks == chosen,
                         "k_nonzero": model.layers[n].k_nonzero, **pad})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| board | model | layer | plan | banks | K | folds | steps / K, worst fold | mean |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        banks = f"**{r['banks']}** (the design's)" if r["chosen"] else str(r["banks"])
        lines.append(f"| {r['board']} | {r['model']} | {r['layer']} | {r['plan']} | {banks} | "
                     f"{r['k_nonzero']} | {r['folds']} | {r['max']:.3f} | {r['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for banked_schedule.json and .md")
    ap.add_argument("--boards", default="kv260,ultra96v2", help="comma-separated boards (default kv260,ultra96v2)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    start = time.monotonic()
    rows = []
    for name in sorted(n for n, e in bundled.bundled_models().items() if e["file"].endswith(".sentei")):
        for board in args.boards.split(","):
            rows += measure(name, board)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "banked_schedule.json", {
        "kind": "banked-schedule", "command": " ".join(["python", "benchmarks/banked_schedule.py"] + list(argv or sys.argv[1:])),
        "machine": platform.platform(), "seconds": round(time.monotonic() - start, 1), "rows": rows})
    atomic_write_bytes(out / "banked_schedule.md", markdown(rows).encode())
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
