"""Long runs: what a camera loop accumulates stays bounded, and the soak benchmark's verdict
(benchmarks/soak.py) separates a leak from noise. The 10,000-frame soak itself is a benchmark,
recorded in docs/benchmarks.md; here it runs for a few dozen frames."""
import json

import numpy as np
import pytest

from sentei.host.runtime import emulated_overlay, segmenter
from sentei.host.modelfile import reference
from sentei.host.runtime.emulated_overlay import EmulatedOverlay, EventLog
from sentei.host.runtime.segmenter import Segmenter
from sentei.host.modelfile.synthetic import random_frame
from tests import benchmark_scripts

from .conftest import H, W, tiny_model

@pytest.fixture(scope="module")
def soak():
    return benchmark_scripts.load("soak")


def test_event_log_keeps_the_newest_entries():
    log = EventLog(limit=10)
    for n in range(25):
        log.append(n)
    assert len(log) <= 10 and log[-1] == 24 and len(log) + log.dropped == 25
    assert list(log) == list(range(25 - len(log), 25))  # in order, nothing lost but the oldest


def test_a_long_stream_keeps_overlay_logs_and_timings_bounded(monkeypatch):
    monkeypatch.setattr(emulated_overlay, "LOG_LIMIT", 200)
    monkeypatch.setattr(emulated_overlay, "COMMANDS_LIMIT", 20)
    monkeypatch.setattr(segmenter, "HISTORY_FRAMES", 16)
    model = tiny_model()
    overlay = EmulatedOverlay(model, hardware="reference")
    frames = [random_frame(n, H, W) for n in range(4)]
    expected = [reference.predict(model, frame) for frame in frames]
    with Segmenter(model, overlay=overlay) as seg:
        for n, result in enumerate(seg.stream(frames[n % 4] for n in range(60))):
            assert np.array_equal(result.labels, expected[n % 4])
        assert len(overlay.log) <= 200 and overlay.log.dropped > 0
        assert len(overlay.mmio.commands) <= 20 and overlay.mmio.commands[-1] == (2, 0)  # RUN_FRAME, OK
        assert len(seg.history) == 16
        assert overlay.memory.live_buffers() == 5
    assert overlay.memory.live_buffers() == 0


def _samples(rss, **overrides):
    return [dict({"frame": 500 * (n + 1), "rss_kib": int(v), "live_buffers": 5, "live_bytes": 1000,
                  "open_fds": 6, "threads": 2, "log_entries": 100, "log_entries_limit": 200,
                  "commands_kept": 10, "commands_kept_limit": 20}, **overrides) for n, v in enumerate(rss)]


def test_soak_verdict_separates_a_leak_from_noise(soak):
    rng = np.random.default_rng(0)
    warmup = [150_000, 160_000, 170_000, 171_000]  # allocator and JIT warm-up: outside the fit
    flat = warmup + list(171_000 + rng.integers(-40, 40, size=16))
    assert soak.verdict(_samples(flat))["ok"]
    # one 360x480 RGB frame (506 KiB) kept every 1000 frames: 253 KiB per 500-frame sample
    leak = warmup + [171_000 + 253 * n for n in range(16)]
    judged = soak.verdict(_samples(leak))
    assert not judged["ok"] and 500 < judged["rss_slope_kib_per_1000_frames"] < 520
    buffers = _samples(flat)
    buffers[-1]["live_buffers"] = 6
    assert "live_buffers changed during the run: [5, 6]" in soak.verdict(buffers)["reasons"]
    unbounded = _samples(flat, log_entries_limit=None)
    assert not soak.verdict(unbounded)["ok"]
    assert soak.verdict(_samples(flat, threads=3) + _samples([171_000], threads=2))["ok"]  # the worker


def test_soak_script_end_to_end(soak, tmp_path, capsys):
    out = tmp_path / "soak.json"
    status = soak.main(["--frames", "60", "--every", "20", "--model", "synthetic", "--size", "16x24",
                        "--json", str(out), "--fit-samples", "3", "--max-growth-kib", "100000"])
    report = json.loads(out.read_text())
    assert status == 0, report["verdict"]
    assert [s["frame"] for s in report["samples"]] == [20, 40, 60]
    assert {s["live_buffers"] for s in report["samples"]} == {5}
    assert report["after_close"]["live_buffers"] == 0 and report["verdict"]["ok"]
    assert report["model"]["input"] == [16, 24] and "synthetic" in report["model"]["source"]
    assert "soak PASSED" in capsys.readouterr().out
    assert soak.main(["--table", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + 3 + 1 and table[2].startswith("| 20 | ") and table[-1].startswith("| after close |")
