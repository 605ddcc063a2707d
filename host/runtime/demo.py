"""``sentei demo``: the shipped model on the bundled sample frames.

Writes a colour-coded label image and a blended overlay per frame, prints each frame's
latency (end to end, and the accelerator's part) and the mean FPS, and says when it ran in
emulation rather than on the FPGA.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sentei.errors import SenteiError

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sample_frames() -> list[Path]:
    """The bundled sample frames (``sentei/host/samples``), sorted by name."""
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if SAMPLES.is_dir() else []


@dataclass
class DemoResult:
    """What :func:`run_demo` did."""

    backend: str
    reason: str
    frames: list = field(default_factory=list)  # (name, total seconds, accelerator seconds, overlay path)

    @property
    def mean_fps(self) -> float:
        total = sum(t for _, t, _, _ in self.frames)
        return len(self.frames) / total if total > 0 else 0.0


def run_demo(out: str | Path, backend: str = "auto", model=None, images=None, alpha: float = 0.5,
             echo=print) -> DemoResult:
    """Segment the sample frames and write ``<name>_overlay.png`` and ``<name>_labels.png`` into ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    backend : str
        See :class:`sentei.host.runtime.segmenter.Segmenter`.
    model : optional
        A model, file or bundled name; None for the default bundled model.
    images : list of paths, optional
        Frames to use instead of the bundled samples.
    echo : callable
        Receives each line of the report.
    """
    from sentei.host.data import preprocess, visualize
    from sentei.host.modelfile import bundled
    from sentei.host.runtime.segmenter import Segmenter

    model = bundled.load_model(model)
    paths = [Path(p) for p in images] if images else sample_frames()
    if not paths:
        raise SenteiError(f"no sample frames in {SAMPLES} (a broken install?); pass images with --image")
    frames = preprocess.load_images(paths)
    out = Path(out)
    with Segmenter(model, backend=backend, quiet=True) as seg:
        result = DemoResult(seg.backend, seg.backend_reason)
        echo(f"model {model.name}: {model.input.width}x{model.input.height} input, {model.num_classes} classes; "
             f"backend {seg.backend} ({seg.backend_reason})")
        seg.segment(frames[0][1])  # one untimed frame: kernels compiled, thread pools warm, as a camera loop would
        for path, frame in frames:
            res = seg.segment(frame)
            overlay = out / f"{path.stem}_overlay.png"
            visualize.save_png(seg.blend(frame, res.labels, alpha), overlay)
            visualize.save_png(seg.colorize(res.labels), out / f"{path.stem}_labels.png")
            t = res.timing
            result.frames.append((path.name, t.total, t.accelerator, overlay))
            echo(f"{path.name}: {t.total * 1e3:8.1f} ms end to end, {t.accelerator * 1e3:8.1f} ms accelerator "
                 f"-> {overlay}")
    echo(f"{len(result.frames)} frames (after one untimed warm-up frame), mean {result.mean_fps:.2f} FPS "
         f"end to end on backend {result.backend}")
    if result.backend != "fpga":
        echo(f"ran in emulation on this machine ({result.backend}): the times are the emulation's, not the "
             f"FPGA's; on a PYNQ board with the sentei bitstream the same command runs on the accelerator")
    return result
