"""The order a shared-window layer takes each filter's weights in: a lane x bank schedule.

A sparse layer built with one window for all its lanes (plan suffix ``h``;
overlay/hls/shared_window.hpp) keeps the Cin*k activations of a window column, ``t = ci*k +
ky``, in B banks, t in bank ``t mod B``, each bank read once a clock. In every step of a
fold each of its P lanes reads one activation, in the bank of its weight, so no two lanes
may name one bank in a step. A filter's K stored weights may be taken in any order -- the
integer sum does not depend on it -- so the weights are laid out in an order where that
holds: for each fold, an edge colouring of its lane x bank multigraph (an edge per stored
weight), each colour a step. By Koenig's edge-colouring theorem ``max(K, the fold's largest
bank load)`` colours suffice; the performance model offers the plan only where that is K
(``sentei.overlay.perf.shared_banks``), so the layer keeps its K steps.

The weight blob the accelerator loads is the model file's (docs/model-format.md, section 4)
with each such layer's filters' entries in this order (:func:`scheduled_blob`), which the
driver builds from the bitstream's ``network.json`` (``shared_windows``). The loader on chip
checks it (two lanes in one bank in a step fails the load); every other engine computes the
same sums from the blob in any order.
"""
from __future__ import annotations

import numpy as np

from sentei.errors import SenteiError
from sentei.host.modelfile.schema import Model, blob_offsets


def tap_channels(indices: np.ndarray, kernel: int) -> np.ndarray:
    """``t = ci*k + ky`` of each stored position ``idx = (ci*k + ky)*k + kx``."""
    return np.asarray(indices, dtype=np.int64) // kernel


def bank_loads(channels: np.ndarray, banks: int) -> np.ndarray:
    """``[filters, banks]`` counts: how many of each filter's weights lie in each bank.

    ``channels`` is ``[filters, K]``: what each stored weight is banked by (bank ``channel mod B``)."""
    channels = np.asarray(channels, dtype=np.int64)
    rows = np.repeat(np.arange(channels.shape[0]), channels.shape[1])
    flat = rows * banks + (channels % banks).reshape(-1)
    return np.bincount(flat, minlength=channels.shape[0] * banks).reshape(channels.shape[0], banks)


def fold_bank_loads(indices: np.ndarray, kernel: int, lanes: int, banks: int) -> np.ndarray:
    """``[folds, banks]``: the stored weights of each fold's filters (filter o in fold o // P)
    that lie in each bank (``t mod B`` of ``t = ci*k + ky``). A fold fits K steps exactly when
    its row's largest entry is at most K."""
    per_filter = bank_loads(tap_channels(indices, kernel), banks)
    return np.add.reduceat(per_filter, np.arange(0, per_filter.shape[0], lanes), axis=0)


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


def filter_order(indices: np.ndarray, kernel: int, lanes: int, banks: int, name: str = "layer") -> np.ndarray:
    """``[Cout, K]``: for each filter, which of its stored weights (by position in the model
    file) it takes in each step, so that in no step two filters of a fold (filter o on lane
    o mod P, fold o // P, as the loader places them) read one bank.

    Raises :class:`SenteiError` where a fold's bank holds more than K of its weights: those
    weights need more than K steps, which a bitstream built for K cannot give."""
    indices = np.asarray(indices)
    cout, k = indices.shape
    banked = tap_channels(indices, kernel) % banks
    crowded = fold_bank_loads(indices, kernel, lanes, banks).max(axis=1)
    order = np.zeros((cout, k), dtype=np.int64)
    for start in range(0, cout, lanes):
        fold = banked[start:start + lanes]
        loads = bank_loads(fold, banks)
        if crowded[start // lanes] > k:
            raise SenteiError(f"{name}: filters {start}-{start + len(fold) - 1} hold {int(crowded[start // lanes])} "
                              f"weights in one of the {banks} banks of its shared window, more than K = {k}: the "
                              f"bitstream was built for other weights; build it for this model (make -C overlay MODEL=...)")
        steps = schedule(loads)
        for lane in range(len(fold)):
            waiting = {int(b): list(np.flatnonzero(fold[lane] == b)) for b in np.unique(fold[lane])}
            order[start + lane] = [waiting[int(b)].pop(0) for b in steps[:, lane]]
    return order


def scheduled_blob(model: Model, blob: np.ndarray, shared_windows) -> np.ndarray:
    """``blob`` (the model's weight blob, :func:`sentei.host.modelfile.schema.weight_blob`) with
    the entries of every shared-window layer in their schedule order (:func:`filter_order`).

    ``shared_windows`` is ``network.json``'s list of ``{"layer": n, "lanes": P, "banks": B}``
    (:meth:`sentei.overlay.codegen.NetworkFacts.shared_windows`); empty, ``blob`` comes back as it is."""
    if not shared_windows:
        return blob
    out = np.array(blob, dtype=np.uint32, copy=True)
    offsets = blob_offsets(model)
    for item in shared_windows:
        n, lanes, banks = int(item["layer"]), int(item["lanes"]), int(item["banks"])
        if not 0 <= n < len(model.layers) or lanes < 1 or banks < lanes:
            raise SenteiError(f"shared window {item!r}: no such layer of {model.name} or fewer banks than "
                              f"lanes; network.json does not belong to this model (rebuild the bitstream)")
        layer = model.layers[n]
        cout, k = layer.indices.shape
        first = offsets[n] + 3 * cout
        entries = out[first:first + cout * k].reshape(cout, k)
        order = filter_order(layer.indices, layer.kernel, lanes, banks, layer.name)
        out[first:first + cout * k] = np.take_along_axis(entries, order, axis=1).reshape(-1)
    return out
