"""``sentei train | compress | export | compare``: the training half's subcommands.

Thin handlers: parse, build the configuration, call into :mod:`sentei.training.train` and
friends. PyTorch is imported inside the handlers only.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from sentei.atomic_write import write_json
from sentei.errors import SenteiError
from sentei.host.modelfile.schema import SCHEMES
from sentei.host.options import (
    add_board_option, add_clock_option, add_data_option, add_device_option, add_limit_option,
    add_model_option, add_out_folder_option, add_seed_option, add_simulate_option, add_size_option, add_split_option,
    add_synthetic_option, add_teacher_option, add_workers_option, int_at_least, parse_size)
from sentei.output_paths import check_output
from sentei.training.config import GROUP_LAYOUTS, RANKINGS, SCHEDULE, option

positive_int = int_at_least(1)

CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_TEACHER_CONFIG = CONFIGS / "camvid-fcn7.yaml"
DEFAULT_COMPRESS_CONFIG = CONFIGS / "camvid-fw90.yaml"


def _need_torch():
    import importlib.util

    for name in ("torch", "yaml", "tqdm"):
        if importlib.util.find_spec(name) is None:
            raise SenteiError(f"this command needs PyTorch ({name} is missing): pip install 'sentei[train]'")


def register(sub) -> None:
    p = sub.add_parser("train", help="train the dense teacher network (PyTorch)")
    _common(p, DEFAULT_TEACHER_CONFIG, "train")
    p.add_argument("--lr", type=option("train", "lr"), help="peak learning rate (AdamW)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compress", help="prune + distil + quantize a teacher checkpoint into a model file")
    _common(p, DEFAULT_COMPRESS_CONFIG, "compress")
    add_teacher_option(p)
    p.add_argument("--scheme", choices=SCHEMES,
                   help="pruning scheme; dense: no pruning, distillation and QAT only")
    p.add_argument("--sparsity", type=option("compress", "sparsity"),
                   help="target fraction of zero weights per pruned layer, in (0, 1) (not with nm: N:M fixes it "
                        "at 1 - N/M)")
    p.add_argument("--group-size", type=option("compress", "group_size"),
                   help="groupwise: the weights in a group that keep the same count (G)")
    p.add_argument("--group-layout", choices=GROUP_LAYOUTS,
                   help="groupwise: channels -- G consecutive input channels at one kernel position (Kang's); "
                        "flat (default) -- G consecutive weights of the flattened filter (ci, ky, kx)")
    p.add_argument("--ranking", choices=RANKINGS,
                   help="unstructured: global (default) -- one magnitude threshold over all pruned layers; layer -- "
                        "each layer at its own sparsity")
    p.add_argument("--nm", help="nm: N:M, e.g. 2:4 (sets --scheme nm)")
    distill = p.add_mutually_exclusive_group()
    distill.add_argument("--distill", dest="distill", action="store_true", default=None,
                         help="distil from the teacher")
    distill.add_argument("--no-distill", dest="distill", action="store_false", help="label loss only")
    p.add_argument("--weight-bits", type=option("compress", "weight_bits"),
                   help="weight width of every layer, conv1 and the classifier included (2..8; a config's "
                        "weight_bits: {default: 8, conv1: 8} sets it per layer)")
    p.add_argument("--act-bits", type=option("compress", "act_bits"), help="activation width (8..16)")
    p.add_argument("--prune-epochs", type=positive_int, help="epochs of pruning and fine-tuning (float)")
    p.add_argument("--qat-epochs", type=positive_int, help="epochs of quantization-aware training")
    p.add_argument("--schedule", choices=SCHEDULE["type"][0].values, help="sparsity schedule")
    _dense_option(p)
    _name_option(p)
    p.add_argument("--from", dest="init", metavar="CKPT",
                   help="continue from a quantization-aware checkpoint of sentei compress (a run's best.pt or a "
                        "bundled *-qat name): keep its masks, scales and bit widths, skip pruning, run "
                        "--qat-epochs more epochs (longer training, or fine-tuning on your own data)")
    p.add_argument("--ema", type=option("compress", "ema"), metavar="DECAY",
                   help="average the weights over the QAT phase (exponential moving average per step, e.g. 0.999): "
                        "the average is what is evaluated, selected and exported; 0: none")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("export", help="write the model file of a compressed (QAT) checkpoint, or a model "
                                      "file's network as ONNX (--onnx)")
    p.add_argument("checkpoint", nargs="?",
                   help="checkpoint of sentei compress (best.pt or last.pt) or a bundled *-qat name")
    p.add_argument("-o", "--output", help="model file to write (.sentei)")
    _name_option(p)
    p.add_argument("--onnx", metavar="FILE.onnx",
                   help="instead: write the network of --model as float ONNX (for trtexec on a Jetson)")
    add_model_option(p, "with --onnx: model file, bundled name or the teacher's checkpoint")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="QAT network vs integer reference engine, layer by layer")
    add_model_option(p)
    p.add_argument("--checkpoint", required=True,
                   help="the QAT checkpoint the model file was exported from (path or bundled name, "
                        "e.g. sentei-camvid-fw90-qat)")
    p.add_argument("--image", required=True, help="a frame (resized to the model's input)")
    p.add_argument("--exact", action="store_true",
                   help="compare the checkpoint's exact integer path instead of its fake-quantized forward: it "
                        "must match the model file bit for bit, and the exit status is 1 where it does not (the "
                        "first diverging layer is named)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sensitivity", help="val mIoU of the teacher with one layer at a time pruned filter-wise "
                                           "(inference only, or after a short fine-tune; cached, plotted)")
    add_teacher_option(p)
    add_data_option(p)
    add_synthetic_option(p)
    add_split_option(p)
    add_size_option(p)
    add_limit_option(p)
    p.add_argument("--sparsities", default=",".join(f"{s:g}" for s in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)),
                   help="comma-separated sparsities per layer (default %(default)s)")
    p.add_argument("--layers", help="comma-separated layers (default: every conv, the classifier included)")
    p.add_argument("--recalibrate", type=int_at_least(0), default=32, metavar="N",
                   help="re-estimate the batch-norm statistics from the pruned layer on after each pruning, on the "
                        "first N frames of --calibration-split (adaptive BN; default %(default)s; 0: as trained)")
    p.add_argument("--calibration-split", default="train",
                   help="split of --recalibrate's and --finetune-steps' frames (default train)")
    p.add_argument("--finetune-steps", type=int_at_least(0), default=0, metavar="N",
                   help="instead of --recalibrate, train each pruned copy N steps with distillation from the teacher "
                        "before it is scored (a drop then ranks layers as training does; the bundled teacher: 60 "
                        "steps, about 20 s a figure on a 2-core CPU; default 0: inference only)")
    p.add_argument("--finetune-crop", metavar="HxW",
                   help="crop of the fine-tune's frames (default half the --size each way, on the output grid)")
    p.add_argument("--finetune-lr", type=option("compress", "lr"), default=1e-3,
                   help="the fine-tune's AdamW learning rate (default %(default)g, compress's)")
    add_seed_option(p)  # the fine-tune's batches and crops
    add_out_folder_option(p)  # sensitivity.json, .md, .png
    p.add_argument("--cache", help="cache file (default OUT/sensitivity-cache.json)")
    add_device_option(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per batch (default 8)")
    add_workers_option(p)
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("design", help="per-layer K for a board and frame rate: genetic search over the "
                                      "sensitivity predictor and the performance model -> compression config")
    add_board_option(p)
    p.add_argument("--fps", required=True, type=float, help="frames/s the modeled accelerator must reach")
    add_clock_option(p)
    p.add_argument("--budget-miou", type=float, metavar="D",
                   help="choose the fastest design within D points of predicted mIoU loss (default: the most "
                        "accurate design that reaches --fps)")
    p.add_argument("--sensitivity", required=True, action="append",
                   help="sensitivity.json of sentei sensitivity; repeat it with tables of the same command at "
                        "other --seed to predict from the mean of their drops")
    _config_option(p, DEFAULT_COMPRESS_CONFIG)  # the compression config the design's is based on
    _dense_option(p)
    _name_option(p)
    add_seed_option(p)
    p.add_argument("--population", type=int_at_least(4), default=40)
    p.add_argument("--generations", type=positive_int, default=30)
    add_simulate_option(p)  # of the chosen design
    add_out_folder_option(p)  # design.yaml, .md, .png, .json
    p.set_defaults(func=cmd_design)


def _config_option(p, default: Path):
    p.add_argument("--config", default=str(default), help=f"YAML config (default {default.name})")


def _dense_option(p):
    """compress's and design's ``--dense``: layers kept dense, written as the config's ``overrides``."""
    p.add_argument("--dense", metavar="LAYER,LAYER,...",
                   help="comma-separated layers kept dense (not pruned), e.g. conv1,classifier; they replace the "
                        "config's overrides")


def _name_option(p):
    p.add_argument("--name", help="name of the model it writes (default: the config's or the checkpoint's; "
                                  "design: sentei-design-<board>-<fps>fps)")


def _common(p, default_config, section):
    _config_option(p, default_config)
    add_data_option(p)
    add_synthetic_option(p)
    p.add_argument("--out", required=True, help="run directory (checkpoints, log, config, metrics)")
    p.add_argument("--epochs", type=positive_int, help="epochs (compress: scales prune and QAT epochs together)")
    p.add_argument("--batch-size", type=option(section, "batch_size"), help="frames per batch (default: the config's)")
    p.add_argument("--seed", type=option(section, "seed"), help="seed of the random numbers it draws "
                                                                 "(default: the config's)")
    add_size_option(p)
    p.add_argument("--crop", help="train on random HxW crops, e.g. 240x320 (less compute per step; "
                                  "evaluation stays on whole frames)")
    add_limit_option(p)
    add_workers_option(p)
    add_device_option(p)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that already holds one, replacing its files")
    p.add_argument("--eval-every", type=option(section, "eval_every"), help="evaluate on val every N epochs")


def _base_config(args, section):
    """The config file's dict, checked as written (the options are checked where they are parsed or
    applied), with the common options applied."""
    from sentei.training.config import check_config, load_config, resolve_config

    cfg = load_config(args.config)  # a fresh dict from the YAML
    check_config(cfg, section, f"config {args.config}")
    cfg = resolve_config(cfg, section)  # every key of data and the section, at its default where none is given
    if args.data:
        cfg["data"]["root"] = str(args.data)
    if args.size:
        h, w = parse_size(args.size, "--size", minimum=8)
        cfg.setdefault("model", {}).setdefault("input", {}).update(height=h, width=w)
    if args.crop:
        cfg["data"]["augment"] = dict(cfg["data"]["augment"], crop=list(parse_size(args.crop, "--crop", minimum=8)))
    sec = cfg[section]
    for key, value in (("batch_size", args.batch_size), ("seed", args.seed), ("eval_every", args.eval_every)):
        if value is not None:
            sec[key] = value
    cfg["command"] = "sentei " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return cfg


RUN_MARKERS = ("last.pt", "best.pt", "teacher.pt", "metrics.json")  # trained state a slip would lose


def _check_run_dir(args, inputs=()) -> None:
    """``--out`` before any work: a folder that can be made or written, holding ``last.pt`` for
    ``--resume``; one that holds a run already is refused without ``--resume`` or ``--overwrite``
    (a slip would write over its checkpoints), and one that holds an input of the run (the
    teacher, ``--from``) is refused always."""
    from sentei.training.train import last_checkpoint

    check_output(args.out, "--out", folder=True)
    if args.resume and getattr(args, "overwrite", False):
        raise SenteiError("--resume and --overwrite: continue the run or replace it, not both; drop one")
    out = Path(args.out)
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        path = Path(given).resolve()
        if out.resolve() == path.parent or out.resolve() in path.parents:
            raise SenteiError(f"--out {args.out} holds the input {given}; the run would write over it "
                              f"(pass another --out)")
    if args.resume:
        last_checkpoint(args.out)
    elif not getattr(args, "overwrite", False) and out.is_dir():
        found = [name for name in RUN_MARKERS if (out / name).exists()] + \
            sorted(p.name for p in out.glob("*.sentei"))
        if found:
            raise SenteiError(f"--out {args.out} already holds a run ({', '.join(found[:3])}); pass --resume "
                              f"to continue it, --overwrite to replace it, or another --out")


def cmd_train(args) -> int:
    _need_torch()
    from sentei.training import train

    cfg = _base_config(args, "train")
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    if args.lr is not None:
        cfg["train"]["lr"] = args.lr
    _check_run_dir(args)
    with train.run_env(args.device) as env:
        data = train.load_data(cfg, env, args.workers, args.synthetic, args.limit)
        result = train.train_teacher(cfg, args.out, env, data, resume=args.resume)
    if env.main:
        print(f"teacher: best val mIoU {100 * result['val']['miou']:.2f} at epoch {result['best_epoch']} "
              f"-> {Path(args.out) / 'teacher.pt'}")
    return 0


def cmd_compress(args) -> int:
    _need_torch()
    from sentei.training import train

    cfg = _base_config(args, "compress")
    comp = cfg["compress"]
    for key, value in (("scheme", args.scheme), ("sparsity", args.sparsity), ("group_size", args.group_size),
                       ("group_layout", args.group_layout), ("ranking", args.ranking),
                       ("weight_bits", args.weight_bits), ("act_bits", args.act_bits), ("prune_epochs", args.prune_epochs), ("qat_epochs", args.qat_epochs), ("name", args.name),
                       ("ema", args.ema)):
        if value is not None:
            comp[key] = value
    for flag, value, scheme in (("--group-layout", args.group_layout, "groupwise"),
                                ("--ranking", args.ranking, "unstructured")):
        if value is not None and comp.get("scheme", "filterwise") != scheme:
            raise SenteiError(f"{flag} {value} with scheme {comp.get('scheme', 'filterwise')}: it is the {scheme} "
                              f"scheme's; drop {flag}, or pick --scheme {scheme}")
    if args.nm and args.scheme not in (None, "nm"):
        raise SenteiError(f"--nm with --scheme {args.scheme}: N:M is the nm scheme's; drop --nm, or use --scheme nm")
    if args.nm:
        try:
            comp["n"], comp["m"] = (int(v) for v in args.nm.split(":"))
        except ValueError:
            raise SenteiError(f"--nm {args.nm!r}: expected N:M, e.g. 2:4") from None
        if not 0 < comp["n"] < comp["m"]:
            raise SenteiError(f"--nm {args.nm}: needs 0 < N < M, e.g. 2:4")
        comp["scheme"] = "nm"
    if args.dense is not None:
        comp["overrides"] = {name.strip(): 0.0 for name in args.dense.split(",") if name.strip()}
    if args.distill is not None:
        comp.setdefault("distill", {})["enabled"] = args.distill
    if args.schedule:
        comp["schedule"] = {"type": args.schedule} if args.schedule == "oneshot" else \
            dict(comp.get("schedule") or {}, type="cubic")
    if args.epochs is not None:
        p, q = int(comp["prune_epochs"]), int(comp["qat_epochs"])
        comp["prune_epochs"] = max(1, round(args.epochs * p / (p + q)))
        comp["qat_epochs"] = max(1, args.epochs - comp["prune_epochs"])
    if args.init is not None:
        given = [flag for flag, value in (("--scheme", args.scheme), ("--sparsity", args.sparsity),
                                          ("--group-size", args.group_size),
                                          ("--group-layout", args.group_layout), ("--ranking", args.ranking),
                                          ("--nm", args.nm),
                                          ("--dense", args.dense), ("--schedule", args.schedule),
                                          ("--weight-bits", args.weight_bits), ("--act-bits", args.act_bits),
                                          ("--prune-epochs", args.prune_epochs), ("--epochs", args.epochs))
                 if value is not None]
        if given:
            raise SenteiError(f"{given[0]} with --from: the checkpoint already fixes its pruning and bit widths "
                              f"and is not pruned again; drop {given[0]} (set the length with --qat-epochs)")
    if comp.get("scheme") == "nm" and args.sparsity is not None:
        raise SenteiError(f"--sparsity {args.sparsity} with N:M: N:M fixes the sparsity at 1 - N/M (2:4: 50 %); "
                          f"drop --sparsity and pick --nm")
    train.check_compress(cfg, args.out)  # every key's rule (bit widths, ...: training/config.py)
    if comp.get("scheme") == "dense":  # quantization only: the pruning machinery at zero sparsity
        if args.sparsity not in (None, 0.0):
            raise SenteiError(f"--sparsity {args.sparsity} with --scheme dense: a dense model prunes nothing "
                              f"(drop --sparsity, or pick a pruning scheme)")
        comp["scheme"], comp["sparsity"] = "filterwise", 0.0
    elif not 0.0 < float(comp.get("sparsity", 0.9)) < 1.0:
        raise SenteiError(f"--sparsity {comp.get('sparsity')}: must lie in (0, 1), e.g. 0.9 "
                          f"(for quantization without pruning use --scheme dense)")
    _check_run_dir(args, inputs=(args.teacher, args.init))
    with train.run_env(args.device) as env:
        if env.device.type == "mps":  # known before hours of pruning, not at the first QAT evaluation
            raise SenteiError("--device mps: compress scores the exact integer network in float64, which MPS "
                              "lacks; use --device cpu (or a CUDA GPU)")
        result = _compress(args, cfg, train, env)
    if env.main:
        write_json(Path(args.out) / "metrics.json", result)
        print(f"compressed: val mIoU {100 * result['val']['miou']:.2f} (integer path), "
              f"pruned layers >= {100 * result['min_pruned_sparsity']:.1f} % zero, "
              f"{result['weight_bytes']} weight bytes -> {Path(args.out) / result['model_file']}")
    return 0


def _compress(args, cfg, train, env) -> dict:
    from sentei.training.engine import resolve_checkpoint

    args.teacher = resolve_checkpoint(args.teacher)  # a path, or a bundled name: --teacher teacher
    tck = train.load_checkpoint(args.teacher)
    t_input = tck["config"]["model"].get("input", {})
    if args.size is not None and parse_size(args.size, "--size") != (t_input.get("height"), t_input.get("width")):
        raise SenteiError("--size differs from the teacher's input size; compress at the teacher's size")
    init = resolve_checkpoint(args.init) if args.init is not None else None
    # the student takes the teacher's input size (compress() takes the model from the teacher or --from)
    data = train.load_data(dict(cfg, model=tck["config"]["model"]), env, args.workers, args.synthetic, args.limit)
    return train.compress(cfg, args.teacher, args.out, env, data, resume=args.resume, init_path=init)


def cmd_export(args) -> int:
    _need_torch()
    if args.onnx:
        if args.checkpoint or args.output:
            raise SenteiError("--onnx exports a model file's network (--model); drop the checkpoint and -o")
        from sentei.host.modelfile import schema, bundled
        from sentei.training import baseline

        path, kind = bundled.resolve(args.model)
        check_output(args.onnx, "--onnx", inputs=(path,))
        if kind == "torch-checkpoint":  # the dense teacher, for timing it with TensorRT too
            from sentei.training.engine import TorchEngine

            engine = TorchEngine(path, device="cpu")
            if engine.kind != "teacher":
                raise SenteiError(f"--onnx --model {args.model}: a compressed checkpoint; export its model file "
                                  f"first (sentei export CHECKPOINT -o M.sentei) and pass --model M.sentei")
            module, name, size, up = baseline.teacher_module(engine.net), engine.name, engine.input_size, \
                engine.net.upsample
        else:
            model = schema.load(path)
            module, name, size, up = baseline.build_module(model), model.name, \
                (model.input.height, model.input.width), model.output_upsample
        baseline.export_onnx(module, args.onnx, size)
        print(f"wrote {args.onnx}: {name} as float ONNX, input 1x3x{size[0]}x{size[1]} "
              f"pixels 0..255 -> logits at 1/{up}")
        return 0
    if not args.checkpoint or not args.output:
        raise SenteiError("export needs a checkpoint and -o OUT.sentei (or --onnx FILE.onnx)")
    from sentei.training import train
    from sentei.training.engine import resolve_checkpoint
    from sentei.training.quantize import QATNet

    path = resolve_checkpoint(args.checkpoint)  # a path, or a bundled name (sentei-camvid-fw90-qat)
    check_output(args.output, "-o", inputs=(path,))
    ckpt = train.load_checkpoint(path)
    net = train.build_from_checkpoint(ckpt)
    if not isinstance(net, QATNet):
        raise SenteiError(f"{args.checkpoint}: a {ckpt.get('kind')} checkpoint in float; only a checkpoint of "
                          f"sentei compress after quantization-aware training has the integers a model file "
                          f"holds (run sentei compress)")
    name = args.name or ckpt["compress"].get("name") or ckpt["config"].get("name") or Path(args.output).stem
    model = train.export_checkpoint(ckpt, net, args.output, name)
    print(f"wrote {args.output}: {len(model.layers)} layers, input {model.input.height}x{model.input.width}")
    return 0


def cmd_compare(args) -> int:
    _need_torch()
    from sentei.host.data import preprocess
    from sentei.host.modelfile import bundled
    from sentei.training import compare, train
    from sentei.training.quantize import QATNet

    from sentei.training.engine import resolve_checkpoint

    model = bundled.load_model(args.model)
    net = train.build_from_checkpoint(train.load_checkpoint(resolve_checkpoint(args.checkpoint)))
    if not isinstance(net, QATNet):
        raise SenteiError(f"{args.checkpoint}: not a quantization-aware checkpoint (use one from sentei compress)")
    frame = preprocess.prepare_frame(preprocess.load_image(args.image), model.input.height, model.input.width)
    rows, agree = compare.compare(net, model, frame, exact=args.exact)
    print(f"{'exact integer path' if args.exact else 'QAT (fake-quantized) forward'} of {args.checkpoint} "
          f"vs reference engine on {model.name}, {args.image}:")
    print(compare.format_rows(rows, agree))
    diverged = compare.first_divergence(rows)
    if args.exact and (diverged is not None or agree < 1.0):  # the exact path must be the model file's
        where = f"first divergence at {diverged.name}" if diverged is not None else "every layer agrees"
        print(f"sentei: compare: the exact integer path of {args.checkpoint} is not bit-exact with {model.name} "
              f"({where}, labels agree on {100 * agree:.2f} %): the model file was not exported from this "
              f"checkpoint, or the export is wrong", file=sys.stderr)
        return 1
    return 0


def cmd_sensitivity(args) -> int:
    _need_torch()
    from sentei.training import sensitivity

    check_output(args.out, "--out", folder=True)
    if args.cache:
        check_output(args.cache, "--cache")
    size = parse_size(args.size, "--size", minimum=8) if args.size else None
    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    from sentei.training import train

    with train.run_env(args.device) as env:  # --device as sentei train and compress resolve it
        sensitivity.run(args.teacher, args.out, data_root=args.data, synthetic=args.synthetic, split=args.split,
                        size=size, limit=args.limit, sparsities=sensitivity.parse_sparsities(args.sparsities),
                        layers=layers, cache_path=args.cache, device=env.device, batch_size=args.batch_size,
                        workers=args.workers, recalibrate=args.recalibrate, calibration_split=args.calibration_split,
                        finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr, seed=args.seed,
                        finetune_crop=parse_size(args.finetune_crop, "--finetune-crop", minimum=8)
                        if args.finetune_crop else None)
    return 0


def cmd_design(args) -> int:
    _need_torch()
    from sentei.training import design

    check_output(args.out, "--out", folder=True)
    if args.budget_miou is not None and not args.budget_miou >= 0:
        raise SenteiError(f"--budget-miou {args.budget_miou:g}: a loss in mIoU points, 0 or more, e.g. 1.5")
    dense = [n.strip() for n in args.dense.split(",") if n.strip()] if args.dense else ()
    design.run(args.sensitivity, args.board, args.fps, args.out, base_config=args.config, clock_mhz=args.clock_mhz,
               budget_miou=args.budget_miou, seed=args.seed, population=args.population,
               generations=args.generations, dense=dense, name=args.name, simulate=args.simulate,
               command="sentei " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    return 0
