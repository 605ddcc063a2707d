"""The results table and plot of docs/results.md, from compression run directories.

Every mIoU comes from what ``sentei eval`` runs (:func:`sentei.host.runtime.evaluation.evaluate` on
each run's ``model.sentei``, integer engine ``--backend emu``); sparsity, weight memory
and the spread of nonzeros per filter come from ``sentei.host.modelfile.schema.describe``.

    python -m sentei.training.results RUN_DIR ... --data ROOT --split val \\
        --teacher-miou 0.6688 --table table.md --plot miou.png

With ``--board`` (repeatable) each row also gets what ``sentei perf --model RUN/model.sentei
--board B`` reports -- modeled frames/s and the DSP48, BRAM18 and LUT the allocator's design
takes -- at the model file's input size or at ``--perf-size`` (the K of a filter does not
depend on the frame size, so a model trained small can be priced at the size it would run at),
and ``--hardware-table`` writes the table that compares designs: K per layer, mIoU, weights,
and those figures per board.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.errors import SenteiError
from sentei.host.engine_registry import DEFAULT_BACKEND
from sentei.host.options import parse_size
from sentei.overlay import perf
from sentei.host.modelfile import schema as fmt
from sentei.host.data.visualize import save_figure
from sentei.training.config import settings


def evaluate(model_path, data, split, backend=DEFAULT_BACKEND) -> dict:
    """What ``sentei eval --model M --data D --split S --backend B --json`` writes."""
    from sentei.host.runtime import evaluation

    return evaluation.evaluate(model_path, data, split, backend)


def row(run_dir: Path, data, split, boards=(), perf_size: tuple[int, int] | None = None) -> dict:
    """One table row for a compression run directory (with :func:`hardware` on each of ``boards``)."""
    from sentei.training.train import load_config, summarize, target_sparsity  # torch: here, not at import

    model = fmt.load(run_dir / "model.sentei")
    cfg = load_config(run_dir / "config.yaml")
    comp = settings(cfg["compress"], "compress", legacy=True)  # a key the run left out: what it took
    summary = summarize(model)
    pruned = [name for name, layer in summary["layers"].items() if layer["scheme"] != "dense"]
    scheme = comp["scheme"] if pruned else "dense"
    if scheme == "nm":
        scheme = f"{comp['n']}:{comp['m']}"
    elif scheme == "unstructured" and comp["ranking"] == "layer":
        scheme = "unstructured per layer"
    elif scheme == "groupwise":
        layout = " channels" if comp["group_layout"] == "channels" else ""
        scheme = f"groupwise G={comp['group_size']}{layout}"
    target = 0.0 if not pruned else target_sparsity(comp)
    result = evaluate(run_dir / "model.sentei", data, split)
    return {"run": run_dir.name, "scheme": scheme, "target": target,
            "distill": bool(comp["distill"]["enabled"]),
            "epochs": int(comp["prune_epochs"]) + int(comp["qat_epochs"]),
            "pruned_layers": pruned, "all_layers": list(summary["layers"]), "min_pruned_sparsity": summary["min_pruned_sparsity"],
            "total_sparsity": summary["total_sparsity"], "weight_bytes": summary["weight_bytes"],
            "nnz_spread": summary["nnz_spread"], "miou": result["miou"],
            "size": [model.input.height, model.input.width],
            "k": {layer.name: int(layer.k_nonzero) for layer in model.layers},
            "hardware": [hardware(model, b, perf_size) for b in boards]}


def at_size(model, height: int, width: int):
    """``model`` with its input at ``height`` x ``width`` (same layers and weights): what the
    accelerator would run on frames of that size."""
    import dataclasses

    return dataclasses.replace(model, input=dataclasses.replace(model.input, height=height, width=width))


def hardware(model, board: str, size: tuple[int, int] | None = None) -> dict:
    """What ``sentei perf`` reports for ``model`` (at ``size`` when given) on ``board`` at its
    default clock: modeled frames/s and the design's DSP48, BRAM18, URAM and LUT, or why it
    does not fit."""
    from sentei.overlay.report import perf_report

    b = perf.load_board(board)
    if size is not None:
        model = at_size(model, *size)
    out = {"board": b.name, "clock_mhz": b.default_clock_mhz,
           "size": [model.input.height, model.input.width]}
    try:
        report = perf_report(model, b, b.default_clock_mhz)
    except perf.DoesNotFit as exc:
        over = perf.over_limits(exc.used, exc.limits)[0]
        return dict(out, fits=False, why=str(exc), needs={over: exc.used[over]})
    res = report["resources"]
    return dict(out, fits=True, frames_per_s=report["frames_per_s"], plans=[r["plan"] for r in report["layers"]],
                bottleneck=report["pipeline"]["bottleneck"],
                resources={k: {"used": res[k]["used"], "limit": res[k]["limit"]}
                           for k in ("dsp", "bram18", "uram", "lut")})


def hardware_markdown(rows: list[dict], teacher_miou: float | None) -> str:
    """Designs side by side: K per layer, val mIoU, weight memory, and per board the modeled
    frames/s with DSP48 / BRAM18 / LUT used (of the allocator's ceilings)."""
    boards = [h["board"] for h in rows[0]["hardware"]]
    names = rows[0]["all_layers"]
    sizes = {tuple(h["size"]) for r in rows for h in r["hardware"]}
    common = "" if len(sizes) != 1 else ", {}x{}".format(*next(iter(sizes)))
    head = ("| run | scheme | K per filter (" + ", ".join(names) + ") | val mIoU (emu) |"
            + (" Δ vs teacher |" if teacher_miou is not None else "") + " weight memory (bytes) |"
            + "".join(f" {h['board']} @ {h['clock_mhz']:g} MHz{common}: frames/s (DSP48 / BRAM18 / LUT used) |"
                      for h in rows[0]["hardware"]))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if [h["board"] for h in r["hardware"]] != boards:
            raise ValueError("every row needs the same boards")
        delta = f" {100 * (r['miou'] - teacher_miou):+.2f} |" if teacher_miou is not None else ""
        cells = []
        for h in r["hardware"]:
            if not h["fits"]:
                (key, used), = h["needs"].items()
                cells.append(f" does not fit: needs {used:,} {perf.RESOURCE_NAMES[key]} |")
                continue
            res = h["resources"]
            at = "" if common else f" at {h['size'][0]}x{h['size'][1]}"
            cells.append(f" {h['frames_per_s']:.1f}{at} ({res['dsp']['used']:,} / {res['bram18']['used']:,} / "
                         f"{res['lut']['used']:,}) |")
        lines.append(f"| {r['run']} | {r['scheme']} | {', '.join(str(r['k'][n]) for n in names)} | "
                     f"{100 * r['miou']:.2f} |{delta} {r['weight_bytes']:,} |" + "".join(cells))
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], teacher_miou: float | None) -> str:
    head = ("| run | scheme | target sparsity | distilled | epochs | pruned layers min. sparsity | "
            "total sparsity | weight memory (bytes) | nonzeros/filter spread (max−min) | val mIoU (emu) |"
            + (" Δ vs teacher |" if teacher_miou is not None else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        delta = f" {100 * (r['miou'] - teacher_miou):+.2f} |" if teacher_miou is not None else ""
        lines.append(f"| {r['run']} | {r['scheme']} | {100 * r['target']:.0f} % | {'yes' if r['distill'] else 'no'} "
                     f"| {r['epochs']} | {100 * r['min_pruned_sparsity']:.1f} % | {100 * r['total_sparsity']:.1f} % "
                     f"| {r['weight_bytes']:,} | {r['nnz_spread']} | {100 * r['miou']:.2f} |{delta}")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], teacher_miou: float | None, path) -> None:
    """mIoU against the target sparsity, one line per scheme (and distillation setting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[str, list] = {}
    epochs = [r["epochs"] for r in rows]
    common = max(set(epochs), key=epochs.count)
    for r in rows:
        key = r["scheme"].split(" ")[0] + ("" if r["distill"] else " (no distillation)")
        if r["scheme"] in ("dense", "2:4"):
            key = {"dense": "dense 8-bit (QAT only)", "2:4": "2:4 (N:M)"}[r["scheme"]]
        if r["epochs"] != common:
            key += f", {r['epochs']} epochs, dense: {','.join(sorted(set(_dense(r))))}"
        series.setdefault(key, []).append((100 * r["target"], 100 * r["miou"]))
    for key, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if "epochs" not in key else "*",
                markersize=6 if "epochs" not in key else 11, linestyle="-" if len(pts) > 1 else "none", label=key)
    if teacher_miou is not None:
        ax.axhline(100 * teacher_miou, color="k", linestyle="--", linewidth=1, label="dense float teacher")
    ax.set_xlabel("sparsity of the pruned layers (%)")
    ax.set_ylabel("CamVid val mIoU (%), integer engine")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _dense(r: dict) -> list[str]:
    return [name for name in r.get("all_layers", []) if name not in r["pruned_layers"]]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sentei.training.results`` (its shared options as sentei's)."""
    from sentei.host.options import add_data_option, add_json_option, add_split_option

    p = argparse.ArgumentParser(prog="python -m sentei.training.results", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="compression run directories (model.sentei, config.yaml)")
    add_data_option(p, required=True)
    add_split_option(p)
    p.add_argument("--teacher-miou", type=float, help="the teacher's mIoU (0..1) for the delta column")
    p.add_argument("--table", help="write the markdown table here")
    add_json_option(p)
    p.add_argument("--plot", help="write the mIoU-vs-sparsity plot here (PNG)")
    p.add_argument("--board", action="append", default=[],
                   help="price every model on this board too, at its default clock (repeatable; one of overlay/boards: zcu104, kv260, ultra96v2, pynqz2)")
    p.add_argument("--perf-size", help="HxW: price the models at this input size (default: each model's own)")
    p.add_argument("--hardware-table", help="write the designs table (K per layer, figures per --board) here")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.hardware_table and not args.board:
        p.error("--hardware-table needs at least one --board")
    try:
        size = parse_size(args.perf_size, "--perf-size") if args.perf_size else None
        for board in args.board:
            perf.load_board(board)
    except SenteiError as exc:
        p.error(str(exc))
    rows = [row(Path(r), args.data, args.split, args.board, size) for r in args.runs]
    text = markdown(rows, args.teacher_miou)
    print(text)
    if args.table:
        atomic_write_bytes(args.table, text.encode("utf-8"))
    if args.json_out:
        write_json(args.json_out, rows)
    if args.plot:
        plot(rows, args.teacher_miou, args.plot)
    if args.hardware_table:
        hw = hardware_markdown(rows, args.teacher_miou)
        print(hw)
        atomic_write_bytes(args.hardware_table, hw.encode("utf-8"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
