"""How the torch baseline's memory layout moves its speed on this CPU (or GPU).

``sentei bench --backend torch`` runs the model file's network with weights and input both
NHWC (``channels_last``). This times the module's forward alone in the three layouts one
could pick -- all NCHW, NHWC input with NCHW weights (what a permuted HWC frame gives an
untouched module: the library re-lays out every weight per call) and both NHWC -- taking
turns, ``--rounds`` times, and prints the median milliseconds of each round::

    python benchmarks/torch_layout.py --model sentei-camvid-fw90 --threads 2 --frames 30 --rounds 3

Needs torch (``sentei[train]``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def layouts(module, frame_hwc, torch):
    """``{name: (module, input)}`` for the three layouts, each module its own copy."""
    import copy

    nchw = frame_hwc.permute(0, 3, 1, 2)
    cl_module = copy.deepcopy(module).to(memory_format=torch.channels_last)
    return {"all NCHW": (copy.deepcopy(module), nchw.contiguous()),
            "NHWC input, NCHW weights": (copy.deepcopy(module), nchw),
            "all NHWC (sentei bench)": (cl_module, nchw.contiguous(memory_format=torch.channels_last))}


def median_ms(module, x, frames: int, warmup: int, torch) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main(argv=None) -> int:
    import torch

    from sentei.host.modelfile import bundled
    from sentei.training.baseline import build_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sentei-camvid-fw90", help="model file or bundled name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = bundled.load_model(args.model)
    frame = torch.rand(1, model.input.height, model.input.width, 3) * 255
    runs = layouts(build_module(model).eval(), frame, torch)
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, (module, x) in runs.items():
            results.setdefault(name, []).append(median_ms(module, x, args.frames, args.warmup, torch))
    print(f"{args.model}, {model.input.height}x{model.input.width}, torch {torch.__version__}, "
          f"{args.threads} threads: median ms per forward, one figure per round")
    for name, ms in results.items():
        print(f"  {name:<26} " + " / ".join(f"{m:.1f}" for m in ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
