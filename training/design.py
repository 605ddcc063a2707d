"""Hardware-aware per-layer sparsity: ``sentei design`` (issue 30, after HAKD and GA channel pruning).

A genetic search over the K of every layer (its filter-wise sparsity, from the grid that
``sentei sensitivity`` measured, or dense) for a board and a frame rate:

* **accuracy predictor** -- the dense teacher's mIoU minus the sum over layers of the drop
  that layer alone caused at its sparsity in the sensitivity table, against its control (the
  same network, nothing pruned, its batch-norms re-estimated or fine-tuned the same way), a
  layer's drops fitted non-decreasing in the sparsity (:func:`monotone`: the masks are nested)
  and a drop below zero, noise, counted as zero. Measured without fine-tuning it ranks designs
  rather than foretells the trained student's mIoU (distillation recovers most of it); with
  ``sentei sensitivity --finetune-steps`` it comes nearer;
* **hardware cost** -- the model file the design would export (the teacher's shapes and the
  config's bit widths, every filter with K stored weights) priced by the performance model:
  :func:`sentei.overlay.perf.allocate` picks engines and lanes within the board's resource
  ceilings (a design whose cheapest plan already exceeds one does not fit) and
  :func:`~sentei.overlay.perf.pipeline_interval` gives the interval, frames/s = clock / interval;
* **search** -- NSGA-II (Deb et al. 2002): constrained domination (a design that fits and
  reaches ``--fps`` beats one that does not; among those that do not, the smaller shortfall
  wins), non-dominated sorting and crowding distance over (predicted mIoU, frames/s),
  binary tournaments, uniform crossover, a mutation that moves a layer one step along the
  grid. The first population holds every uniform design (all searched layers at one grid
  sparsity) and random ones; everything is drawn from one ``numpy`` generator of ``--seed``,
  so a run is reproducible.

The Pareto front is taken over every design evaluated (not only the last population); the
chosen point is its most accurate one, or with ``--budget-miou D`` its fastest within D
points of predicted loss. Its compression config (the base config with per-layer sparsities
in ``overrides``) runs with ``sentei compress --config`` unchanged. Widths are the teacher's:
``sentei compress`` builds the student as the teacher's network, so a per-layer width
multiplier is not searched.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.errors import SenteiError

PREDICTOR = ("predicted mIoU = dense teacher's mIoU - sum over layers of max(0, drop), a layer's drop = its control's "
             "mIoU (nothing pruned; with sentei sensitivity --recalibrate, the batch-norms re-estimated the same way; "
             "with --finetune-steps, fine-tuned the same way) - the mIoU with only that layer pruned filter-wise at "
             "its sparsity, from the sensitivity table, a layer's drops fitted non-decreasing in the sparsity "
             "(least squares)")


def sensitivity_training(sens: dict) -> str:
    """How the sensitivity table's figures were taken: ``no fine-tuning`` or ``fine-tuned N steps``."""
    tuned = (sens.get("evaluated_on") or {}).get("finetune")
    return f"fine-tuned {tuned['steps']} steps" if tuned else "no fine-tuning"


def _measurement(sens: dict) -> dict:
    """What a sensitivity table measured, less the fine-tune's seed and where the data lay: two
    tables that agree here differ only in the seed of their fine-tuning."""
    ev = dict(sens.get("evaluated_on") or {})
    ev.pop("data", None)
    if isinstance(ev.get("finetune"), dict):
        ev["finetune"] = {k: v for k, v in ev["finetune"].items() if k != "seed"}
    return {"teacher": sens.get("teacher_sha256") or sens.get("teacher"), "model": sens.get("model"),
            "teacher mIoU": (sens.get("dense") or {}).get("miou"), "evaluated on": ev,
            "layers and sparsities": sorted((r["layer"], float(r["sparsity"])) for r in sens["rows"])}


def check_averageable(tables: list[dict], names: list[str]) -> None:
    """Several tables are averaged only when they are one measurement repeated with other fine-tune
    seeds: the same teacher, network, frames, sizes, fine-tune settings and grid; one-line errors."""
    first = _measurement(tables[0])
    seeds = []
    for sens, name in zip(tables, names):
        tuned = (sens.get("evaluated_on") or {}).get("finetune")
        if not tuned:
            raise SenteiError(f"--sensitivity {name}: an inference-only table gives the same figures every time; "
                              f"average tables of sentei sensitivity --finetune-steps N with different --seed")
        here = _measurement(sens)
        for key, value in here.items():
            if value != first[key]:
                raise SenteiError(f"--sensitivity {name}: its {key} differ from {names[0]}'s; average only tables of "
                                  f"one sentei sensitivity command run with different --seed")
        seeds.append(tuned.get("seed"))
    if len(set(seeds)) < len(seeds):
        raise SenteiError(f"--sensitivity: fine-tune seed {max(seeds, key=seeds.count)} given twice; average "
                          f"tables of different --seed")


# ---------------------------------------------------------------------------------------
# the design space and the predictor


class Space:
    """Layers, their sparsity grid and the measured mIoU at every grid point.

    ``genes``: one per searched layer, an index into ``[0.0] + grid`` (0: dense).
    """

    def __init__(self, sensitivity, dense=()):
        from sentei.training.pruning import filter_k

        tables = sensitivity if isinstance(sensitivity, list) else [sensitivity]
        rows = tables[0]["rows"]
        self.base = float(tables[0]["dense"]["miou"])
        self.model_cfg = tables[0]["model"]
        self.tables = len(tables)
        self.grid = sorted({float(r["sparsity"]) for r in rows})
        # a layer's drop: against its control (the same batch-norm re-estimate or fine-tune, nothing pruned) where
        # recorded; with several tables (fine-tune seeds, check_averageable) the mean of their drops
        measured = {}
        for table in tables:
            for r in table["rows"]:
                key = (r["layer"], float(r["sparsity"]))
                drop = float(r.get("control_miou", self.base)) - float(r["miou"])
                measured[key] = measured.get(key, 0.0) + drop / len(tables)
        self.layer_names = [spec["name"] for spec in _specs(self.model_cfg)]
        self.fan_in = dict(zip(self.layer_names, _fan_ins(self.model_cfg)))
        unknown = [n for n in dense if n not in self.layer_names]
        if unknown:
            raise SenteiError(f"--dense: no layer {unknown[0]!r} in the teacher; its layers are "
                              f"{', '.join(self.layer_names)}")
        self.searched = [n for n in self.layer_names if n not in dense
                         and all((n, s) in measured for s in self.grid)]
        if not self.searched:
            raise SenteiError("no layer to search: the sensitivity table measures none of the layers not kept "
                              "--dense at every sparsity; rerun sentei sensitivity over those layers")
        self.options = [0.0] + self.grid
        # a sparser mask of one layer drops what a less sparse one keeps (the largest magnitudes: the masks are
        # nested), so its loss is no smaller: the measured drops, noisy by a few tenths of a point once
        # fine-tuned, are fitted monotone in the sparsity (least squares, pool-adjacent-violators) before use
        self.drop = {n: [0.0] + [max(0.0, d) for d in monotone([measured[(n, s)] for s in self.grid])]
                     for n in self.searched}
        self.k = {n: [self.fan_in[n]] + [filter_k(self.fan_in[n], s) for s in self.grid] for n in self.searched}

    @property
    def size(self) -> int:
        return len(self.options)

    def sparsities(self, genes) -> dict[str, float]:
        """Sparsity of every layer (0: dense) for ``genes``."""
        chosen = dict(zip(self.searched, genes))
        return {n: self.options[chosen[n]] if n in chosen else 0.0 for n in self.layer_names}

    def ks(self, genes) -> dict[str, int]:
        chosen = dict(zip(self.searched, genes))
        return {n: self.k[n][chosen[n]] if n in chosen else self.fan_in[n] for n in self.layer_names}

    def predicted(self, genes) -> float:
        return self.base - sum(self.drop[n][g] for n, g in zip(self.searched, genes))


def monotone(values) -> list[float]:
    """The non-decreasing sequence nearest ``values`` in least squares (pool adjacent violators:
    each run that decreases is replaced by its mean)."""
    blocks: list[list[float]] = []  # [sum, count] of each pooled run
    for v in values:
        blocks.append([float(v), 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return [total / count for total, count in blocks for _ in range(count)]


def _specs(model_cfg: dict) -> list[dict]:
    from sentei.training.models import normalize_layers

    return normalize_layers(model_cfg)


def _fan_ins(model_cfg: dict) -> list[int]:
    cin, out = 3, []
    for spec in _specs(model_cfg):
        out.append(cin * spec["kernel"] * spec["kernel"])
        cin = spec["out"]
    return out


def perf_model_record() -> dict:
    """Which performance model priced a design or a bundled model: overlay/perf.py's sha256 (a
    figure it gave belongs to that version; ``sentei perf`` gives today's)."""
    from sentei.overlay import perf
    from sentei.training.sensitivity import file_sha256

    return {"file": "overlay/perf.py", "sha256": file_sha256(perf.__file__)}


STAND_IN_SEED = 0  # where hardware_model's stand-ins keep their weights (random positions, this seed)


def hardware_model(model_cfg: dict, ks: dict, weight_bits=8, act_bits: int = 8, name: str = "design"):
    """A stand-in for the :class:`~sentei.host.modelfile.schema.Model` a compression of the teacher
    with ``ks`` (K per layer name) would export: the teacher's shapes, the config's bit widths and
    K stored weights per filter. Every stored weight is 1; every bias is 0, multiplier 1 and shift
    0: the values do not matter. Where the weights lie does, a little: a window shared by a layer's
    lanes (plan ``h``) needs as many banks as its folds' most crowded one asks
    (``perf.shared_banks``), and where a trained filter's weights will lie is not known before
    training. They are placed at K positions drawn at random per filter (seeded by
    :data:`STAND_IN_SEED` and the layer: the same stand-in every time), which is how magnitude
    pruning's survivors spread over the banks; the exported model is then priced on its own
    positions (the shipped models: within a few percent of their stand-ins, tests/training)."""
    from sentei.host.modelfile import schema as fmt
    from sentei.training.models import input_quant
    from sentei.training.quantize import per_layer_bits

    specs = _specs(model_cfg)
    bits = per_layer_bits(weight_bits, [s["name"] for s in specs])
    layers, cin = [], 3
    for n, (spec, wb) in enumerate(zip(specs, bits)):
        cout, k = spec["out"], int(ks[spec["name"]])
        logits = bool(spec.get("classifier"))
        fan_in = cin * spec["kernel"] ** 2
        draws = np.random.default_rng([STAND_IN_SEED, n]).random((cout, fan_in))
        positions = np.sort(np.argsort(draws, axis=1)[:, :k], axis=1).astype(np.uint32)
        layers.append(fmt.ConvLayer(
            name=spec["name"], in_channels=cin, out_channels=cout, kernel=spec["kernel"], stride=spec["stride"],
            dilation=spec["dilation"], padding=spec["padding"], weight_bits=wb,
            act="logits" if logits else "relu", out_bits=int(act_bits),
            values=np.ones((cout, k), dtype=np.int8), indices=positions,
            bias=np.zeros(cout, dtype=np.int32), mult=None if logits else np.ones(cout, dtype=np.int32),
            shift=None if logits else np.zeros(cout, dtype=np.uint8),
            sparsity=1.0 - k / (cin * spec["kernel"] ** 2), scheme="filterwise"))
        cin = cout
    return fmt.Model(name=name, input=input_quant(model_cfg), layers=layers,
                     output_upsample=math.prod(s["stride"] for s in specs), num_classes=specs[-1]["out"])


class Hardware:
    """Frames/s of a design on a board by the performance model, remembered per K tuple."""

    def __init__(self, space: Space, board, clock_mhz: float, weight_bits=8, act_bits: int = 8):
        from sentei.overlay import perf

        self.perf, self.space = perf, space
        self.board = perf.load_board(board) if isinstance(board, str) else board
        self.clock_mhz = float(clock_mhz if clock_mhz is not None else self.board.default_clock_mhz)
        perf.check_clock(self.board, self.clock_mhz)
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.seen: dict = {}

    def model(self, ks: dict):
        return hardware_model(self.space.model_cfg, ks, self.weight_bits, self.act_bits)

    def __call__(self, genes) -> dict:
        ks = self.space.ks(genes)
        key = tuple(ks.values())
        if key not in self.seen:
            model = self.model(ks)
            try:
                plans = self.perf.allocate(model, self.board, self.clock_mhz)
            except self.perf.DoesNotFit as exc:  # the cheapest plan exceeds a ceiling: the design does not fit
                self.seen[key] = {"fits": False, "fps": 0.0, "why": str(exc), "overshoot": exc.overshoot}
            else:
                interval = self.perf.pipeline_interval(model, plans)
                self.seen[key] = {"fits": True, "fps": self.clock_mhz * 1e6 / interval, "interval": interval,
                                  "plans": [p.label() for p in plans]}
        return self.seen[key]


# ---------------------------------------------------------------------------------------
# NSGA-II


def violation(hw: dict, fps_target: float) -> float:
    """0 for a design that fits and reaches the target; the shortfall share in (0, 1] for one
    that fits but is too slow; for one that does not fit, its cheapest design's largest
    used / limit (above 1: :class:`~sentei.overlay.perf.DoesNotFit`) -- graded, so that among
    designs that do not fit the search prefers those closer to fitting."""
    if not hw["fits"]:
        return hw["overshoot"]
    return max(0.0, (fps_target - hw["fps"]) / fps_target)


def dominates(a: tuple, b: tuple) -> bool:
    """Constrained domination of ``(violation, mIoU, fps)`` tuples (Deb): feasibility first."""
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[0] > 0:
        return False
    return a[1] >= b[1] and a[2] >= b[2] and (a[1] > b[1] or a[2] > b[2])


def fronts(points: list[tuple]) -> list[list[int]]:
    """Indices of ``points`` by non-dominated front (Deb's fast sort), each front in index order."""
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out, current = [], [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return out


def crowding(points: list[tuple], members: list[int]) -> dict[int, float]:
    """Crowding distance over (mIoU, fps) within one front (its ends: infinite)."""
    dist = {i: 0.0 for i in members}
    for axis in (1, 2):
        order = sorted(members, key=lambda i: (points[i][axis], i))
        lo, hi = points[order[0]][axis], points[order[-1]][axis]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi > lo:
            for a, i, b in zip(order, order[1:], order[2:]):
                dist[i] += (points[b][axis] - points[a][axis]) / (hi - lo)
    return dist


def search(space: Space, hardware: Hardware, fps_target: float, population: int = 40, generations: int = 30,
           seed: int = 0, crossover: float = 0.9, mutation: float | None = None, log=None) -> dict:
    """NSGA-II over per-layer grid indices; returns every evaluated design and the Pareto front."""
    rng = np.random.default_rng(seed)
    n_genes, n_opts = len(space.searched), space.size
    mutation = 1.0 / n_genes if mutation is None else mutation
    evaluated: dict[tuple, dict] = {}

    def score(genes: tuple) -> tuple:
        if genes not in evaluated:
            hw = hardware(genes)
            evaluated[genes] = {"genes": genes, "miou": space.predicted(genes), **hw,
                                "violation": violation(hw, fps_target)}
        e = evaluated[genes]
        return (e["violation"], e["miou"], e["fps"])

    pop = [tuple([i] * n_genes) for i in range(n_opts)]  # every uniform design, dense included
    while len(pop) < population:
        pop.append(tuple(int(v) for v in rng.integers(0, n_opts, n_genes)))
    pop = pop[:max(population, 2)]

    def rank(members: list[tuple]) -> dict[tuple, tuple]:
        pts = [score(g) for g in members]
        order = {}
        for r, front in enumerate(fronts(pts)):
            dist = crowding(pts, front)
            for i in front:
                order[members[i]] = (r, -dist[i])
        return order

    for gen in range(generations):
        ranks = rank(pop)

        def tournament() -> tuple:
            a, b = (pop[int(i)] for i in rng.integers(0, len(pop), 2))
            return a if ranks[a] <= ranks[b] else b

        children = []
        while len(children) < population:
            p1, p2 = tournament(), tournament()
            if rng.random() < crossover:
                take = rng.random(n_genes) < 0.5
                c1 = tuple(int(x) for x in np.where(take, p1, p2))
                c2 = tuple(int(x) for x in np.where(take, p2, p1))
            else:
                c1, c2 = p1, p2
            for c in (c1, c2):
                genes = list(c)
                for i in range(n_genes):
                    if rng.random() < mutation:
                        genes[i] = int(min(n_opts - 1, max(0, genes[i] + (1 if rng.random() < 0.5 else -1))))
                children.append(tuple(genes))
        merged = list(dict.fromkeys(pop + children[:population]))  # distinct designs, first seen first
        ranks = rank(merged)
        pop = sorted(merged, key=lambda g: (ranks[g], g))[:population]
        if log is not None:
            feas = [evaluated[g] for g in pop if evaluated[g]["violation"] == 0]
            best = max(feas, key=lambda e: (e["miou"], e["fps"]), default=None)
            log(f"  generation {gen + 1}/{generations}: {len(evaluated)} designs evaluated, {len(feas)} of the "
                f"population feasible" + ("" if best is None else
                                          f", best predicted mIoU {100 * best['miou']:.2f} at {best['fps']:.1f} fps"))
    feasible = [e for e in evaluated.values() if e["violation"] == 0]
    front = pareto(feasible)
    return {"evaluated": evaluated, "front": front, "feasible": feasible}


def pareto(designs: list[dict]) -> list[dict]:
    """The non-dominated designs by (predicted mIoU, fps), one per distinct pair (the smallest
    genes), from the slowest (most accurate) to the fastest."""
    best: dict[tuple, dict] = {}
    for d in sorted(designs, key=lambda d: d["genes"]):
        best.setdefault((d["miou"], d["fps"]), d)
    items = list(best.values())
    first = fronts([(0.0, d["miou"], d["fps"]) for d in items])[:1]
    return sorted((items[i] for front in first for i in front), key=lambda d: (d["fps"], -d["miou"]))


def choose(front: list[dict], budget_miou: float | None, base: float) -> dict:
    """The most accurate front point, or with a budget (points) the fastest within it."""
    if budget_miou is None:
        return max(front, key=lambda d: (d["miou"], d["fps"]))
    within = [d for d in front if 100 * (base - d["miou"]) <= budget_miou + 1e-9]
    if not within:
        least = min(100 * (base - d["miou"]) for d in front)
        raise SenteiError(f"--budget-miou {budget_miou:g}: every design that reaches the frame rate loses more "
                          f"(the least: {least:.2f} points predicted); raise --budget-miou or lower --fps")
    return max(within, key=lambda d: (d["fps"], d["miou"]))


# ---------------------------------------------------------------------------------------
# outputs


def config_genes(space: Space, comp: dict) -> tuple | None:
    """The genes of a compression config's own filter-wise design (``sparsity``, ``overrides``),
    or None where it is not a point of the space (another scheme, a sparsity off the grid, a
    layer kept dense here pruned there)."""
    from sentei.training.config import settings

    comp = settings(comp, "compress")  # the keys it leaves out at the schema's defaults
    if comp["scheme"] != "filterwise":
        return None
    overrides = comp["overrides"] or {}
    level = {n: float(overrides.get(n, comp["sparsity"])) for n in space.layer_names}
    if any(level[n] != 0.0 for n in space.layer_names if n not in space.searched):
        return None
    if any(level[n] not in space.options for n in space.searched):
        return None
    return tuple(space.options.index(level[n]) for n in space.searched)


def compression_config(base_cfg: dict, space: Space, design: dict, name: str) -> dict:
    """``base_cfg`` (a compression config) with the design's per-layer sparsities: filter-wise,
    every layer named in ``overrides`` (0.0: dense), ``sparsity`` the largest of them."""
    import copy

    from sentei.training.config import settings

    cfg = copy.deepcopy(base_cfg)
    comp = cfg.setdefault("compress", {}) or {}
    cfg["compress"] = comp
    sparsities = space.sparsities(design["genes"])
    comp["scheme"] = "filterwise"
    comp["sparsity"] = max(sparsities.values()) or float(settings(comp, "compress")["sparsity"])
    comp["overrides"] = {n: float(s) for n, s in sparsities.items()}
    comp["name"] = name
    cfg["name"] = name
    return cfg


def table(space: Space, front: list[dict], chosen: dict | None = None) -> str:
    names = space.layer_names
    head = "| # | predicted mIoU | Δ (points) | modeled fps | " + " | ".join(f"K {n}" for n in names) + " | plan |"
    lines = [head, "|" + "---|" * (len(names) + 5)]
    for i, d in enumerate(front):
        ks = space.ks(d["genes"])
        mark = " ◀" if d is chosen else ""
        lines.append(f"| {i + 1}{mark} | {100 * d['miou']:.2f} | {100 * (space.base - d['miou']):.2f} | "
                     f"{d['fps']:.1f} | " + " | ".join(str(ks[n]) for n in names) + f" | {' '.join(d['plans'])} |")
    return "\n".join(lines) + "\n"


def plot(space: Space, result: dict, chosen: dict, uniform: list[dict], fps_target: float, title: str, path,
         reference: dict | None = None, reference_label: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sentei.host.data.visualize import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fits = [e for e in result["evaluated"].values() if e["fits"]]
    ax.scatter([e["fps"] for e in fits], [100 * e["miou"] for e in fits], s=6, color="0.75",
               label="designs evaluated (fit the board)")
    front = result["front"]
    ax.plot([d["fps"] for d in front], [100 * d["miou"] for d in front], marker="o", markersize=4,
            label="Pareto front (reach the target)")
    if uniform:
        ax.scatter([d["fps"] for d in uniform], [100 * d["miou"] for d in uniform], marker="s", color="tab:red",
                   s=18, label="uniform sparsity (every searched layer)")
    if reference is not None and reference["fits"]:
        ax.scatter([reference["fps"]], [100 * reference["miou"]], marker="D", s=36, color="tab:purple", zorder=4,
                   label=reference_label)
    ax.scatter([chosen["fps"]], [100 * chosen["miou"]], marker="*", s=160, color="tab:green", zorder=5,
               label="chosen")
    ax.axvline(fps_target, color="k", linestyle=":", linewidth=1, label=f"target {fps_target:g} fps")
    ax.axhline(100 * space.base, color="k", linestyle="--", linewidth=1, label="dense teacher")
    ax.set_xlabel("modeled frames/s (performance model, allocate + pipeline_interval)")
    ax.set_ylabel("predicted mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def predictor_source(tables: list[dict], paths: list[str]) -> str:
    """The table, or the tables whose drops are averaged, as the log names them."""
    if len(tables) == 1:
        return paths[0]
    seeds = ", ".join(str(((t.get("evaluated_on") or {}).get("finetune") or {}).get("seed")) for t in tables)
    return f"the mean of {len(tables)} tables (fine-tune seeds {seeds}: {', '.join(paths)})"


def run(sensitivity_path, board: str, fps: float, out, *, base_config, clock_mhz=None, budget_miou=None,
        seed: int = 0, population: int = 40, generations: int = 30, dense=(), name=None, simulate=False,
        command: str = "", log=print) -> dict:
    """The search and its outputs in ``out``: design.json, design.md, design.png, design.yaml."""
    from sentei.overlay.report import perf_report
    from sentei.training.config import check_config, load_config
    from sentei.training.sensitivity import load_result

    if not 0 < fps < math.inf:
        raise SenteiError(f"--fps {fps:g}: a frame rate must be above 0, e.g. 400")
    several = isinstance(sensitivity_path, (list, tuple))
    paths = [str(p) for p in sensitivity_path] if several else [str(sensitivity_path)]
    tables = [load_result(p) for p in paths]
    if len(tables) > 1:
        check_averageable(tables, paths)
    sens = tables[0]
    base_cfg = load_config(base_config)
    check_config(base_cfg, "compress", f"config {base_config}")
    comp = base_cfg.get("compress") or {}
    space = Space(tables, dense)
    hardware = Hardware(space, board, clock_mhz, comp.get("weight_bits", 8), int(comp.get("act_bits", 8)))
    b = hardware.board
    ev = sens["evaluated_on"]
    log(f"design for {b.name} at {hardware.clock_mhz:g} MHz, target {fps:g} frames/s; searching K of "
        f"{', '.join(space.searched)} over sparsities {', '.join(f'{s:g}' for s in space.grid)} (or dense); "
        f"predictor from {predictor_source(tables, paths)} ({ev['frames']} frames of {ev['split']} at "
        f"{ev['size'][0]}x{ev['size'][1]}, teacher mIoU {100 * space.base:.2f}); NSGA-II population {population}, "
        f"{generations} generations, seed {seed}")
    result = search(space, hardware, fps, population, generations, seed, log=log)
    uniform = [result["evaluated"][tuple([i] * len(space.searched))] for i in range(space.size)]
    ref_genes = config_genes(space, comp)
    reference = None
    if ref_genes is not None:
        reference = {"genes": ref_genes, "miou": space.predicted(ref_genes), **hardware(ref_genes)}
    if not result["front"]:
        fastest = max((e for e in result["evaluated"].values() if e["fits"]), key=lambda e: e["fps"], default=None)
        best = "no design fits the board" if fastest is None else f"the fastest that fits: {fastest['fps']:.1f} fps"
        raise SenteiError(f"no design reaches {fps:g} frames/s on {b.name} at {hardware.clock_mhz:g} MHz within its "
                          f"resource ceilings ({best}); lower --fps, measure higher sparsities with sentei "
                          f"sensitivity --sparsities, or pick a bigger board")
    chosen = choose(result["front"], budget_miou, space.base)
    name = name or f"sentei-design-{b.name}-{fps:g}fps".replace(".", "p")
    cfg = compression_config(base_cfg, space, chosen, name)
    chosen_model = hardware.model(space.ks(chosen["genes"]))
    report = perf_report(chosen_model, b, hardware.clock_mhz)
    sim, sim_error = None, None
    if simulate:  # the clock-level simulator on the chosen design; its failure is reported, not fatal
        try:
            sim = perf_report(chosen_model, b, hardware.clock_mhz, simulate=True)["simulated"]
        except SenteiError as exc:
            sim_error = str(exc)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(space, result["front"], chosen)
    atomic_write_bytes(out / "design.md", text.encode("utf-8"))
    title = (f"{b.name} {hardware.clock_mhz:g} MHz, target {fps:g} fps, seed {seed}, "
             f"pop {population} x {generations} gen")
    ref_label = f"the base config's own design ({Path(base_config).name})"
    plot(space, result, chosen, [u for u in uniform if u["fits"]], fps, title, out / "design.png", reference,
         ref_label)
    header = "".join(f"# {line}\n" for line in (
        f"written by: {command}" if command else "written by sentei design",
        f"board {b.name} at {hardware.clock_mhz:g} MHz, target {fps:g} frames/s: modeled "
        f"{chosen['fps']:.1f} frames/s (plans {' '.join(chosen['plans'])})",
        f"predicted mIoU {100 * chosen['miou']:.2f} (teacher {100 * space.base:.2f}, sensitivity predictor, "
        f"{sensitivity_training(sens)}" + (f", mean of {len(tables)} tables" if len(tables) > 1 else "") + ")",
        "K per layer: " + ", ".join(f"{n} {k}" for n, k in space.ks(chosen["genes"]).items()),
        f"run: sentei compress --config {out / 'design.yaml'} --teacher {sens['teacher']} --data CAMVID --out RUN"))
    from sentei.training.train import dump_yaml

    atomic_write_bytes(out / "design.yaml", (header + dump_yaml(cfg)).encode("utf-8"))

    def row(d):
        return {"predicted_miou": d["miou"], "predicted_drop_points": 100 * (space.base - d["miou"]),
                "frames_per_s": d["fps"], "interval_cycles": d.get("interval"), "plans": d.get("plans"),
                "fits": d["fits"], "k": space.ks(d["genes"]), "sparsity": space.sparsities(d["genes"])}

    summary = {
        "format": "sentei-design", "command": command, "board": b.name, "clock_mhz": hardware.clock_mhz,
        "fps_target": fps, "budget_miou": budget_miou, "seed": seed, "population": population,
        "generations": generations, "searched_layers": space.searched, "grid": space.grid,
        "predictor": PREDICTOR + ("; each drop the mean of the tables'" if len(tables) > 1 else ""),
        "teacher_miou": space.base, "sensitivity": paths[0] if len(paths) == 1 else paths,
        "sensitivity_evaluated_on": ev, "sensitivity_seeds": [((t.get("evaluated_on") or {}).get("finetune") or {})
                                                             .get("seed") for t in tables],
        "designs_evaluated": len(result["evaluated"]),
        "front": [row(d) for d in result["front"]], "chosen": row(chosen),
        "uniform": [dict(row(u), sparsity_all=s) for u, s in zip(uniform, space.options)],
        "base_config_design": None if reference is None else dict(row(reference), config=str(base_config)),
        "chosen_report": {"kind": report["kind"], "frames_per_s": report["frames_per_s"],
                          "bottleneck": report["pipeline"]["bottleneck"],
                          "within_ceilings": report["resources"]["within_ceilings"],
                          "resources": {k: report["resources"][k] for k in hardware.perf.BUDGET_FIELDS},
                          "simulated_frames_per_s": (sim or {}).get("frames_per_s"), "simulation_error": sim_error},
        "config": str(out / "design.yaml"),
        "width_multiplier": "not searched: sentei compress builds the student as the teacher's network",
        "perf_model": perf_model_record(),
    }
    write_json(out / "design.json", summary)
    log(text.rstrip())
    log(f"chosen: #{result['front'].index(chosen) + 1}, predicted mIoU {100 * chosen['miou']:.2f} "
        f"({100 * (space.base - chosen['miou']):.2f} points below the teacher), modeled {chosen['fps']:.1f} "
        f"frames/s on {b.name}" + ("" if not sim else f", simulated {sim['frames_per_s']:.1f} frames/s")
        + f" (bottleneck {report['pipeline']['bottleneck']})")
    if sim_error:
        log(f"simulation of the chosen design failed: {sim_error}")
    best_uniform = max((u for u in uniform if u["violation"] == 0), key=lambda u: u["miou"], default=None)
    if best_uniform is not None:
        log(f"uniform filter-wise pruning that reaches {fps:g} fps: sparsity "
            f"{space.options[best_uniform['genes'][0]]:g} in every searched layer, predicted mIoU "
            f"{100 * best_uniform['miou']:.2f} at {best_uniform['fps']:.1f} fps")
    else:
        log(f"no uniform sparsity of the grid reaches {fps:g} fps on {b.name}")
    if reference is not None:
        log(f"{ref_label}: predicted mIoU {100 * reference['miou']:.2f}, "
            + (f"modeled {reference['fps']:.1f} fps" if reference["fits"] else "does not fit the board"))
    log(f"{len(result['evaluated'])} designs evaluated -> {out / 'design.yaml'} (sentei compress --config), "
        f"{out / 'design.md'}, {out / 'design.png'}, {out / 'design.json'}")
    return summary

