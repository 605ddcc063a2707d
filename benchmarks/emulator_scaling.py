"""How the fast emulator's time scales with sparsity and resolution, beside dense PyTorch.

The network is the shipped architecture (docs/emulator.md) with random 8-bit weights
(``sentei.host.modelfile.synthetic``): timings do not depend on trained values, only on shapes and
K. For every row the fast emulator and a dense fp32 PyTorch ``nn.Sequential`` of the same
convolutions are timed in alternation (same process, same threads), and the reference
engine on one frame. Writes ``emulator_scaling.json``, ``emulator_scaling.md`` and
``emulator_scaling.png`` into ``--out``.

    python benchmarks/emulator_scaling.py --out runs/emulator_scaling --threads 2

Needs numba (``sentei[fast]``); torch and matplotlib are used when installed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sentei.atomic_write import atomic_write_bytes, write_json
from sentei.host.modelfile import reference
from sentei.host.bench.environment import cpu_model
from sentei.host.modelfile.schema import describe
from sentei.host.modelfile.synthetic import random_frame, shipped_model
from sentei.host.data.visualize import save_figure

SPARSITIES = (0.50, 0.75, 0.90, 0.95)
RESOLUTIONS = ((240, 320), (360, 480), (720, 960))
BASE = (0.90, (360, 480))


def torch_dense(model, threads: int):
    """The same convolutions as a dense fp32 ``nn.Sequential`` (Conv2d + ReLU), or None without torch.

    Weights and input NHWC (``channels_last``), as ``sentei bench`` runs its torch baseline:
    all NCHW is about 1.3x slower on the 2-core machine (``benchmarks/torch_layout.py``).
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    mods = []
    for layer in model.layers:
        mods.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride,
                                    layer.padding, layer.dilation))
        if layer.act == "relu":
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, model.input.height, model.input.width).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            return net(x)
    return run


def side_by_side(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """Best and median seconds per call of each function, timed in alternation.

    The best of ``repeat`` is what the table reports: on a shared machine other processes
    only ever add time, so the minimum is the stable estimate of each engine's own cost
    (the median is kept in the JSON).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}


def compile_times(threads: int) -> dict:
    """First-call seconds of a fresh process: with an empty numba cache (compile) and with the cache."""
    code = ("import time; t0 = time.perf_counter();"
            "from sentei.host.emulator.engine import Emulator;"
            "from sentei.host.modelfile.synthetic import random_model, random_frame;"
            "m = random_model(0, 24, 32); e = Emulator(m, threads=%d); e.run(random_frame(0, 24, 32));"
            "print(time.perf_counter() - t0)" % threads)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("compile", "cached"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[label] = float(res.stdout.strip().splitlines()[-1])
    return out


def measure(sparsity: float, height: int, width: int, threads: int, repeat: int, with_reference: bool,
            with_torch: bool) -> dict:
    from sentei.host.emulator.engine import Emulator

    model = shipped_model(sparsity, height, width)
    frame = random_frame(1, height, width)
    emu = Emulator(model, threads=threads)
    logits = emu.run(frame)
    fns = {"emu": lambda: emu.run(frame)}
    dense = torch_dense(model, threads) if with_torch else None
    if dense is not None:
        fns["torch"] = dense
    timed = side_by_side(fns, repeat)
    med = {name: best for name, (best, _) in timed.items()}
    info = describe(model)
    row = {
        "sparsity": sparsity, "height": height, "width": width,
        "k_per_layer": [layer.k_nonzero for layer in model.layers],
        "macs_executed": info["totals"]["macs_executed"], "macs_dense": info["totals"]["macs_dense"],
        "emu_ms": med["emu"] * 1e3, "emu_fps": 1.0 / med["emu"],
        "emu_gmacs": info["totals"]["macs_executed"] / med["emu"] / 1e9,
        "emu_median_ms": timed["emu"][1] * 1e3,
    }
    if "torch" in med:
        row.update(torch_ms=med["torch"] * 1e3, torch_fps=1.0 / med["torch"], emu_over_torch=med["torch"] / med["emu"],
                   torch_median_ms=timed["torch"][1] * 1e3)
    if with_reference:
        ref_times = []
        for _ in range(2):  # slow: best of two frames
            t = time.perf_counter()
            ref = reference.run(model, frame)
            ref_times.append(time.perf_counter() - t)
        row["reference_s"] = min(ref_times)
        row["reference_fps"] = 1.0 / row["reference_s"]
        row["emu_over_reference"] = row["reference_s"] / med["emu"]
        row["bit_exact"] = bool(np.array_equal(ref, logits))
    emu.close()
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    base = next(r for r in rows if (r["sparsity"], (r["height"], r["width"])) == BASE)
    head = ("| sparsity | input | K (layers 2-7) | MMAC executed | emu ms | emu frames/s | torch dense ms "
            "| torch frames/s | emu / torch | reference s | emu / reference | time vs 90 % | MACs vs 90 % |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        opt = lambda key, fmt: format(r[key], fmt) if key in r else "-"  # noqa: E731
        lines.append(
            f"| {r['sparsity']:.0%} | {r['height']}x{r['width']} | {'/'.join(str(k) for k in r['k_per_layer'][1:7])} "
            f"| {r['macs_executed'] / 1e6:.0f} | {r['emu_ms']:.1f} | {r['emu_fps']:.1f} | {opt('torch_ms', '.1f')} "
            f"| {opt('torch_fps', '.1f')} | {opt('emu_over_torch', '.2f')} | {opt('reference_s', '.2f')} "
            f"| {opt('emu_over_reference', '.0f')} | {r['emu_ms'] / base['emu_ms']:.2f} "
            f"| {r['macs_executed'] / base['macs_executed']:.2f} |")
    lines.append("")
    lines.append(f"Machine: {meta['cpu']}, {meta['threads']} threads; numba {meta['numba']}, "
                 f"torch {meta.get('torch', 'absent')}; best of {meta['repeat']} frames per engine, timed in "
                 f"alternation, batch 1 (medians in emulator_scaling.json); reference: best of two frames.")
    if "compile" in meta:
        lines.append(f"First call in a fresh process: {meta['compile']['compile']:.1f} s with an empty numba "
                     f"cache (JIT compile), {meta['compile']['cached']:.1f} s with the cache.")
    lines.append(f"Command: `{meta['command']}`")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    sp = [r for r in rows if (r["height"], r["width"]) == BASE[1]]
    sp.sort(key=lambda r: r["sparsity"])
    x = [r["sparsity"] * 100 for r in sp]
    ax1.plot(x, [r["emu_ms"] for r in sp], "o-", label="fast emulator")
    ax1.plot(x, [sp[0]["emu_ms"] * r["macs_executed"] / sp[0]["macs_executed"] for r in sp], "k--",
             label="proportional to MACs executed\n(the accelerator's cycles)")
    if "torch_ms" in sp[0]:
        ax1.plot(x, [r["torch_ms"] for r in sp], "s-", label="PyTorch fp32 dense")
    ax1.set_xlabel("filter-wise sparsity of layers 2-7 (%)")
    ax1.set_ylabel("ms per frame (360x480, batch 1)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    ax1.set_title("time vs sparsity")
    rs = [r for r in rows if r["sparsity"] == BASE[0]]
    rs.sort(key=lambda r: r["height"] * r["width"])
    px = [r["height"] * r["width"] / 1e3 for r in rs]
    ax2.loglog(px, [r["emu_ms"] for r in rs], "o-", label="fast emulator (90 %)")
    if "torch_ms" in rs[0]:
        ax2.loglog(px, [r["torch_ms"] for r in rs], "s-", label="PyTorch fp32 dense")
    if "reference_s" in rs[0]:
        ax2.loglog(px, [r["reference_s"] * 1e3 for r in rs], "^-", label="reference engine")
    for r, p in zip(rs, px):
        ax2.annotate(f"{r['height']}x{r['width']}", (p, r["emu_ms"]), fontsize=7, textcoords="offset points",
                     xytext=(4, -10))
    ax2.set_xlabel("input kilopixels")
    ax2.set_ylabel("ms per frame")
    ax2.legend(fontsize=8)
    ax2.set_title("time vs resolution")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the table, JSON and plot")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for emulator and torch")
    parser.add_argument("--repeat", type=int, default=20, help="timed frames per engine per row")
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference engine")
    parser.add_argument("--no-torch", action="store_true", help="skip dense PyTorch")
    parser.add_argument("--no-compile-time", action="store_true", help="skip the fresh-process compile timing")
    args = parser.parse_args(argv)
    import numba

    from sentei.host.emulator.engine import available

    ok, reason = available()
    if not ok:
        print(f"emulator_scaling: {reason}", file=sys.stderr)
        return 2
    meta = {"cpu": f"{cpu_model()} ({os.cpu_count()} cores)", "threads": args.threads, "numba": numba.__version__, "repeat": args.repeat,
            "command": shlex.join(["python", Path(sys.argv[0]).as_posix(),
                                   *(argv if argv is not None else sys.argv[1:])])}
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:
        args.no_torch = True
    if not args.no_compile_time:
        meta["compile"] = compile_times(args.threads)
        print(f"first call: {meta['compile']['compile']:.1f} s compiling, {meta['compile']['cached']:.1f} s cached",
              flush=True)
    configs = [(s, BASE[1]) for s in SPARSITIES] + [(BASE[0], r) for r in RESOLUTIONS if r != BASE[1]]
    rows = []
    for sparsity, (h, w) in configs:
        row = measure(sparsity, h, w, args.threads, args.repeat, not args.no_reference, not args.no_torch)
        rows.append(row)
        print(f"{sparsity:.0%} {h}x{w}: emu {row['emu_ms']:.1f} ms ({row['emu_fps']:.1f} fps)"
              + (f", torch {row['torch_ms']:.1f} ms, ratio {row['emu_over_torch']:.2f}" if "torch_ms" in row else "")
              + (f", reference {row['reference_s']:.2f} s, x{row['emu_over_reference']:.0f}"
                 f", bit-exact {row['bit_exact']}" if "reference_s" in row else ""), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "emulator_scaling.json", {"meta": meta, "rows": rows})
    table = markdown(rows, meta)
    atomic_write_bytes(args.out / "emulator_scaling.md", table.encode())
    try:
        plot(rows, args.out / "emulator_scaling.png")
    except ImportError:
        print("emulator_scaling: matplotlib is not installed, no plot (pip install sentei[bench])", file=sys.stderr)
    print(table)
    if any(not r.get("bit_exact", True) for r in rows):
        print("emulator_scaling: the emulator differs from the reference engine", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
