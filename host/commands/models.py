"""``sentei models | info | segment | eval``: the foundation's subcommands (no torch needed,
except ``eval --backend torch``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sentei.atomic_write import write_json
from sentei.errors import SenteiError
from sentei.host.engine_registry import ENGINE_BACKENDS, SEGMENTER_BACKENDS, backend_option
from sentei.host.options import (
    add_alpha_option, add_data_option, add_json_option, add_limit_option, add_model_option, add_out_folder_option,
    add_split_option)
from sentei.host.modelfile.bundled import model_file
from sentei.output_paths import check_json_out, check_output


def register(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models and their metrics")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="layers, shapes, K per layer, sparsity, weight memory, MACs skipped")
    add_model_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("segment", help="segment images: label map PNG + colour overlay PNG per image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_option(p)
    add_out_folder_option(p)
    p.add_argument("--backend", **backend_option(SEGMENTER_BACKENDS))
    add_alpha_option(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("eval", help="mIoU and per-class IoU over a CamVid split")
    add_model_option(p, "model file, checkpoint (with --backend torch), or bundled name")
    add_data_option(p, required=True)
    add_split_option(p)
    # every engine; which ones this machine can run is decided by the Segmenter, auto resolved by it
    p.add_argument("--backend", **backend_option(ENGINE_BACKENDS))
    add_limit_option(p)
    p.add_argument("--agree-with", metavar="CHECKPOINT", default=None,
                   help="also label every frame with this quantization-aware checkpoint's fake-quantized forward "
                        "(what QAT trained; e.g. sentei-camvid-fw90-qat) and report the share of pixels whose "
                        "labels agree with --model's (needs PyTorch)")
    add_json_option(p)
    p.set_defaults(func=cmd_eval)


# ---------------------------------------------------------------------------------------


def cmd_models(args) -> int:
    from sentei.host.modelfile import bundled

    models = bundled.bundled_models()
    if not models:
        print("no trained model is bundled with this install (pass --model PATH to any command)")
        return 0
    default = bundled.default_model_name()
    for name, entry in models.items():
        mark = " (default)" if name == default else ""
        print(f"{name}{mark}  [{entry['kind']}]  {entry.get('description', '')}")
        for key, value in (entry.get("metrics") or {}).items():
            print(f"    {key}: {value}")
    return 0


def cmd_info(args) -> int:
    from sentei.host.modelfile import schema, bundled

    check_json_out(args, model_file(args.model))
    model = bundled.load_model(args.model)
    facts = schema.describe(model)
    print(f"model {facts['name']}: input {facts['input'][1]}x{facts['input'][2]} RGB, "
          f"{facts['num_classes']} classes, logits at 1/{facts['upsample']}")
    head = (f"{'layer':<12}{'k':>2}{'s':>3}{'d':>3}{'out CxHxW':>15}{'K':>6}{'/Cin*k*k':>9}"
            f"{'sparsity':>9}{'nnz min-max':>12}{'W/A bits':>9}{'packed B':>10}{'dense B':>9}{'MACs skip':>11}"
            f"  {'scheme'}")
    print(head)
    for r in facts["layers"]:
        out = "x".join(str(v) for v in r["out"])
        print(f"{r['name']:<12}{r['kernel']:>2}{r['stride']:>3}{r['dilation']:>3}{out:>15}{r['k_nonzero']:>6}"
              f"{r['fan_in']:>9}{r['sparsity']:>9.1%}{str(r['nnz_min']) + '-' + str(r['nnz_max']):>12}"
              f"{str(r['weight_bits']) + '/' + str(r['out_bits']):>9}{r['weight_bytes_packed']:>10}"
              f"{r['weight_bytes_dense']:>9}{r['macs_skipped'] / max(r['macs_dense'], 1):>11.1%}  {r['scheme']}")
    t = facts["totals"]
    print(f"total: {t['weights_nonzero']} of {t['weights_dense']} weights nonzero (sparsity {t['sparsity']:.1%}); "
          f"weight memory {t['weight_bytes_packed']} B packed vs {t['weight_bytes_dense']} B dense; "
          f"{t['macs_executed'] / 1e6:.1f} M of {t['macs_dense'] / 1e6:.1f} M MACs executed "
          f"({t['macs_skipped'] / max(t['macs_dense'], 1):.1%} skipped); weight blob {t['blob_bytes']} B")
    if args.json_out:
        write_json(args.json_out, facts)
    return 0


def cmd_segment(args) -> int:
    from sentei.host.data import preprocess, visualize
    from sentei.host.modelfile import bundled
    from sentei.host.runtime.segmenter import Segmenter

    check_output(args.out, "--out", folder=True)
    out = Path(args.out)
    outputs = {Path(p): (out / f"{Path(p).stem}_labels.png", out / f"{Path(p).stem}_overlay.png")
               for p in args.images}
    check_not_inputs([o for pair in outputs.values() for o in pair], [*args.images, model_file(args.model)])
    model = bundled.load_model(args.model)
    frames = preprocess.iter_images(args.images)  # every header checked before any output; one frame in memory
    written: list[Path] = []  # new files of this run: removed if a later frame fails (no partial set)
    try:
        # quiet, as in sentei eval: the backend (and, with auto, why) is in the summary line, so an error
        # about an image later is the only line on stderr
        with Segmenter(model, backend=args.backend, quiet=True) as seg:
            times = []
            for path, frame in frames:
                res = seg.segment(frame)
                times.append(res.timing.total)
                labels_png, overlay_png = outputs[path]
                for target, image in ((labels_png, res.labels),
                                      (overlay_png, visualize.blend(frame, res.labels, model.class_colors, args.alpha))):
                    existed = target.exists()
                    visualize.save_png(image, target)
                    if not existed:
                        written.append(target)
                print(f"{safe_text(path.name)}: {res.timing.total * 1e3:.1f} ms (accelerator "
                      f"{res.timing.accelerator * 1e3:.1f} ms) -> {safe_text(labels_png)}, {safe_text(overlay_png)}")
            # when the Segmenter would have said it: auto, or a backend other than the one asked for
            why = f" ({seg.backend_reason})" if args.backend == "auto" or seg.backend != args.backend else ""
            print(f"{len(times)} frame(s) on backend {seg.backend}{why}: mean {np.mean(times) * 1e3:.1f} ms/frame")
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        raise
    return 0


def check_not_inputs(outputs, inputs) -> None:
    """Refuse, before any work, an output that is one of the inputs (``a.jpg a_labels.png
    --out same_dir``: the second input's name is the first's output)."""
    import os

    for out in outputs:
        for other in inputs:
            if other is None or str(other) == "":
                continue
            same = out.exists() and Path(other).exists() and os.path.samefile(out, other)
            if same or out.resolve() == Path(other).resolve():
                raise SenteiError(f"{safe_text(out)} would be written over the input {safe_text(other)}; "
                                  f"pass another --out folder or rename the input")


def safe_text(value) -> str:
    """``value`` as text fit for a terminal: control characters (escape sequences, newlines,
    carriage returns) shown escaped, never sent to the terminal raw."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def cmd_eval(args) -> int:
    from sentei.host.runtime import evaluation

    check_json_out(args, model_file(args.model))
    result = evaluation.evaluate(args.model, args.data, args.split, args.backend, limit=args.limit,
                                 agree_with=args.agree_with)
    print(evaluation.summary(result))
    if args.json_out:
        write_json(args.json_out, result)
    return 0
