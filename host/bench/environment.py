"""The machine a run ran on, as a report records it: CPU, load, versions of what was used, a label."""
from __future__ import annotations

import os
import platform

from sentei.host.bench import power as pw  # stdlib-only at import
from sentei.host.bench.engine import read_text


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    text = read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(label: str | None = None) -> dict:
    """Where the run happened: CPU, cores, clocks, memory, board/GPU, versions."""
    from sentei import __version__
    cores = os.cpu_count()
    env = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
           "cpu": {"model": cpu_model(), "logical_cores": cores,
                   "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores}}
    freq = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if freq and freq.isdigit():
        env["cpu"]["cur_freq_mhz"] = int(freq) / 1000
    fmax = read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if fmax and fmax.isdigit():
        env["cpu"]["max_freq_mhz"] = int(fmax) / 1000
    mem = read_text("/proc/meminfo")
    if mem and mem.startswith("MemTotal"):
        env["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    if pw.is_jetson():
        env["jetson"] = {"model": read_text("/proc/device-tree/model"),
                         "l4t": (read_text("/etc/nv_tegra_release") or "").split("\n")[0] or None}
    if pw.is_zynq():
        env["board"] = {"model": read_text("/proc/device-tree/model"), "BOARD": os.environ.get("BOARD")}
    env["versions"] = {name: _version(dist) for name, dist in (
        ("sentei", "sentei"), ("numpy", "numpy"), ("torch", "torch"), ("numba", "numba"), ("pynq", "pynq"),
        ("nvidia-ml-py", "nvidia-ml-py"))}
    env["versions"]["sentei"] = env["versions"]["sentei"] or __version__
    env["label"] = label or default_label(env)
    return env


def default_label(env: dict) -> str:
    if "jetson" in env and env["jetson"].get("model"):
        return env["jetson"]["model"]
    if "board" in env and env["board"].get("model"):
        return env["board"]["model"]
    return f"{env['cpu']['model']} ({env['cpu']['usable_cores']} cores)"
