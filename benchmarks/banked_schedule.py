"""Would a shared, banked window serve the sparse lanes? The schedule its weights would need.

The sparse engine gives every lane a copy of its group's window, because a lane reads one
activation a clock at the address its weight names (docs/performance-model.md section 5:
about 210 window LUTs a MAC). A window stored once in B banks (input channel ci in bank
``ci mod B``) and read through a crossbar serves all lanes if, in every step, no two lanes
read one bank. The order of a filter's weights is free (the integer sum does not depend on
it), so a fold of P filters needs a schedule: an edge colouring of its lane x bank multigraph
(an edge per stored weight), each colour a step. By Koenig's edge-colouring theorem
``max(K, the fold's largest bank load)`` steps suffice; this script builds such a schedule for
every fold of every sparse layer of each bundled model's allocated design on each board (as
many perfect matchings of the multigraph padded to regular), checks it (every weight once, no
bank twice in a step) and reports the steps against K: the padding the banked engine would pay.

    python benchmarks/banked_schedule.py --out benchmarks/results/banked-schedule

Writes ``banked_schedule.json`` and ``.md`` into ``--out``. Nothing here is built in the
overlay: it is the measurement the banked engine's design starts from.
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
from sentei.overlay import perf


def bank_loads(channels: np.ndarray, banks: int) -> np.ndarray:
    """``[filters, banks]`` counts: how many of each filter's weights lie in each bank.

    ``channels`` is ``[filters, K]``, the input channel of each stored weight."""
    loads = np.zeros((channels.shape[0], banks), dtype=np.int64)
    for f, row in enumerate(channels):
        np.add.at(loads[f], row % banks, 1)
    return loads


def _match(count: np.ndarray, start: np.ndarray) -> np.ndarray:
    """A perfect matching of the regular bipartite multigraph ``count`` (rows x columns, equal
    sides), grown from the still-valid pairs of ``start`` by augmenting paths (Kuhn)."""
    n = count.shape[0]
    row_of = np.full(n, -1)
    col_of = np.full(n, -1)
    for r in range(n):
        c = start[r]
        if c >= 0 and count[r, c] > 0 and row_of[c] < 0:
            col_of[r], row_of[c] = c, r
    neighbours = [np.flatnonzero(count[r]) for r in range(n)]

    def augment(r: int, seen: np.ndarray) -> bool:
        for c in neighbours[r]:
            if not seen[c]:
                seen[c] = True
                if row_of[c] < 0 or augment(row_of[c], seen):
                    col_of[r], row_of[c] = c, r
                    return True
        return False

    for r in range(n):
        if col_of[r] < 0 and not augment(r, np.zeros(n, dtype=bool)):
            raise AssertionError("a regular bipartite multigraph has a perfect matching (Hall)")
    return col_of


def schedule(loads: np.ndarray) -> np.ndarray:
    """``[steps, lanes]``: the bank each lane reads in each step (-1: idle), no bank twice in a
    step, lane l reading bank b in exactly ``loads[l, b]`` steps, ``max(K, largest bank
    load)`` steps in all (K = a lane's weights, the largest row sum)."""
    lanes, banks = loads.shape
    steps = int(max(loads.sum(axis=1).max(), loads.sum(axis=0).max()))
    n = max(lanes, banks)
    count = np.zeros((n, n), dtype=np.int64)  # rows: lanes (and idle ones), columns: banks (and idle ones)
    count[:lanes, :banks] = loads
    row_need, col_need = steps - count.sum(axis=1), steps - count.sum(axis=0)
    r = c = 0
    while r < n:  # pad to a steps-regular multigraph: the padding edges are idle slots
        if row_need[r] == 0:
            r += 1
            continue
        while col_need[c] == 0:
            c += 1
        take = min(row_need[r], col_need[c])
        count[r, c] += take
        row_need[r] -= take
        col_need[c] -= take
    real = loads.copy()  # a lane's padding edge to a bank is an idle step, not a read
    out = np.full((steps, lanes), -1)
    matching = np.full(n, -1)
    for t in range(steps):
        matching = _match(count, matching)
        count[np.arange(n), matching] -= 1
        for lane in range(lanes):
            bank = matching[lane]
            if bank < banks and real[lane, bank] > 0:
                real[lane, bank] -= 1
                out[t, lane] = bank
    return out


def check(loads: np.ndarray, steps: np.ndarray) -> None:
    """The schedule reads every weight once and no bank twice in a step."""
    lanes, banks = loads.shape
    for row in steps:
        used = row[row >= 0]
        assert len(used) == len(set(used.tolist())), "two lanes read one bank in a step"
    got = np.zeros_like(loads)
    for l in range(lanes):
        used = steps[:, l]
        np.add.at(got[l], used[used >= 0], 1)
    assert (got == loads).all(), "a weight read twice or never"


def layer_padding(model, index: int, lanes: int, banks: int) -> dict:
    """Steps a fold against K over the layer's folds (filter o in fold o // lanes, as the loader places it)."""
    layer = model.layers[index]
    kk = layer.kernel * layer.kernel
    channels = (layer.indices.astype(np.int64) // kk)
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
        for banks in (plan.lanes, 2 * plan.lanes):
            pad = layer_padding(model, n, plan.lanes, banks)
            rows.append({"model": model_name, "board": board_name, "layer": model.layers[n].name,
                         "plan": plan.label(), "lanes": plan.lanes, "banks": banks,
                         "k_nonzero": model.layers[n].k_nonzero, **pad})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| board | model | layer | plan | banks | K | folds | steps / K, worst fold | mean |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['board']} | {r['model']} | {r['layer']} | {r['plan']} | {r['banks']} | "
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
