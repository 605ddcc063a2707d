"""``sentei overlay codegen | csim`` and ``sentei perf``: the accelerator's command line.

Registered by sentei.cli (``sentei.overlay.commands`` in COMMAND_MODULES). This is the only
module of overlay/ with argparse: each handler parses its options and calls a library
function a notebook can call as well -- :func:`sentei.overlay.codegen.generate`,
:func:`sentei.overlay.csim.run_csim`, :func:`sentei.overlay.report.perf_report` and
:func:`~sentei.overlay.report.format_report`. The options the commands share are defined once:
``--model``, ``--clock-mhz``, ``--json`` and the others that other commands take as well in
:mod:`sentei.host.options`; ``--lanes`` and codegen's and csim's optional ``--board`` below.
Registration imports the performance model's defaults for the help texts (numpy), never the
generator, the simulator or torch; the handlers import the rest.
"""
from __future__ import annotations

import contextlib

from sentei.errors import SenteiError
from sentei.host.options import (
    add_board_option, add_clock_option, add_image_option, add_json_option, add_model_option, add_seed_option,
    add_simulate_option, int_at_least, int_range)
from sentei.output_paths import check_json_out, check_output


def register(sub) -> None:
    p = sub.add_parser("overlay", help="the accelerator's sources: code generation and C-simulation")
    osub = p.add_subparsers(dest="overlay_command", metavar="SUBCOMMAND")
    p.set_defaults(func=None)  # no subcommand: sentei.cli.main says so in one line

    c = osub.add_parser("codegen", help="write the HLS network header (layer configs, K, lanes) for a model")
    _design_args(c)
    c.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default build/hls/<model name>); never inside the package's sources")
    c.add_argument("--fifo-depths", choices=("simulated", "rule"), default="simulated",
                   help="stream depths from the clock-level simulation of the pipeline (default; needs g++) or "
                        "from the geometry's rules without simulating")
    c.set_defaults(func=cmd_codegen)

    s = osub.add_parser("csim", help="C-simulate the HLS sources with g++ and compare with the reference engine "
                                     "bit for bit")
    _design_args(s)
    s.add_argument("--frames", type=int_range(1, MAX_CSIM_FRAMES), default=None, metavar="N",
                   help=f"number of full-range random frames, 1 to {MAX_CSIM_FRAMES}, all in one start "
                        f"(default 1 when no --image is given)")
    add_image_option(s)
    s.add_argument("--workdir", "--keep", dest="workdir", default=None, metavar="DIR",
                   help="keep the golden vectors and the testbench report here (default: a temporary folder)")
    add_json_option(s)
    s.set_defaults(func=cmd_csim)

    _register_perf(sub)


def _register_perf(sub) -> None:
    """``sentei perf``: the performance report of a model on a board."""
    from sentei.overlay.perf import CEILINGS, DEFAULT_DSP_FRACTION

    p = sub.add_parser("perf", help="modeled cycles, frames/s, DSP/BRAM/LUT of a model on a board")
    add_model_option(p)
    add_board_option(p)
    add_clock_option(p)
    _lanes_option(p)
    p.add_argument("--dsp-fraction", type=float, default=None,
                   help=f"share of the board's DSP48s the allocator may use (default {DEFAULT_DSP_FRACTION}); "
                        f"the same as --ceiling dsp=SHARE")
    p.add_argument("--ceiling", action="append", default=[], metavar="RESOURCE=SHARE",
                   help="utilisation ceiling the allocator respects, e.g. lut=0.7 (repeatable; defaults: "
                        + ", ".join(f"{k}={v:g}" for k, v in CEILINGS.items()) + ")")
    add_seed_option(p)  # of the hypothetical unstructured pruning (its default is perf.UNSTRUCTURED_SEED's, 0)
    add_simulate_option(p)  # and the FIFO depths codegen writes
    p.add_argument("--frames", type=int_at_least(2), default=3,
                   help="frames in one start for --simulate, at least 2: the interval is frame to frame (default 3)")
    add_json_option(p)
    p.set_defaults(func=cmd_perf)


MAX_CSIM_FRAMES = 64  # frames one C-simulation start takes (its buffers hold them all: ~0.5 MB a CamVid frame)

# ---------------------------------------------------------------------------------------
# the options the commands share, each defined once

PLANS_HELP = ("a plan per layer: LANES (sparse engine), sLANES[wWc][pQ[a]][b|h][r] (Q pixels a lane, a: adjacent, "
              "b: window copies in BRAM, h: one window shared by the lanes, r: line-buffer rows in DDR) or dLANES[wWc][x][r] (dense engine, Wc channels "
              "a chunk, x: two lanes' products a DSP48E2), e.g. d8w3,d8w16,64,32,64,64,64,d1w8; lanes need not divide Cout (default: the performance "
              "model's allocation for --board; without a board, the sparse engine with the largest divisor of "
              "Cout <= 8)")


def _board_option(p, default: str | None, help: str) -> None:
    p.add_argument("--board", default=default, help=help)


def _lanes_option(p) -> None:
    """``--lanes PLAN,PLAN,...``, read by :func:`parse_lanes`."""
    p.add_argument("--lanes", default=None, metavar="PLAN,PLAN,...", help=PLANS_HELP)


def _design_args(p) -> None:
    """codegen's and csim's: the model and the design it is generated as."""
    add_model_option(p)
    _lanes_option(p)
    _board_option(p, None, "board whose resources the lane allocation fits (see `sentei perf`)")
    add_clock_option(p)  # of the lane allocation; needs --board


def parse_lanes(text: str | None) -> list | None:
    """``--lanes '8,d4w32,s16w2'`` -> a :class:`~sentei.overlay.perf.LayerPlan` per layer (None:
    the allocator chooses)."""
    from sentei.overlay.perf import as_plan

    if not text:
        return None
    try:
        return [as_plan(v) for v in text.split(",") if v.strip()]
    except SenteiError as exc:
        raise SenteiError(f"--lanes {text!r}: {exc}") from None


def parse_ceilings(items) -> dict[str, float]:
    """``--ceiling lut=0.7 ...`` -> ``{"lut": 0.7}``; one-line errors for unknown keys or bad numbers."""
    from sentei.overlay.perf import CEILINGS

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key not in CEILINGS:
            raise SenteiError(f"--ceiling {item!r}: the resource must be one of {', '.join(CEILINGS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise SenteiError(f"--ceiling {item!r}: expected RESOURCE=SHARE with a share in (0, 1], "
                              f"e.g. lut=0.7") from None
    return out


# ---------------------------------------------------------------------------------------
# the handlers


def models_that_fit(board, ceilings: dict | None = None, dsp_fraction: float | None = None,
                    skip: str | None = None) -> list[str]:
    """The bundled model files (but ``skip``) that :func:`~sentei.overlay.perf.allocate` fits on
    ``board`` within the same ceilings, most accurate (val mIoU) first."""
    from sentei.host.modelfile import bundled
    from sentei.overlay import perf

    fitting = []
    for name, entry in bundled.bundled_models().items():
        if entry.get("kind") != "model-file" or name == skip:
            continue
        try:
            perf.allocate(bundled.load_model(name), board, None, dsp_fraction, ceilings)
        except perf.DoesNotFit:
            continue
        fitting.append((-entry.get("metrics", {}).get("val_miou", 0.0), name))
    return [name for _, name in sorted(fitting)]


@contextlib.contextmanager
def naming_models_that_fit(model, board, ceilings: dict | None = None, dsp_fraction: float | None = None):
    """A model too big for ``board`` (:class:`~sentei.overlay.perf.DoesNotFit`) fails with the same
    one line plus the bundled models that do fit it, so that the user on a small board has a next step."""
    from sentei.overlay import perf

    try:
        yield
    except perf.DoesNotFit as exc:
        names = models_that_fit(board, ceilings, dsp_fraction, skip=model.name)
        if not names:
            raise
        board_name = perf.as_board(board).name
        raise SenteiError(f"{exc}; bundled models that fit {board_name}: "
                          + ", ".join(f"--model {name}" for name in names)) from exc


def _check_clock(args) -> None:
    if args.clock_mhz is not None and args.board is None:
        raise SenteiError(f"--clock-mhz {args.clock_mhz:g} needs --board (the clock only steers the board's "
                          f"lane allocation)")


def cmd_codegen(args) -> int:
    from sentei.host.modelfile.bundled import load_model
    from sentei.overlay import codegen

    _check_clock(args)
    if args.out is not None:
        check_output(args.out, "--out", folder=True)
    model = load_model(args.model)
    with naming_models_that_fit(model, args.board):
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
    from sentei.host.modelfile.bundled import load_model, model_file
    from sentei.overlay.csim import frames_for, run_csim

    _check_clock(args)
    check_json_out(args, model_file(args.model), *args.image)
    if args.workdir is not None:
        check_output(args.workdir, "--workdir", folder=True)
    model = load_model(args.model)
    frames = []
    if args.image:
        from sentei.host.data.preprocess import load_image, prepare_frame

        frames = [prepare_frame(load_image(p), model.input.height, model.input.width) for p in args.image]
    if args.frames is not None:
        frames += frames_for(model, args.frames)
    if not frames:
        frames = 1
    with naming_models_that_fit(model, args.board):
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


def cmd_perf(args) -> int:
    """Handler of ``sentei perf``: :func:`~sentei.overlay.report.perf_report`, printed and written."""
    from sentei.atomic_write import write_json
    from sentei.host.modelfile import bundled
    from sentei.overlay.perf import load_board
    from sentei.overlay.report import format_report, perf_report

    check_json_out(args, bundled.model_file(args.model))
    ceilings = parse_ceilings(args.ceiling)
    if args.dsp_fraction is not None and "dsp" in ceilings:
        raise SenteiError(f"--dsp-fraction {args.dsp_fraction:g} and --ceiling dsp={ceilings['dsp']:g} both set "
                          f"the DSP48 share; pass one of them")
    board = load_board(args.board)
    model = bundled.load_model(args.model)
    lanes = parse_lanes(args.lanes)
    clock = board.default_clock_mhz if args.clock_mhz is None else args.clock_mhz
    with naming_models_that_fit(model, board, ceilings, args.dsp_fraction):
        report = perf_report(model, board, clock, lanes=lanes, dsp_fraction=args.dsp_fraction, seed=args.seed,
                             ceilings=ceilings, simulate=args.simulate, frames=args.frames)
    print(format_report(report))
    if args.json_out:
        write_json(args.json_out, report)
    return 0
