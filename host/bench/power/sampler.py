"""Sampling a power source in the background and summarizing the samples into a report's power block."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sentei.errors import SenteiError
from sentei.host.bench.power.base import PowerSource

STUCK_READINGS = 10  # a run with this many readings, all the same total, is flagged (summarize)


@dataclass
class PowerTrace:
    """Readings of one source over one interval of time."""

    source: str
    times: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    rails: list[dict[str, float]] = field(default_factory=list)
    total_from: str = ""
    error: str = ""

    def mean_w(self) -> float | None:
        """Time-weighted mean of the total (plain mean for fewer than three readings)."""
        if not self.totals:
            return None
        if len(self.totals) < 3:
            return sum(self.totals) / len(self.totals)
        area = sum((self.times[i + 1] - self.times[i]) * (self.totals[i] + self.totals[i + 1]) / 2
                   for i in range(len(self.totals) - 1))
        span = self.times[-1] - self.times[0]
        return area / span if span > 0 else sum(self.totals) / len(self.totals)

    def rail_means(self) -> dict[str, float]:
        """Plain mean of each rail over the readings."""
        names = sorted({k for r in self.rails for k in r})
        return {k: sum(r[k] for r in self.rails if k in r) / sum(1 for r in self.rails if k in r) for k in names}


class PowerSampler:
    """Polls a :class:`PowerSource` in a daemon thread between :meth:`start` and :meth:`stop`.

    Parameters
    ----------
    source : PowerSource
        An opened source.
    interval_s : float, optional
        Time between readings; defaults to the source's own.
    """

    def __init__(self, source: PowerSource, interval_s: float | None = None):
        self.source = source
        self.interval_s = source.interval_s if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.trace = PowerTrace(source.name)

    def start(self) -> "PowerSampler":
        """Begin sampling in the background (a fresh trace)."""
        if self._thread is not None:
            raise SenteiError("power sampler is already running")
        self.source.begin()
        self.trace = PowerTrace(self.source.name)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"sentei-power-{self.source.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                rails = self.source.read()
                if rails:
                    total, label = self.source.total(rails)
                    self.trace.times.append(time.perf_counter())
                    self.trace.totals.append(float(total))
                    self.trace.rails.append(rails)
                    self.trace.total_from = label
            except Exception as exc:  # a failing sensor ends sampling; the report says why
                self.trace.error = f"{self.source.name}: {exc.__class__.__name__}: {exc}"
                return
            if self.interval_s > 0:
                self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 5.0) -> PowerTrace:
        """Stop sampling and return the trace (the thread is given ``timeout_s`` to finish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.trace.error = self.trace.error or f"{self.source.name}: sampler did not stop within {timeout_s} s"
            self._thread = None
        return self.trace


def measure_idle(source: PowerSource, seconds: float) -> PowerTrace:
    """Sample ``source`` for ``seconds`` with nothing running: the idle baseline."""
    sampler = PowerSampler(source).start()
    time.sleep(seconds)
    return sampler.stop()


def summarize(run: PowerTrace | None, idle: PowerTrace | None, frames: int, seconds: float,
              why_none: str = "") -> dict:
    """The report's ``power`` entry: mean W, J/frame, frames/J, and the dynamic part over idle.

    With no usable readings the entry is ``{"status": "none", "reason": ...}``. A ``warning``
    says when sampling ended early, and when :data:`STUCK_READINGS` or more readings of the
    total are all the same (a sensor that stopped updating, or a library repeating its last
    value, looks like that).
    """
    if run is None:
        return {"status": "none", "reason": why_none or "no power source"}
    mean = run.mean_w()
    if mean is None or len(run.totals) < 2:
        reason = run.error or (f"{run.source}: only {len(run.totals)} reading(s) during a {seconds:.2f} s run "
                               f"(run more frames)")
        return {"status": "none", "source": run.source, "reason": reason}
    out = {"status": "measured", "source": run.source, "total_from": run.total_from,
           "samples": len(run.totals), "rails_mean_w": run.rail_means()}
    warnings = [run.error] if run.error else []
    if len(run.totals) >= STUCK_READINGS and len(set(run.totals)) == 1:
        warnings.append(f"{run.source}: every reading identical ({len(run.totals)} x {run.totals[0]} W): "
                        f"a stuck sensor?")
    if warnings:
        out["warning"] = "; ".join(warnings)
    idle_mean = idle.mean_w() if idle is not None else None
    return dict(out, **_energy(mean, seconds, frames, idle_mean, len(idle.totals) if idle_mean is not None else 0))


def _energy(mean: float, seconds: float, frames: int, idle_w: float | None, idle_samples: int) -> dict:
    """Mean W, J/frame and frames/J of ``frames`` in ``seconds``, and over idle the dynamic part."""
    out = {"mean_w": mean, "energy_per_frame_j": mean * seconds / frames, "frames_per_j": frames / (mean * seconds)}
    if idle_w is not None:
        dyn = mean - idle_w
        out.update({"idle_w": idle_w, "idle_samples": idle_samples, "dynamic_w": dyn,
                    "dynamic_energy_per_frame_j": dyn * seconds / frames})
    return out


def summarize_rounds(rounds, idle: PowerTrace | None, why_none: str = "") -> dict:
    """:func:`summarize` of a run timed in rounds: ``[(trace, frames, seconds), ...]``.

    One round is :func:`summarize` itself. Several (``sentei bench --rounds``): each round's
    mean power times its duration is its energy; the run's mean is the energy over the
    summed time (not a mean across the gaps when another engine ran), per frame over the
    summed frames. A round without readings makes the whole run ``none``, with its reason.
    """
    if len(rounds) == 1:
        trace, frames, seconds = rounds[0]
        return summarize(trace, idle, frames, seconds, why_none)
    parts = [summarize(trace, idle, frames, seconds, why_none) for trace, frames, seconds in rounds]
    for part in parts:
        if part["status"] != "measured":
            return part
    seconds = sum(r[2] for r in rounds)
    frames = sum(r[1] for r in rounds)
    energy = sum(p["mean_w"] * r[2] for p, r in zip(parts, rounds))
    rails = sorted({k for p in parts for k in p["rails_mean_w"]})
    out = {"status": "measured", "source": parts[0]["source"], "total_from": parts[0]["total_from"],
           "samples": sum(p["samples"] for p in parts),
           "rails_mean_w": {k: sum(p["rails_mean_w"].get(k, 0.0) * r[2] for p, r in zip(parts, rounds)) / seconds
                            for k in rails},
           "rounds": len(rounds)}
    warnings = sorted({p["warning"] for p in parts if "warning" in p})
    if warnings:
        out["warning"] = "; ".join(warnings)
    return dict(out, **_energy(energy / seconds, seconds, frames, parts[0].get("idle_w"),
                               parts[0].get("idle_samples", 0)))
