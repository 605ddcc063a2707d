"""Is the allocator what limits the frame rate? Its interval against an exhaustive search.

``perf.allocate`` is a heuristic: a cheapest plan per layer for a candidate interval, then
repairs one layer at a time until the design fits the ceilings. This script asks, for every
bundled model file on every board at the board's clock, the question the heuristic answers
approximately: what is the shortest interval *any* combination of the layers' plans
(``perf.board_options``: engines, lanes, pixels, chunk widths, window storage, rows in DDR where
the board allows them) reaches
within the same resource ceilings? A branch and bound over the plans answers it exactly:
for a candidate interval T, each layer keeps the plans whose stage is at most T, those
dominated in every resource by another are dropped, and a depth-first search adds layers
while the resources so far plus the least the remaining layers need stay within the limits;
T is bisected over the stage figures.

On boards with UltraRAM the search also lets each layer's line-buffer rows go to BRAM18 or
URAM freely (the allocator places them by a rule, ``perf.line_placement``), so there its
answer is a bound the allocator's space can only approach. Where the allocator's interval
equals the search's, no allocator reaches a higher frame rate with these plans and
ceilings: a faster design needs cheaper plans (a change to the engines), not a better search.
Writes ``allocator_optimality.json`` and ``.md`` into ``--out``.

    python benchmarks/allocator_optimality.py --out benchmarks/results/allocator-optimality
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.host.modelfile import bundled
from sentei.overlay import perf

FIELDS = perf.BUDGET_FIELDS


class Undecided(Exception):
    """The search ran past its time limit."""


def layer_choices(model, index: int, board, interval: int) -> list[tuple[tuple, object, str | None]]:
    """``(resources, plan, storage)`` of every way to build layer ``index`` within ``interval``
    clocks, none dominated by another in every resource."""
    layer = model.layers[index]
    rows = []
    for plan in perf.board_options(model, index, board):
        if perf.conv_stage_cycles(model, index, plan) > interval:
            continue
        g = perf.layer_geometry(model, index, plan)
        stores = [None]
        if layer.kernel > 1 and g["line_depth"] > perf.LUTRAM_MAX_DEPTH:
            stores = ["bram"] + (["uram"] if board.budget["uram"] > 0 else [])
        for store in stores:
            res = perf.layer_resources(model, index, plan, board, store)
            rows.append((tuple(res.get(k, 0) for k in FIELDS), plan, store))
    rows.sort(key=lambda r: r[0])
    kept = []
    for row in rows:
        if not any(all(a <= b for a, b in zip(other[0], row[0])) for other in kept):
            kept.append(row)
    return kept


def fitting_design(model, board, limits: dict, interval: int, deadline: float):
    """Plans (and line storage) of a design within ``interval`` and ``limits``, or None if none
    exists; :class:`Undecided` past ``deadline`` (``time.monotonic``)."""
    lim = tuple(limits[k] for k in FIELDS)
    choices = [layer_choices(model, n, board, interval) for n in range(len(model.layers))]
    if any(not c for c in choices):
        return None
    for c in choices:  # cheapest first, by the shares of the limits
        c.sort(key=lambda r: sum(v / lim[j] for j, v in enumerate(r[0]) if lim[j]))
    least = [tuple(0 for _ in FIELDS)] * (len(choices) + 1)  # least the layers from n on need
    for n in range(len(choices) - 1, -1, -1):
        least[n] = tuple(min(r[0][j] for r in choices[n]) + least[n + 1][j] for j in range(len(FIELDS)))
    chosen = []

    def search(n: int, used: tuple) -> bool:
        if time.monotonic() > deadline:
            raise Undecided
        if n == len(choices):
            return True
        for row in choices[n]:
            total = tuple(a + b for a, b in zip(used, row[0]))
            if all(total[j] + least[n + 1][j] <= lim[j] for j in range(len(FIELDS))):
                chosen.append(row)
                if search(n + 1, total):
                    return True
                chosen.pop()
        return False

    shell = tuple(perf.SHELL_RESOURCES[k] for k in FIELDS)
    return [(plan, store) for _, plan, store in chosen] if search(0, shell) else None


def best_interval(model, board, limits: dict, seconds: float) -> dict:
    """The shortest stage figure any fitting design reaches (bisection), or why there is none."""
    floor = max(perf.fixed_stages(model).values())
    stages = sorted({perf.conv_stage_cycles(model, n, p) for n in range(len(model.layers))
                     for p in perf.board_options(model, n, board)} | {floor})
    stages = [s for s in stages if s >= floor]
    deadline = time.monotonic() + seconds
    if fitting_design(model, board, limits, stages[-1], deadline) is None:
        return {"fits": False}
    lo, hi = 0, len(stages) - 1  # stages[hi] fits
    while lo < hi:
        mid = (lo + hi) // 2
        if fitting_design(model, board, limits, stages[mid], deadline) is None:
            lo = mid + 1
        else:
            hi = mid
    return {"fits": True, "interval_cycles": stages[hi]}


def compare(model_name: str, board_name: str, seconds: float) -> dict:
    board = perf.load_board(board_name)
    model = bundled.load_model(model_name)
    limits = perf.resource_limits(board)
    clock = board.default_clock_mhz
    row = {"model": model_name, "board": board_name, "clock_mhz": clock}
    try:
        plans = perf.allocate(model, board)
        row["allocator_interval_cycles"] = perf.pipeline_interval(model, plans)
        row["allocator_frames_per_s"] = clock * 1e6 / row["allocator_interval_cycles"]
    except perf.DoesNotFit as exc:
        row["allocator"] = f"does not fit: {exc}"
    start = time.monotonic()
    try:
        best = best_interval(model, board, limits, seconds)
    except Undecided:
        best = {"undecided": f"no answer within {seconds:g} s"}
    row["search_seconds"] = round(time.monotonic() - start, 2)
    row["search"] = best
    if best.get("fits"):
        interval = max(best["interval_cycles"], max(perf.fixed_stages(model).values()))
        row["search_frames_per_s"] = clock * 1e6 / interval
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| board @ MHz | model | allocator frames/s | best of every plan combination | search time |",
             "|---|---|---|---|---|"]
    for r in rows:
        alloc = f"{r['allocator_frames_per_s']:.1f}" if "allocator_frames_per_s" in r else "does not fit"
        s = r["search"]
        best = f"{r['search_frames_per_s']:.1f}" if s.get("fits") else \
            ("no combination fits" if s.get("fits") is False else s["undecided"])
        lines.append(f"| {r['board']} @ {r['clock_mhz']:g} | {r['model']} | {alloc} | {best} | "
                     f"{r['search_seconds']:.1f} s |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for allocator_optimality.json and .md")
    ap.add_argument("--seconds", type=float, default=120.0, help="time limit of one search (default 120)")
    args = ap.parse_args(argv)
    rows = []
    models = [name for name, entry in bundled.bundled_models().items() if entry["file"].endswith(".sentei")]
    for name in models:
        for board in perf.known_boards():
            rows.append(compare(name, board, args.seconds))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "allocator_optimality.json",
               {"rows": rows, "ceilings": perf.CEILINGS, "python": sys.version.split()[0],
                "machine": platform.machine(), "processor": platform.processor() or platform.machine()})
    atomic_write_bytes(out / "allocator_optimality.md", markdown(rows).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
