"""``sentei overlay codegen | csim``: generate the HLS network header, C-simulate the accelerator.

Registered by sentei.cli (``sentei.overlay.commands`` in COMMAND_MODULES). Nothing heavy is
imported at registration: the handlers import numpy and the generator.
"""
from __future__ import annotations

from sentei.errors import SenteiError
from sentei.host.options import int_range
from sentei.output_paths import check_json_out, check_output


def register(sub) -> None:
    p = sub.add_parser("overlay", help="the accelerator's sources: code generation and C-simulation")
    osub = p.add_subparsers(dest="overlay_command", metavar="SUBCOMMAND")
    p.set_defaults(func=None)  # no subcommand: sentei.cli.main says so in one line

    c = osub.add_parser("codegen", help="write the HLS network header (layer configs, K, lanes) for a model")
    _model_args(c)
    c.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default build/hls/<model name>); never inside the package's sources")
    c.add_argument("--fifo-depths", choices=("simulated", "rule"), default="simulated",
                   help="stream depths from the clock-level simulation of the pipeline (default; needs g++) or "
                        "from the geometry's rules without simulating")
    c.set_defaults(func=cmd_codegen)

    s = osub.add_parser("csim", help="C-simulate the HLS sources with g++ and compare with the reference engine "
                                     "bit for bit")
    _model_args(s)
    s.add_argument("--frames", type=int_range(1, MAX_CSIM_FRAMES), default=None, metavar="N",
                   help=f"number of full-range random frames, 1 to {MAX_CSIM_FRAMES}, all in one start "
                        f"(default 1 when no --image is given)")
    s.add_argument("--image", action="append", default=[], metavar="IMAGE",
                   help="an image file to run (resized to the model's input); repeatable")
    s.add_argument("--workdir", "--keep", dest="workdir", default=None, metavar="DIR",
                   help="keep the golden vectors and the testbench report here (default: a temporary folder)")
    s.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the report as JSON")
    s.set_defaults(func=cmd_csim)


MAX_CSIM_FRAMES = 64  # frames one C-simulation start takes (its buffers hold them all: ~0.5 MB a CamVid frame)


def _model_args(p) -> None:
    p.add_argument("--model", default=None, help="model file or bundled name (default: the bundled model)")
    p.add_argument("--lanes", default=None, metavar="PLAN,PLAN,...",
                   help="engine and lanes per layer: LANES (sparse), sLANES[wWc] or dLANES[wWc] (dense), e.g. "
                        "d8w3,8,64 (default: the performance model's allocation for --board, else the sparse "
                        "engine with the largest divisor of Cout <= 8)")
    p.add_argument("--board", default=None, help="board whose resources the lane allocation fits (see `sentei perf`)")
    p.add_argument("--clock-mhz", type=float, default=None, help="target clock for the lane allocation")


def _check_clock(args) -> None:
    if args.clock_mhz is not None and args.board is None:
        raise SenteiError(f"--clock-mhz {args.clock_mhz:g} needs --board (the clock only steers the board's "
                          f"lane allocation)")


def cmd_codegen(args) -> int:
    from sentei.host.registry import load_model
    from sentei.overlay import codegen
    from sentei.overlay.perf import parse_lanes

    _check_clock(args)
    if args.out is not None:
        check_output(args.out, "--out", folder=True)
    model = load_model(args.model)
    facts, paths = codegen.generate(model, args.out, parse_lanes(args.lanes), args.board, args.clock_mhz,
                                    args.fifo_depths)
    print(f"network of {model.name}: {len(facts.layers)} layers, signature {facts.signature()}")
    print(f"{'layer':<14}{'Cin':>5}{'Cout':>6}{'k':>3}{'s':>3}{'d':>3}{'p':>3}{'K':>6}{'engine':>8}{'lanes':>7}"
          f"{'Wc':>5}{'out':>10}{'iter/frame':>13}")
    for f in facts.layers:
        print(f"{f.name:<14}{f.cin:>5}{f.cout:>6}{f.kernel:>3}{f.stride:>3}{f.dilation:>3}{f.padding:>3}"
              f"{f.k_nonzero:>6}{f.engine:>8}{f.lanes:>7}{dict(f.geometry)['chunk_channels']:>5}"
              f"{f'{f.out_height}x{f.out_width}':>10}{f.iterations:>13}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def cmd_csim(args) -> int:
    from sentei.host.registry import load_model, model_file
    from sentei.overlay.csim import frames_for, run_csim
    from sentei.overlay.perf import parse_lanes

    _check_clock(args)
    check_json_out(args, model_file(args.model), *args.image)
    if args.workdir is not None:
        check_output(args.workdir, "--workdir", folder=True)
    model = load_model(args.model)
    frames = []
    if args.image:
        from sentei.host.preprocess import load_image, prepare_frame

        frames = [prepare_frame(load_image(p), model.input.height, model.input.width) for p in args.image]
    if args.frames is not None:
        frames += frames_for(model, args.frames)
    if not frames:
        frames = 1
    report = run_csim(model, frames, parse_lanes(args.lanes), args.workdir, board=args.board,
                      clock_mhz=args.clock_mhz)
    print(f"C-simulation of {model.name}: {report.frames} frame(s), "
          f"build {report.build_seconds:.1f} s{' (cached)' if report.build_seconds == 0 else ''}, "
          f"reference {report.reference_seconds:.1f} s, csim {report.run_seconds:.1f} s")
    print(f"{'layer':<14}{'engine':>7}{'lanes':>6}{'iterations':>14}{'expected':>14}{'dense':>14}{'skipped':>9}")
    for n, name in enumerate(layer.name for layer in model.layers):
        got, exp = report.iterations[n], report.expected_iterations[n] * report.frames
        dense = report.dense_iterations[n] * report.frames
        engine = report.engines[n] if report.engines else "sparse"
        print(f"{name:<14}{engine:>7}{report.lanes[n]:>6}{got:>14}{exp:>14}{dense:>14}{1 - got / dense:>9.1%}")
    for m in report.mismatches:
        print(f"MISMATCH {m}")
    if report.status_load or any(report.status_run):
        print(f"accelerator status: load {report.status_load}, run {report.status_run}")
    if args.json_out:
        from sentei.atomic_write import write_json

        write_json(args.json_out, report.to_json())
    ok = report.bit_exact and report.iterations_ok
    verdict = "bit-exact" if report.bit_exact else f"NOT bit-exact ({report.errors} values differ)"
    if not report.iterations_ok:
        verdict += "; iteration counts differ from Ho*Wo*(Cout/P)*K"
    print(f"result: {verdict}")
    return 0 if ok else 1

