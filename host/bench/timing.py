"""One timed run: the frame loop at batch 1 with its power sampler, rounds, and the latency statistics."""
from __future__ import annotations

import os
import time

import numpy as np

from sentei.host.bench import power as pw  # stdlib-only at import
from sentei.host.bench.engine import BenchEngine
from sentei.host.bench.environment import _load_average


def latency_stats(seconds) -> dict:
    """p50/p90/p99/mean/min/max in ms, and mean FPS (frames over the summed latency)."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "max_ms": float(a.max()), "fps": float(1e3 / a.mean())}


def _larger(old: dict, new: dict) -> dict:
    """``new`` with each figure the larger of it and ``old``'s (the rounds of one run)."""
    return {key: max(value, old[key]) if isinstance(value, float) and isinstance(old.get(key), float) else value
            for key, value in new.items()}


def time_run(engine: BenchEngine, frames: list[np.ndarray], n: int, warmup: int, power: str = "none",
             idle_s: float = 0.0, min_seconds: float = 0.0, warmup_seconds: float = 0.0) -> dict:
    """Time ``n`` frames (after ``warmup``) on ``engine`` and sample power around it.

    Parameters
    ----------
    engine : BenchEngine
    frames : list of numpy.ndarray
        Captured frames, cycled through.
    n, warmup : int
        Timed and untimed frame counts.
    warmup_seconds : float
        Warm up for at least this long, whatever ``warmup`` says.
    power : str
        ``--power`` choice.
    idle_s : float
        Seconds of idle power before the run (0: none).
    min_seconds : float
        With power measured, keep timing frames until the run lasts this long.

    Returns
    -------
    dict
        The run's entry of the report (without its label).
    """
    timer = RunTimer(engine, power, idle_s, min_seconds)
    timer.warm(frames, warmup, warmup_seconds)
    timer.time(frames, n)
    return timer.result()


class RunTimer:
    """The timed frames of one engine, taken in one round or several (``sentei bench --rounds``).

    With several engines in one command, ``--rounds R`` alternates them: engine A times
    n/R frames, then engine B, then A again... so a burst of other load on a shared machine
    falls on both instead of on whichever ran at that moment, and their ratio is fair.
    Power is sampled during each round; the rounds' energies are summed
    (:func:`sentei.host.bench.power.summarize_rounds`), never interpolated across another engine's round.
    """

    def __init__(self, engine: BenchEngine, power: str = "none", idle_s: float = 0.0, min_seconds: float = 0.0):
        self.engine, self.power, self.idle_s, self.min_seconds = engine, power, idle_s, min_seconds
        self.e2e: list[float] = []
        self.accel: list[float | None] = []
        self.rounds: list[tuple] = []  # (power trace or None, frames, wall seconds)
        self.memory: dict = {}  # the largest high-water marks of the rounds
        self.idle = None
        self.why_none = ""
        self.power_device: dict = {}
        self.warmup = 0
        self.wall = self.cpu = 0.0
        self.load_before = self.load_after = None
        self.final: dict | None = None

    def warm(self, frames: list[np.ndarray], warmup: int, warmup_seconds: float = 0.0) -> None:
        """Idle power first (the engine loaded, not running), then the untimed frames."""
        if self.idle_s > 0:
            source, _ = pw.open_source(self.power, self.engine.power_target)
            if source is not None:
                try:
                    self.idle = pw.measure_idle(source, self.idle_s)
                finally:
                    source.close()
        t_warm, done = time.perf_counter(), 0
        while done < warmup or time.perf_counter() - t_warm < warmup_seconds:
            self.engine.infer(frames[done % len(frames)])
            done += 1
        self.warmup += done
        self.engine.reset_peak_memory()

    def time(self, frames: list[np.ndarray], n: int) -> None:
        """One round: ``n`` timed frames (more while power needs ``min_seconds``)."""
        source, self.why_none = pw.open_source(self.power, self.engine.power_target)
        try:
            sampler = pw.PowerSampler(source).start() if source is not None else None
            if self.load_before is None:
                self.load_before = _load_average()
            cpu_before = os.times()
            start = time.perf_counter()
            i = 0
            while i < n or (sampler is not None and time.perf_counter() - start < self.min_seconds):
                t0 = time.perf_counter()
                _, acc = self.engine.infer(frames[(len(self.e2e)) % len(frames)])
                self.e2e.append(time.perf_counter() - t0)
                self.accel.append(acc)
                i += 1
            wall = time.perf_counter() - start
            cpu_after = os.times()
            trace = sampler.stop() if sampler is not None else None
            if source is not None:
                self.power_device = source.device_info()  # before close() shuts NVML down
            self.memory = _larger(self.memory, self.engine.peak_memory_mb())  # reset by warm()
        finally:
            if source is not None:
                source.close()
        self.load_after = _load_average()
        self.wall += wall
        self.cpu += (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        self.rounds.append((trace, i, wall))

    def result(self) -> dict:
        """The run's entry of the report (without its label)."""
        engine = self.engine
        run = {"kind": "measured", "backend": engine.backend, "device": engine.device,
               "precision": engine.precision, "frames": len(self.e2e), "warmup": self.warmup, "wall_s": self.wall,
               "rounds": len(self.rounds),
               "latency": {"end_to_end": latency_stats(self.e2e),
                           "accelerator": latency_stats(self.accel) if all(a is not None for a in self.accel)
                           else None},
               "memory": self.memory,
               # other load on the machine skews every figure: what the kernel saw, and this process's share
               "host_load": {"loadavg_1min_before": self.load_before, "loadavg_1min_after": self.load_after,
                             "process_cpu_s_per_s": self.cpu / self.wall if self.wall else None},
               "power": pw.summarize_rounds(self.rounds, self.idle, self.why_none),
               "engine": engine.info()}
        if self.power_device:
            run["engine"]["power_device"] = self.power_device
        return run
