"""Bundle a finished run into the package (``host/bundled/``): the release step after training.

    python -m sentei.training.bundle teacher RUN/teacher --name teacher --data CAMVID --trained-on TEXT
    python -m sentei.training.bundle model RUN/fw90-shipped --name NAME --teacher teacher --data CAMVID \\
        --trained-on TEXT [--default]
    python -m sentei.training.bundle rename OLD NEW

``teacher`` bundles a finished ``sentei train`` run: ``NAME.pt`` (its ``teacher.pt``),
``NAME.yaml`` and ``NAME.log`` (the run's config and log) and ``NAME.json`` (what it is, how
it was trained, its evaluation). ``model`` bundles a finished ``sentei compress`` run: its
``best.pt`` without the optimizer as ``NAME-qat.pt``, the model file exported from it
(``NAME.sentei``), config, log and details. ``rename`` renames a bundled entry, its files and
every reference to it (a model's ``teacher``, a model file's ``checkpoint``, ``'OLD'`` in a
description), so that a new teacher can take the name ``teacher``.

Every figure is measured here, by the library functions behind the package's commands, and
recorded with those commands' lines: ``sentei export``, ``sentei eval`` (``--backend emu`` on
the model file, ``--backend torch`` on the checkpoints), ``sentei perf``. A model is refused when its
checkpoint's exact integer path and its model file disagree, or when the bundled teacher
named is not the one it was distilled from. Nothing in the folder changes until every file
is ready: they are built in a staging folder beside ``models.json``, moved in, and
``models.json`` is rewritten last, atomically. The README's table of shipped models
(``tests/host/test_bundled.py`` checks it) is left to the maintainer: the command prints
the row.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from sentei.atomic_write import write_json
from sentei.errors import SenteiError
from sentei.host.modelfile import schema as fmt
from sentei.host.modelfile import bundled
from sentei.host.options import DEFAULT_BOARD
from sentei.training.config import settings

#: what a checkpoint keeps in the bundle: enough to run and export it, not to resume training
RESUME_ONLY = ("optimizer", "rng", "best", "history", "averaged")
#: the issue's target for the default model: at most this many mIoU points below its teacher
TARGET_GAP = 0.8


# ---------------------------------------------------------------------------------------
# the folder and its manifest

def details_of(dest: Path, entry: dict) -> tuple[str | None, dict]:
    name = entry.get("metrics", {}).get("details")
    return name, (json.loads((dest / name).read_text(encoding="utf-8")) if name else {})


def owned_files(dest: Path, entry: dict) -> set[str]:
    """The files an entry brings: its own, its details JSON and the config and log it names."""
    name, info = details_of(dest, entry)
    files = {entry["file"]} | ({name} if name else set())
    return files | {info[k] for k in ("config", "log") if k in info}


def install(dest: Path, staging: Path, files: list[str], manifest: dict) -> None:
    """Move the staged ``files`` into ``dest``, then switch ``models.json`` to ``manifest``."""
    for name in files:
        os.replace(staging / name, dest / name)
    write_json(dest / "models.json", manifest)


def check_free(dest: Path, manifest: dict, names: list[str], files: list[str], replace: bool) -> None:
    """Refuse names and files that belong to something else (or, without --replace, exist)."""
    models = manifest["models"]
    taken = [n for n in names if n in models]
    if taken and not replace:
        raise SenteiError(f"{taken[0]} is already bundled; pass --replace to replace it, or pick another --name")
    mine = {f for n in taken for f in owned_files(dest, models[n])}
    others = {f for n, e in models.items() if n not in taken for f in owned_files(dest, e)}
    for f in files:
        if f in others:
            raise SenteiError(f"{dest / f} belongs to another bundled model; pick another --name")
        if (dest / f).exists() and f not in mine and not replace:
            raise SenteiError(f"{dest / f} exists (not a bundled model's file); remove it or pass --replace")


# ---------------------------------------------------------------------------------------
# the library functions behind the package's commands, in-process

def machine(backend: str) -> str:
    import platform

    cores = f"{os.cpu_count()} cores"
    if backend == "emu":
        return f"CPU ({platform.machine()}, {cores}), numpy integer engine"
    import torch

    return f"CPU ({platform.machine()}, {cores}), torch {torch.__version__}, float32"


def evaluate(model: Path | str, shown: str, data, split: str, backend: str) -> dict:
    """What ``sentei eval`` finds for ``model`` (printed as it prints it); the result with the
    command line a user reruns (``shown``)."""
    from sentei.host.runtime import evaluation

    result = evaluation.evaluate(model, data, split, backend)
    print(evaluation.summary(result))
    result["command"] = f"sentei eval --model {shown} --data CAMVID --split {split} --backend {backend}"
    result["machine"] = machine(backend)
    return result


def generic_command(command: str | None) -> str | None:
    """The run's command line with its data root as CAMVID and its runs' folder as RUN."""
    if not command:
        return None
    words = shlex.split(command)
    parent = None
    if "--out" in words[:-1]:
        parent = os.path.dirname(os.path.normpath(words[words.index("--out") + 1]))
    for i, w in enumerate(words):
        if i and words[i - 1] == "--data":
            words[i] = "CAMVID"
        elif parent and w.startswith(parent + "/"):
            words[i] = "RUN/" + w[len(parent) + 1:]
        elif parent == "" and i and words[i - 1] in ("--out", "--teacher"):
            words[i] = "RUN/" + w
    return shlex.join(words)


# ---------------------------------------------------------------------------------------
# a finished run

def finished_run(run: Path, product: str) -> tuple[dict, dict, str]:
    """(metrics, config, config text) of a finished run folder, or a one-line refusal."""
    import yaml

    if not run.is_dir():
        raise SenteiError(f"{run}: no such run folder (pass the --out folder of sentei train/compress)")
    for name in ("config.yaml", "train.log", product):
        if not (run / name).is_file():
            raise SenteiError(f"{run}: no {name}; bundle a finished run (a run stopped early resumes with its "
                              f"own command and --resume)")
    if not (run / "metrics.json").is_file():
        raise SenteiError(f"{run}: no metrics.json: the run has not finished (resume it with its own command "
                          f"and --resume)")
    text = (run / "config.yaml").read_text(encoding="utf-8")
    return json.loads((run / "metrics.json").read_text(encoding="utf-8")), yaml.safe_load(text), text


def bundle_teacher(run: Path, name: str, data, trained_on: str, dest: Path, split: str = "val",
                   description: str | None = None, replace: bool = False) -> dict:
    """Bundle the finished teacher run ``run`` as ``name``; returns its models.json entry."""
    from sentei.training import train

    metrics, cfg, _ = finished_run(run, "teacher.pt")
    ckpt = train.load_checkpoint(run / "teacher.pt")
    if ckpt.get("kind") != "teacher":
        raise SenteiError(f"{run}/teacher.pt is a {ckpt.get('kind')} checkpoint; `bundle teacher` takes a "
                          f"sentei train run (a compressed run: `bundle model`)")
    manifest = bundled.manifest(dest / "models.json")
    files = [f"{name}.pt", f"{name}.yaml", f"{name}.log", f"{name}.json"]
    check_free(dest, manifest, [name], files, replace)
    weights = sum(v.numel() for k, v in ckpt["model"].items() if k.endswith("weight") and v.dim() == 4)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=dest) as tmp:
        staging = Path(tmp)
        shutil.copyfile(run / "teacher.pt", staging / files[0])
        shutil.copyfile(run / "config.yaml", staging / files[1])
        shutil.copyfile(run / "train.log", staging / files[2])
        result = evaluate(staging / files[0], name, data, split, "torch")
        tcfg = settings(cfg.get("train"), "train", legacy=True)  # what the run took for a key it left out
        info = {
            "name": name, "file": files[0], "config": files[1], "log": files[2],
            "command": generic_command(cfg.get("command")),
            "trained_on": trained_on, "train_seconds": round(float(metrics["seconds"]), 1),
            "epochs": int(metrics["epochs"]), "selected_epoch": int(metrics["best_epoch"]),
            "selection": f"best val mIoU of the evaluations every {tcfg['eval_every']} epochs",
            "val_during_training": metrics["val"]["miou"],
            "conv_weights": int(weights),
            "eval": result,
        }
        write_json(staging / files[3], info)
        entry = {"file": files[0], "kind": "torch-checkpoint",
                 "description": description or (f"dense float teacher ({cfg['name']}, {weights / 1e6:.2f} M conv "
                                                f"weights, {info['epochs']} epochs from scratch)"),
                 "metrics": {"val_miou": result["miou"], "backend": "torch", "details": files[3]}}
        manifest["models"][name] = entry
        install(dest, staging, files, manifest)
    return entry


def bundle_model(run: Path, name: str, teacher: str, data, trained_on: str, dest: Path, split: str = "val",
                 default: bool = False, description: str | None = None, board: str = DEFAULT_BOARD,
                 clock_mhz: float | None = None, replace: bool = False, with_checkpoint: bool = True) -> dict:
    """Bundle the finished compression run ``run`` as ``name`` (and ``name-qat``); its entry.
    Its modeled frame rate is ``sentei perf``'s on ``board`` at ``clock_mhz`` (default: the board's).
    ``with_checkpoint`` False: the checkpoint is measured (its exact integer path against the
    model file) but not shipped -- no ``name-qat`` entry, the details name the run's ``best.pt``."""
    import torch

    from sentei.overlay import perf
    from sentei.overlay.report import perf_report
    from sentei.training import train
    from sentei.training.design import perf_model_record

    if clock_mhz is None:
        clock_mhz = perf.load_board(board).default_clock_mhz

    metrics, cfg, _ = finished_run(run, "best.pt")
    manifest = bundled.manifest(dest / "models.json")
    models = manifest["models"]
    if teacher not in models or models[teacher]["kind"] != "torch-checkpoint":
        known = ", ".join(n for n, e in sorted(models.items()) if e["kind"] == "torch-checkpoint") or "none"
        raise SenteiError(f"--teacher {teacher}: not a bundled teacher (bundled checkpoints: {known}); bundle it "
                          f"first with `python -m sentei.training.bundle teacher`")
    distilled_from = (cfg.get("teacher") or {}).get("val")
    bundled_val = train.load_checkpoint(dest / models[teacher]["file"]).get("val", {}).get("miou")
    if distilled_from is None or bundled_val is None or abs(distilled_from - bundled_val) > 1e-9:
        raise SenteiError(f"{run} was distilled from a teacher with val mIoU {distilled_from} (its config.yaml), "
                          f"the bundled {teacher} records {bundled_val}: pass the teacher it was distilled from "
                          f"(--teacher NAME), bundling that run first if it is not bundled")
    ckpt = train.load_checkpoint(run / "best.pt")
    if ckpt.get("kind") != "compressed" or ckpt.get("phase") != "qat":
        raise SenteiError(f"{run}/best.pt is not a quantization-aware checkpoint of sentei compress (kind "
                          f"{ckpt.get('kind')}, phase {ckpt.get('phase')}); bundle a finished compression run")
    qat = f"{name}-qat"
    files = [f"{qat}.pt", f"{name}.sentei", f"{name}.yaml", f"{name}.log", f"{name}.json"]
    check_free(dest, manifest, [name, qat] if with_checkpoint else [name], files if with_checkpoint else files[1:],
               replace)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=dest) as tmp:
        staging = Path(tmp)
        slim = {k: v for k, v in ckpt.items() if k not in RESUME_ONLY}
        torch.save(slim, staging / files[0])
        saved = train.load_checkpoint(staging / files[0])  # `sentei export` of the bundled checkpoint
        train.export_checkpoint(saved, train.build_from_checkpoint(saved), staging / files[1], name)
        shutil.copyfile(run / "config.yaml", staging / files[2])
        shutil.copyfile(run / "train.log", staging / files[3])
        emu = evaluate(staging / files[1], name, data, split, "emu")
        exact = evaluate(staging / files[0], qat, data, split, "torch")
        if emu["miou"] != exact["miou"] or emu["pixel_accuracy"] != exact["pixel_accuracy"]:
            raise SenteiError(f"{run}: the model file ({100 * emu['miou']:.4f} mIoU) and its checkpoint's exact "
                              f"integer path ({100 * exact['miou']:.4f}) disagree on {split}: the export does not "
                              f"compute what the checkpoint does; find the layer with sentei compare --exact")
        model = fmt.load(staging / files[1])
        fps = perf_report(model, board, clock_mhz)["frames_per_s"]  # as `sentei perf` reports it
        summary = train.summarize(model)
        teacher_val = models[teacher]["metrics"]["val_miou"]
        gap = round(100 * (teacher_val - emu["miou"]), 2)
        info = {
            "name": name, "file": files[1], "config": files[2], "log": files[3],
            **({"qat_checkpoint": files[0]} if with_checkpoint else {}),
            "teacher": teacher,
            "command": generic_command(cfg.get("command")),
            "export": f"sentei export RUN/{run.name}/best.pt -o {files[1]} --name {name} (from the checkpoint "
                      + (f"without its optimizer state, bundled as {files[0]})" if with_checkpoint else
                         "without its optimizer state; the checkpoint is not bundled, to keep the package "
                         "small: sentei compare and --backend torch need the run's best.pt)"),
            "trained_on": trained_on, "train_seconds": round(float(metrics["seconds"]), 1),
            "epochs": int(metrics["epochs"]), "selected_epoch": int(metrics["best_epoch"]),
            "selection": "best val mIoU (exact integer path) of the QAT-phase evaluations",
            "eval": emu,
            "eval_torch": exact if with_checkpoint else dict(
                exact, model=run.name, command=f"sentei eval --model RUN/{run.name}/best.pt --data CAMVID --split "
                                               f"{split} --backend torch (measured at bundling on the checkpoint, "
                                               f"which is not bundled)"),
            "miou_below_teacher_val": gap, "target_below_teacher_val": TARGET_GAP, "target_met": gap <= TARGET_GAP,
            "perf": {"command": f"sentei perf --model {name} --board {board} --clock-mhz {clock_mhz:g}",
                     "frames_per_s": fps, "kind": "modeled",
                     "perf_model": perf_model_record(),
                     "note": "the performance model at bundling; sentei perf gives today's figure"},
            **{k: v for k, v in summary.items() if k != "name"},  # layers, sparsity, weight bytes, spread
        }
        write_json(staging / files[4], info)
        entry = {"file": files[1], "kind": "model-file", **({"checkpoint": qat} if with_checkpoint else {}),
                 "description": description or describe_model(model, summary, cfg, teacher),
                 "metrics": {"val_miou": emu["miou"], "backend": "emu", "val_miou_teacher": teacher_val,
                             "pruned_layer_sparsity_min": info["min_pruned_sparsity"],
                             "total_sparsity": info["total_sparsity"], "weight_bytes": info["weight_bytes"],
                             "details": files[4]}}
        models[name] = entry
        if with_checkpoint:
            models[qat] = {"file": files[0], "kind": "torch-checkpoint",
                           "description": f"the quantization-aware checkpoint {name} was exported from (for sentei "
                                          f"compare and --backend torch)",
                           "metrics": {"val_miou": exact["miou"], "backend": "torch"}}
        else:
            (staging / files[0]).unlink()
            dropped = models.pop(qat, None)  # replacing a model that shipped its checkpoint
        if default or manifest.get("default") is None:
            manifest["default"] = name
        install(dest, staging, files if with_checkpoint else files[1:], manifest)
        if not with_checkpoint and dropped is not None:
            (dest / dropped["file"]).unlink(missing_ok=True)
    return entry


def describe_model(model, summary: dict, cfg: dict, teacher: str) -> str:
    """The one-line description of a compressed model, from its model file, its summary and its config."""
    layers = summary["layers"]
    pruned = [name for name, layer in layers.items() if layer["scheme"] != "dense"]
    dense = [name for name, layer in layers.items() if layer["scheme"] == "dense"]
    schemes = sorted({layers[name]["scheme"] for name in pruned})
    comp = settings(cfg.get("compress"), "compress", legacy=True)
    distilled = f"distilled from '{teacher}'" if comp["distill"]["enabled"] else "not distilled"
    wbits = sorted({layer["weight_bits"] for layer in layers.values()})
    return (f"{model.num_classes} classes, {model.input.height}x{model.input.width}: plain "
            f"{len(model.layers) - 1}-conv FCN, {'/'.join(schemes) or 'not'} pruned to >= "
            f"{100 * summary['min_pruned_sparsity']:.0f} % zeros in {', '.join(pruned) or 'no layer'} "
            f"({', '.join(dense) or 'none'} dense), {distilled}, "
            f"{'/'.join(map(str, wbits))}-bit weights and {comp['act_bits']}-bit activations")


def rename(old: str, new: str, dest: Path) -> None:
    """Rename bundled entry ``old`` to ``new``: its files (those named ``old.*``) and every reference."""
    manifest = bundled.manifest(dest / "models.json")
    models = manifest["models"]
    if old not in models:
        raise SenteiError(f"{old}: not bundled (bundled: {', '.join(sorted(models)) or 'none'})")
    if new in models:
        raise SenteiError(f"{new} is already bundled; rename or remove it first")
    entry = models.pop(old)
    details_name, info = details_of(dest, entry)

    def renamed(f: str) -> str:
        stem, dot, suffix = f.partition(".")
        return f"{new}.{suffix}" if stem == old and dot else f

    moves = {f: renamed(f) for f in owned_files(dest, entry) if renamed(f) != f}
    for f, g in moves.items():
        if (dest / g).exists():
            raise SenteiError(f"{dest / g} exists: it would be overwritten by {old}'s {f}; remove it first")
    entry = dict(entry, file=renamed(entry["file"]))
    if details_name:
        entry["metrics"] = dict(entry["metrics"], details=renamed(details_name))
        info.update({k: renamed(info[k]) for k in ("file", "config", "log") if k in info}, name=new)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=dest) as tmp:
        staging = Path(tmp)
        for f, g in moves.items():
            if f != details_name:
                shutil.copyfile(dest / f, staging / g)
        if details_name:
            write_json(staging / renamed(details_name), info)
        models[new] = entry
        quoted = (f"'{old}'", f"'{new}'")
        updates = {}  # other details JSONs that name it as their teacher
        for other, e in models.items():
            if e.get("checkpoint") == old:
                e["checkpoint"] = new
            e["description"] = e.get("description", "").replace(*quoted)
            name, other_info = details_of(dest, e) if other != new else (None, {})
            if other_info.get("teacher") == old:
                updates[name] = dict(other_info, teacher=new)
        if manifest.get("default") == old:
            manifest["default"] = new
        install(dest, staging, list(moves.values()), manifest)
    for name, other_info in updates.items():
        write_json(dest / name, other_info)
    for f in moves:
        (dest / f).unlink()


# ---------------------------------------------------------------------------------------
# the command line

def readme_row(name: str, entry: dict) -> str:
    m = entry["metrics"]
    command = (f"sentei eval --model {name} --data CAMVID --split val --backend {m['backend']}")
    return f"| `{name}` | {entry['description']} | **{100 * m['val_miou']:.2f}** | `{command}` |"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m sentei.training.bundle`` (its shared options as sentei's)."""
    from sentei.host.options import add_board_option, add_clock_option, add_data_option, add_split_option

    p = argparse.ArgumentParser(prog="python -m sentei.training.bundle", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for what in ("teacher", "model"):
        s = sub.add_parser(what, help=f"bundle a finished {'sentei train' if what == 'teacher' else 'sentei compress'}"
                                      f" run")
        s.add_argument("run", type=Path, help="the run's --out folder")
        s.add_argument("--name", required=True, help="the bundled name (what --model takes)")
        add_data_option(s, required=True)
        add_split_option(s)
        s.add_argument("--trained-on", required=True, help="the machine it trained on, e.g. '2-core CPU, torch 2.13'")
        s.add_argument("--description", default=None, help="the entry's one-line description (default: generated)")
        s.add_argument("--replace", action="store_true", help="replace a bundled entry of the same name")
        s.add_argument("--into", type=Path, default=bundled.BUNDLED, help="bundle folder (default: the package's)")
        if what == "model":
            s.add_argument("--teacher", required=True, help="the bundled teacher it was distilled from")
            s.add_argument("--default", action="store_true", help="make it the default --model")
            s.add_argument("--without-checkpoint", action="store_true",
                           help="measure the QAT checkpoint against the model file but do not ship it (no NAME-qat "
                                "entry; keeps the package small)")
            add_board_option(s)
            add_clock_option(s)
    r = sub.add_parser("rename", help="rename a bundled entry and every reference to it")
    r.add_argument("old")
    r.add_argument("new")
    r.add_argument("--into", type=Path, default=bundled.BUNDLED, help="bundle folder (default: the package's)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.into.is_dir():
            raise SenteiError(f"--into {args.into}: no such folder")
        if args.what == "rename":
            rename(args.old, args.new, args.into)
            print(f"renamed {args.old} -> {args.new} in {args.into}")
            return 0
        if args.what == "teacher":
            entry = bundle_teacher(args.run, args.name, args.data, args.trained_on, args.into, args.split,
                                   args.description, args.replace)
        else:
            entry = bundle_model(args.run, args.name, args.teacher, args.data, args.trained_on, args.into,
                                 args.split, args.default, args.description, args.board, args.clock_mhz,
                                 args.replace, with_checkpoint=not args.without_checkpoint)
    except SenteiError as exc:
        print(f"bundle: error: {exc}", file=sys.stderr)
        return 2
    print(f"bundled {args.name} in {args.into}: val mIoU {100 * entry['metrics']['val_miou']:.2f} "
          f"({entry['metrics']['backend']}); its README row:\n{readme_row(args.name, entry)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
