"""The performance report: a model priced on a board, as ``sentei perf`` prints it.

:func:`perf_report` puts the performance model (:mod:`sentei.overlay.perf`: geometry,
cycles, resources, the allocator) together for one model, board and clock -- per layer
MACs, cycles and resources, the pipeline's bottleneck, frames/s and latency, the dense and
unstructured alternatives, the resources against the board's budget -- and, with
``simulate=True``, runs the pipeline that :mod:`sentei.overlay.codegen` writes through the
clock-level simulator (:mod:`sentei.overlay.simulate`). :func:`format_report` is the table
``sentei perf`` prints. A library call a notebook makes as the command does::

    from sentei.host.modelfile.bundled import load_model
    from sentei.overlay.report import format_report, perf_report

    print(format_report(perf_report(load_model(None), "zcu104", 200.0)))

This module sits above codegen: codegen plans with the performance model, the report runs
codegen's network facts; the performance model imports neither.
"""
from __future__ import annotations

import math

import numpy as np

from sentei.host.modelfile.schema import blob_words
from sentei.overlay import codegen, simulate
from sentei.overlay.perf import (
    ASSUMPTIONS, BUDGET_FIELDS, FETCH_DEPTH, MACS_PER_DSP, MACS_PER_DSP_TEXT, RESOURCE_NAMES, SHELL_RESOURCES,
    UNSTRUCTURED_SEED, allocate, as_board, balanced_cycles, check_clock, check_plans,
    engine_clocks, engine_tail, first_window, fixed_stages, fold_sync_cycles, layer_geometry, layer_resources,
    line_placement, over_limits, pipeline_interval, resolve_plans, resource_limits, unstructured_nnz)


def _pipeline(stages: dict[str, int], clock_mhz: float) -> dict:
    name = max(stages, key=lambda s: stages[s])
    return {"bottleneck": name, "interval_cycles": stages[name],
            "frames_per_s": clock_mhz * 1e6 / stages[name]}


def perf_report(model, board, clock_mhz: float, lanes=None, dsp_fraction: float | None = None,
                seed: int = UNSTRUCTURED_SEED, ceilings: dict | None = None, simulate: bool = False,
                frames: int = 3) -> dict:
    """Price ``model`` on ``board`` at ``clock_mhz``: cycles, frames/s, resources, imbalance.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
    board : str or Board
    clock_mhz : float
    lanes : list of int, optional
        A plan per layer (:func:`~sentei.overlay.perf.check_plans`); default :func:`~sentei.overlay.perf.allocate`.
    dsp_fraction : float, optional
        DSP48 ceiling (as :func:`~sentei.overlay.perf.allocate`; default ``ceilings["dsp"]``, else 0.85).
    seed : int
        Seed of the hypothetical unstructured pruning (:func:`~sentei.overlay.perf.unstructured_nnz`; layer
        ``n`` uses ``seed + n``).

    Returns
    -------
    dict
        Plain JSON with ``kind = "modeled"``: ``layers`` (per layer: MACs dense, nonzero and
        executed; ``cycles`` = MAC-loop iterations, the C-simulation's count; stage clocks;
        the dense, fold-synchronized, balanced and hypothetical-unstructured cycle counts;
        resources), ``stages``, ``pipeline`` (bottleneck, interval, frames/s, latency),
        ``dense`` (no zero skipping), ``imbalance`` (without the filter-wise constraint),
        ``resources`` against the board's budget and the allocator's ceilings
        (``ceiling`` per resource; ``fits``: within the device, ``within_ceilings``: what
        the allocator guarantees), and ``assumptions``.
    ceilings : dict, optional
        Shares of the other budgets, overriding :data:`~sentei.overlay.perf.CEILINGS`.
    simulate : bool
        Also run the clock-level simulation (:mod:`sentei.overlay.simulate`, needs g++) of
        ``frames`` frames with the FIFO depths it derives: the report gets ``simulated``
        (interval, latency, frames/s, its difference from the model, the depths, each
        process's stalls) and prices the FIFOs at those depths.
    """
    b = as_board(board)
    check_clock(b, clock_mhz)
    limits = resource_limits(b, dsp_fraction, ceilings)
    if lanes is None:
        lanes = allocate(model, b, clock_mhz, dsp_fraction, ceilings)
    else:
        lanes = check_plans(model, lanes)
    shapes = model.shapes()
    fixed = fixed_stages(model)
    variants = {v: {} for v in ("hw", "dense", "fold_sync", "balanced", "unstructured")}
    rows = []
    totals = dict(SHELL_RESOURCES)
    places = line_placement(model, lanes, b, limits["uram"])
    resolved = resolve_plans(model, lanes)
    simulated = None
    layer_depths = [None] * len(lanes)
    if simulate:
        simulated = _simulate(model, lanes, frames)
        layer_depths = [(simulated["fifo_depths"][f"act{n}"], simulated["fifo_depths"][f"win{n}"],
                         simulated["fifo_depths"].get(f"fetch{n}", FETCH_DEPTH)) for n in range(len(lanes))]
    for n, (layer, p) in enumerate(zip(model.layers, lanes)):
        _, ho, wo = shapes[n + 1]
        cout, k, fan_in = layer.out_channels, layer.k_nonzero, layer.fan_in
        nnz = layer.nonzeros_per_filter().astype(np.int64)
        hyp = unstructured_nnz(cout, fan_in, int(nnz.sum()), seed + n)
        g = layer_geometry(model, n, p)
        res = layer_resources(model, n, p, b, places[n], layer_depths[n])
        window = g["window_iterations"]
        lanes_n, folds = g["lanes"], g["folds"]
        sparse = g["engine"] == "sparse"
        padded = np.zeros(folds * lanes_n, dtype=np.int64)  # idle lanes of a last fold: no work
        gw = g["row_groups"]  # groups of Q pixels a row: a lane's weight serves all Q

        def fold_sync(counts) -> int:
            padded[:cout] = counts
            return fold_sync_cycles(ho, gw, padded, lanes_n) if sparse else g["mac_iterations"]

        def engine(mac_cycles: int) -> int:
            return engine_clocks(max(mac_cycles, ho * gw * g["chunks"]), first_window(g["engine"], g["chunks"]),
                                 engine_tail(g["requant_span"], g["block"]))

        row = {
            "name": layer.name, "in": list(shapes[n]), "out": list(shapes[n + 1]),
            "kernel": layer.kernel, "stride": layer.stride, "dilation": layer.dilation,
            "fan_in": fan_in, "k_nonzero": k, "nnz_min": int(nnz.min()), "nnz_max": int(nnz.max()),
            "plan": resolved[n].label(),
            "macs_dense": ho * wo * cout * fan_in,
            "macs_nonzero": ho * wo * int(nnz.sum()),
            "macs_executed": ho * wo * cout * k,
            "cycles": g["mac_iterations"],
            "engine_cycles": g["engine_cycles"],
            "window_cycles": window,
            "cycles_dense": ho * gw * folds * fan_in if sparse else g["mac_iterations"],
            "cycles_fold_sync": fold_sync(nnz),
            "cycles_balanced": balanced_cycles(ho, gw, nnz, lanes_n) if sparse else g["mac_iterations"],
            "cycles_unstructured": fold_sync(hyp),
            **res,
        }
        row["rows_cycles"] = g["row_memory_cycles"]  # rows in DDR: the process moving them (0: on chip)
        row["stage_cycles"] = max(row["engine_cycles"], window, row["rows_cycles"])
        row["mac_utilization"] = row["macs_nonzero"] / (row["stage_cycles"] * res["macs_per_clock"])
        rows.append(row)
        for v, key in (("hw", "cycles"), ("dense", "cycles_dense"), ("fold_sync", "cycles_fold_sync"),
                       ("balanced", "cycles_balanced"), ("unstructured", "cycles_unstructured")):
            variants[v][layer.name] = engine(row[key])
            variants[v][f"{layer.name}.window"] = window
            if g["ddr_rows"]:
                variants[v][f"{layer.name}.rows"] = g["row_memory_cycles"]
        for key in totals:
            totals[key] += res.get(key, 0)
    for v in variants.values():
        v.update(fixed)
    stages = dict(variants["hw"])

    pipe = _pipeline(variants["hw"], clock_mhz)
    fill = 0.0
    for n, layer in enumerate(model.layers):
        h_in = shapes[n][1]
        need = min(h_in, max(1, (layer.kernel - 1) * layer.dilation + 1 - layer.padding))
        fill += need * pipe["interval_cycles"] / h_in
    pipe["fill_cycles"] = int(math.ceil(fill))
    pipe["latency_cycles"] = pipe["interval_cycles"] + pipe["fill_cycles"]
    pipe["latency_ms"] = pipe["latency_cycles"] / (clock_mhz * 1e3)
    pipe["mac_bound_frames_per_s"] = clock_mhz * 1e6 / max(max(r["cycles"] for r in rows), max(fixed.values()))
    pipe["line_storage"] = {r["name"]: r["line_storage"] for r in rows}
    pipe["macs_dense_per_frame"] = sum(r["macs_dense"] for r in rows)
    pipe["macs_executed_per_frame"] = sum(r["macs_executed"] for r in rows)
    pipe["effective_gops"] = 2 * pipe["macs_dense_per_frame"] * pipe["frames_per_s"] / 1e9
    pipe["load_weights_cycles"] = blob_words(model)
    # the board's limit: every DSP48 doing MACS_PER_DSP of the executed MACs every clock
    peak = b.budget["dsp"] * MACS_PER_DSP[b.family] * clock_mhz * 1e6
    pipe["board_peak_macs_per_s"] = peak
    pipe["board_limit_frames_per_s"] = peak / pipe["macs_executed_per_frame"]
    pipe["fraction_of_board_limit"] = pipe["frames_per_s"] / pipe["board_limit_frames_per_s"]

    dense = _pipeline(variants["dense"], clock_mhz)
    dense["speedup_of_zero_skipping"] = dense["interval_cycles"] / pipe["interval_cycles"]
    ideal = _pipeline(variants["balanced"], clock_mhz)
    imbalance = {"balanced_interval_cycles": ideal["interval_cycles"]}
    for key, variant, col, source in (
            ("given_model", "fold_sync", "cycles_fold_sync", "the model's own nonzeros per filter"),
            ("hypothetical_unstructured", "unstructured", "cycles_unstructured",
             f"each layer's nonzeros placed uniformly at random over its Cout*Cin*k*k weights "
             f"(seed {seed} + layer index)")):
        pv = _pipeline(variants[variant], clock_mhz)
        imbalance[key] = {
            "source": source, **pv,
            "mac_cycles_lost": sum(r[col] - r["cycles_balanced"] for r in rows),
            "slowdown": pv["interval_cycles"] / ideal["interval_cycles"],
        }
    resources = {}
    for key in totals:
        budget = b.budget[key]
        resources[key] = {"used": int(totals[key]), "budget": budget, "limit": limits[key],
                          "fraction": totals[key] / budget if budget else (0.0 if not totals[key] else math.inf)}
    resources["fits"] = all(resources[k]["used"] <= resources[k]["budget"] for k in totals)
    resources["within_ceilings"] = not over_limits(totals, limits)
    if simulated is not None:
        sim_interval = simulated["interval_cycles"]
        simulated.update({
            "frames_per_s": clock_mhz * 1e6 / sim_interval if sim_interval else None,
            "latency_ms": simulated["latency_cycles"] / (clock_mhz * 1e3),
            "error_vs_model": None if sim_interval is None else sim_interval / pipe["interval_cycles"] - 1.0})
    return {
        "kind": "modeled" if simulated is None else "modeled and simulated",
        "simulated": simulated,
        "model": model.name, "board": b.name, "part": b.part, "clock_mhz": float(clock_mhz),
        "input": [model.input.channels, model.input.height, model.input.width],
        "lanes": [r["plan"] for r in rows],
        "layers": rows,
        "stages": stages,
        "pipeline": pipe,
        "frames_per_s": pipe["frames_per_s"],
        "dense": dense,
        "imbalance": imbalance,
        "resources": resources,
        "assumptions": list(ASSUMPTIONS),
    }


# ---------------------------------------------------------------------------------------
# the clock-level simulation and the printed table


def _simulate(model, plans, frames: int) -> dict:
    """The clock-level simulation of the pipeline codegen writes for ``plans`` (derived FIFO depths)."""
    facts = codegen.network_facts(model, plans, fifo_depths="rule")
    depths, report = simulate.derive_fifo_depths(facts, pipeline_interval(model, plans), frames=frames)
    return {"frames": frames, "interval_cycles": report["interval_cycles"], "latency_cycles": report["latency_cycles"],
            "frame_done_cycles": report["frame_done"], "fifo_depths": depths,
            "stalls": {name: {"waiting_for_input": p["stalled_in"], "waiting_for_room": p["stalled_out"]}
                       for name, p in report["processes"].items()}}


def format_report(report: dict) -> str:
    """The report as a plain-text table (what ``sentei perf`` prints)."""
    lines = [f"{report['model']} on {report['board']} ({report['part']}) at {report['clock_mhz']:g} MHz "
             f"-- modeled, not measured"]
    pw = max(8, 2 + max((len(r["plan"]) for r in report["layers"]), default=0))  # s13w1p3br: apart from CinKK
    head = (f"{'layer':<16}{'out CxHxW':>13}{'K':>6}{'CinKK':>7}{'plan':>{pw}}{'MMAC dense':>11}{'MMAC nz':>9}"
            f"{'MAC cycles':>12}{'stage':>12}{'dense':>12}{'unstruct':>12}{'Wc':>4}{'DSP':>6}{'BRAM18':>7}"
            f"{'URAM':>5}{'LUT':>8}")
    lines += [head, "-" * len(head)]
    bottleneck = report["pipeline"]["bottleneck"]
    for r in report["layers"]:
        mark = " <" if r["name"] == bottleneck else ""
        shape = "x".join(str(v) for v in r["out"])
        lines.append(f"{r['name']:<16}{shape:>13}{r['k_nonzero']:>6}{r['fan_in']:>7}{r['plan']:>{pw}}"
                     f"{r['macs_dense'] / 1e6:>11.2f}{r['macs_nonzero'] / 1e6:>9.2f}{r['cycles']:>12,}"
                     f"{r['stage_cycles']:>12,}{r['cycles_dense']:>12,}{r['cycles_unstructured']:>12,}"
                     f"{r['chunk_channels']:>4}{r['dsp']:>6}{r['bram18']:>7}{r['uram']:>5}{r['lut']:>8,}{mark}")
    layer_names = {r["name"] for r in report["layers"]}
    slowest_fixed = max((s for s in report["stages"] if s not in layer_names), key=report["stages"].get)
    for name in ("input", slowest_fixed, "output"):
        mark = " <" if name == bottleneck else ""
        lines.append(f"{'(' + name + ')':<70}{report['stages'][name]:>12,}{mark}")
    p, d, imb = report["pipeline"], report["dense"], report["imbalance"]
    lines.append("")
    lines.append(f"bottleneck {p['bottleneck']}: {p['interval_cycles']:,} clocks/frame -> "
                 f"{p['frames_per_s']:.1f} frames/s (MAC-bound {p['mac_bound_frames_per_s']:.1f}), latency "
                 f"{p['latency_ms']:.2f} ms, {p['effective_gops']:.1f} dense-equivalent GOP/s")
    lines.append(f"board limit (every DSP48 busy, {MACS_PER_DSP_TEXT}): {p['board_limit_frames_per_s']:,.0f} frames/s; "
                 f"this design reaches {p['fraction_of_board_limit']:.1%} of it")
    sim = report.get("simulated")
    if sim:
        lines.append(f"simulated clock by clock ({sim['frames']} frames in one start, FIFO depths derived): "
                     f"{sim['interval_cycles']:,} clocks/frame -> {sim['frames_per_s']:.1f} frames/s "
                     f"({sim['error_vs_model']:+.2%} against the model), first frame after {sim['latency_ms']:.2f} ms")
    lines.append(f"dense weights (no zero skipping, same lanes): {d['frames_per_s']:.1f} frames/s; "
                 f"zero skipping x{d['speedup_of_zero_skipping']:.2f}")
    g, h = imb["given_model"], imb["hypothetical_unstructured"]
    lines.append(f"lanes waiting for their fold's slowest filter, this model's nonzeros: "
                 f"{g['frames_per_s']:.1f} frames/s (x{g['slowdown']:.3f} of balanced)")
    lines.append(f"same sparsity without the filter-wise constraint (random unstructured, seeded): "
                 f"{h['frames_per_s']:.1f} frames/s (x{h['slowdown']:.3f} of balanced)")
    res = report["resources"]
    shown = [k for k in BUDGET_FIELDS if k != "uram" or res[k]["budget"] or res[k]["used"]]
    verdict = ("" if res["within_ceilings"] else "  -- over the allocator's ceilings") if res["fits"] \
        else "  -- DOES NOT FIT"
    lines.append("resources: " + ", ".join(
        f"{RESOURCE_NAMES[k]} {res[k]['used']:,}/{res[k]['budget']:,} ({res[k]['fraction']:.0%})"
        for k in shown) + verdict)
    return "\n".join(lines)
