"""The results table and plot of docs/results.md, from compression run directories.

Every mIoU comes from what ``sentei eval`` runs (:func:`sentei.host.runtime.evaluation.evaluate` on
each run's ``model.sentei``, integer engine ``--backend emu``); sparsity, weight memory
and the spread of nonzeros per filter come from ``sentei.host.modelfile.schema.describe``.

    python -m sentei.training.results RUN_DIR ... --data ROOT --split val \\
        --teacher-miou 0.6688 --table table.md --plot miou.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.host.engine_registry import DEFAULT_BACKEND
from sentei.host.modelfile import schema as fmt
from sentei.host.data.visualize import save_figure
from sentei.training.config import settings
from sentei.training.train import target_sparsity


def evaluate(model_path, data, split, backend=DEFAULT_BACKEND) -> dict:
    """What ``sentei eval --model M --data D --split S --backend B --json`` writes."""
    from sentei.host.runtime import evaluation

    return evaluation.evaluate(model_path, data, split, backend)


def row(run_dir: Path, data, split) -> dict:
    """One table row for a compression run directory."""
    from sentei.training.train import load_config, summarize

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
            "nnz_spread": summary["nnz_spread"], "miou": result["miou"]}


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sentei.training.results", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="compression run directories (model.sentei, config.yaml)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--teacher-miou", type=float, help="the teacher's mIoU (0..1) for the delta column")
    p.add_argument("--table", help="write the markdown table here")
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--plot", help="write the mIoU-vs-sparsity plot here (PNG)")
    args = p.parse_args(argv)
    rows = [row(Path(r), args.data, args.split) for r in args.runs]
    text = markdown(rows, args.teacher_miou)
    print(text)
    if args.table:
        atomic_write_bytes(args.table, text.encode("utf-8"))
    if args.json:
        write_json(args.json, rows)
    if args.plot:
        plot(rows, args.teacher_miou, args.plot)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
