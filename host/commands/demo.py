"""``sentei demo`` and ``sentei camera`` (registered by :mod:`sentei.cli`).

Nothing heavy is imported here: OpenCV, pynq and numba are imported by the handlers.
"""
from __future__ import annotations

from sentei.host.engine_registry import backend_option
from sentei.host.options import add_alpha_option, add_image_option, add_model_option
from sentei.host.runtime.segmenter import FITS


def register(sub) -> None:
    """Add ``demo`` and ``camera`` to the ``sentei`` subcommands."""
    p = sub.add_parser("demo", help="the shipped model on the bundled sample frames: overlays, latency, FPS",
                       description="Segment the bundled CamVid sample frames with the shipped model, write "
                                   "<frame>_overlay.png and <frame>_labels.png, print per-frame latency and "
                                   "the mean FPS. On a PC it runs the emulated overlay and says so.")
    p.add_argument("--backend", **backend_option())
    p.add_argument("--out", default="sentei-demo", metavar="DIR", help="output folder (default ./sentei-demo)")
    add_model_option(p)
    add_image_option(p)  # instead of the bundled samples
    add_alpha_option(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("camera", help="live segmentation of a camera, stream or video file",
                       description="Read frames from a USB camera, an rtsp/http(s) stream or a video file, "
                                   "segment them on the accelerator, and show the overlay with its FPS in "
                                   "a window or write it to a video file (headless boards). The file is "
                                   "complete and playable however the run ends (end of video, camera "
                                   "unplugged, --frames, Ctrl-C).")
    p.add_argument("--source", default="0",
                   help="camera index (0 = /dev/video0) or device path (/dev/video2, /dev/v4l/by-id/...), "
                        "rtsp:// or http(s):// URL, or a video file (default 0)")
    p.add_argument("--backend", **backend_option())
    add_model_option(p)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--display", action="store_true", help="show the overlay in a window (q or Esc quits)")
    out.add_argument("--out", default=None, metavar="VIDEO", help="write the overlay video (.mp4, .avi or .mkv)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the written video (default: the source's for a file, "
                        "the measured rate for a live source)")
    p.add_argument("--fit", default="stretch", choices=FITS,
                   help="bring frames of another aspect ratio to the model's input by stretching or with borders")
    add_alpha_option(p)
    p.set_defaults(func=cmd_camera)


def cmd_demo(args) -> int:
    from sentei.output_paths import check_output
    from sentei.host.runtime.demo import run_demo

    check_output(args.out, "--out", folder=True)
    run_demo(args.out, backend=args.backend, model=args.model, images=args.image, alpha=args.alpha)
    return 0


def cmd_camera(args) -> int:
    """Exit status 0 when the run ended normally (end of file, --frames, Ctrl-C, the window
    closed), 1 when a live source vanished (the video written so far is still complete)."""
    import sys

    from sentei.errors import SenteiError
    from sentei.host.runtime import camera
    from sentei.host.modelfile import bundled
    from sentei.host.runtime.segmenter import Segmenter

    if args.frames is not None and args.frames < 1:
        raise SenteiError(f"--frames {args.frames} must be at least 1")
    camera.check_fps(args.fps)
    source = camera.parse_source(args.source)
    if args.out is not None:
        camera.check_video_out(args.out, source)
    model = bundled.load_model(args.model)
    reader = camera.FrameReader(source)
    try:
        if args.display:
            sink = camera.WindowSink(f"sentei: {source.label}")
        else:
            fps = args.fps or (reader.fps if not source.live else None)
            sink = camera.VideoSink(args.out, fps=fps)
        with Segmenter(model, backend=args.backend, fit=args.fit) as seg:
            print(f"segmenting {source.label} with {model.name} on backend {seg.backend}; Ctrl-C stops",
                  file=sys.stderr)
            report = camera.run_live(seg, reader, [sink], max_frames=args.frames, alpha=args.alpha)
    finally:
        reader.close()
    if report.frames == 0 and reader.end_reason is not None:
        raise SenteiError(f"no frame could be read from {source.label}: pass a video file OpenCV can decode "
                          f"(mp4, avi, mkv), a working camera or a live stream")
    written = f"; wrote {', '.join(str(p) for p in report.outputs)}" if report.outputs else ""
    print(f"{report.reason}: {report.frames} frames in {report.seconds:.1f} s, "
          f"{report.fps:.2f} FPS on backend {seg.backend}{written}")
    return 1 if report.lost else 0
