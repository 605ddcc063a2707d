"""``sentei bench`` and ``bench-report``: argument parsing, timing statistics, reports, the merged table."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import types

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.bench import backends, timing, trtexec
from sentei.host.commands import bench
from sentei.host.bench import engine as bench_engine, report as benchreport
from sentei.host.bench import power as pw
from sentei.host.modelfile.schema import save
from sentei.host.modelfile.synthetic import random_model


def parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    bench.register(sub)
    return p


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.sentei"
    save(random_model(5, 24, 32), path)
    return path


def test_parse_frames_defaults_and_overrides():
    assert bench.parse_frames("30", ["emu"]) == {"emu": 30}
    assert bench.parse_frames("30", ["reference"]) == {"reference": 30}  # alone: what was asked
    assert bench.parse_frames("30", ["emu", "reference"]) == {"emu": 30, "reference": 3}
    assert bench.parse_frames("50,reference=5,torch=7", ["emu", "torch", "reference"]) == \
        {"emu": 50, "torch": 7, "reference": 5}
    for bad in ("x", "0", "emu=-1", "gpu=3"):
        with pytest.raises(SenteiError):
            bench.parse_frames(bad, ["emu"])


def test_parse_lists_and_size():
    assert bench.parse_list("emu,torch", bench.BACKENDS, "--backend") == ["emu", "torch"]
    with pytest.raises(SenteiError, match="tpu"):
        bench.parse_list("emu,tpu", bench.BACKENDS, "--backend")
    from sentei.cli import parse_size

    assert parse_size("640x480", "--capture", width_first=True) == (480, 640)
    assert parse_size("360x480", "--size") == (360, 480)
    with pytest.raises(SenteiError, match="--capture '640': expected WIDTHxHEIGHT"):
        parse_size("640", "--capture", width_first=True)
    with pytest.raises(SenteiError, match="at least 8x8"):
        parse_size("4x480", "--size", minimum=8)


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "-1", "-1 must be an integer of at least 0"),
    ("--warmup", "-1", "-1 must be an integer of at least 0"),
    ("--warmup-seconds", "-1", "must be a number of at least 0, e.g. 0 or 2.5"),
    ("--warmup-seconds", "nan", "must be a number of at least 0, e.g. 0 or 2.5"),
    ("--idle", "-1", "must be a number of at least 0, e.g. 0 or 2.5"),
    ("--min-seconds", "-1", "must be a number of at least 0, e.g. 0 or 2.5"),
    ("--device", "tpu", "pass cpu, cuda or cuda:N"),
])
def test_bad_numbers_and_devices_are_refused_while_parsing(option, value, message, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--backend", "emu", option, value])
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and message in err


def test_devices_and_a_capture_size_limit():
    for device in ("cpu", "cuda", "cuda:1"):
        assert parser().parse_args(["bench", "--device", device]).device == device
    args = parser().parse_args(["bench", "--capture", "100000x100000", "--model", "/no/such/model"])
    with pytest.raises(SenteiError, match=r"--capture 100000x100000: too large \(at most 8192x8192\)"):
        args.func(args)  # before the model is looked for, and before 4 frames of 30 GB each


def test_latency_stats():
    s = timing.latency_stats([0.010, 0.020, 0.030, 0.040])
    assert s["p50_ms"] == pytest.approx(25.0)
    assert s["p90_ms"] == pytest.approx(37.0)
    assert s["mean_ms"] == pytest.approx(25.0)
    assert s["fps"] == pytest.approx(40.0)
    assert (s["min_ms"], s["max_ms"]) == (pytest.approx(10.0), pytest.approx(40.0))


class CountingEngine(bench_engine.BenchEngine):
    backend = "fake"

    def __init__(self, accel=0.002):
        self.calls, self.accel = 0, accel

    def infer(self, frame):
        self.calls += 1
        return np.zeros(frame.shape[:2], np.uint8), self.accel


def test_time_run_counts_warmup_and_reports_no_power():
    engine = CountingEngine()
    frames = [np.zeros((4, 4, 3), np.uint8)] * 2
    run = timing.time_run(engine, frames, n=7, warmup=3, power="none")
    assert engine.calls == 10 and run["frames"] == 7 and run["warmup"] == 3
    assert run["latency"]["accelerator"]["fps"] == pytest.approx(500.0)
    assert run["power"] == {"status": "none", "reason": "not requested (--power none)"}
    assert run["memory"]["host_rss_peak_mb"] > 0


class AllocatingEngine(CountingEngine):
    """Touches ``mb`` MiB of fresh memory on every frame."""

    def __init__(self, mb):
        super().__init__()
        self.mb = mb

    def infer(self, frame):
        np.ones(self.mb * 2**20, np.uint8)
        return super().infer(frame)


def test_peak_memory_is_each_runs_own_where_linux_can_reset_it():
    if not bench_engine._reset_host_peak_rss():
        pytest.skip("/proc/self/clear_refs cannot reset VmHWM here: the peak is the process's")
    frames = [np.zeros((2, 2, 3), np.uint8)]
    big = timing.time_run(AllocatingEngine(200), frames, n=2, warmup=0, power="none")["memory"]
    small = timing.time_run(AllocatingEngine(0), frames, n=2, warmup=0, power="none")["memory"]
    assert big["host_rss_peak_scope"] == small["host_rss_peak_scope"] == "run"
    assert big["host_rss_peak_mb"] - small["host_rss_peak_mb"] > 150  # not the process's mark, twice


def test_peak_memory_says_when_it_is_the_process_mark(monkeypatch):
    monkeypatch.setattr(bench_engine, "_reset_host_peak_rss", lambda: False)
    run = timing.time_run(CountingEngine(), [np.zeros((2, 2, 3), np.uint8)], n=1, warmup=0, power="none")
    assert run["memory"]["host_rss_peak_scope"] == "process" and run["memory"]["host_rss_peak_mb"] > 0


def test_time_run_without_accelerator_time():
    engine = CountingEngine(accel=None)
    run = timing.time_run(engine, [np.zeros((2, 2, 3), np.uint8)], n=3, warmup=0, power="none")
    assert run["latency"]["accelerator"] is None and run["latency"]["end_to_end"]["fps"] > 0


def test_bench_command_side_by_side(tiny_model, tmp_path, capsys):
    numba = pytest.importorskip("numba")
    torch = pytest.importorskip("torch")
    out = tmp_path / "r.json"
    args = parser().parse_args(["bench", "--model", str(tiny_model), "--backend", "emu,reference,torch",
                                "--frames", "4", "--warmup", "1", "--warmup-seconds", "0", "--power", "none",
                                "--capture", "40x30", "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "ratios to emu" in printed and "vs reference" in printed and "vs torch cpu fp32" in printed
    threads = (numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())
    report = benchreport.load_report(out)
    assert report["schema_version"] == bench.SCHEMA_VERSION
    assert [r["label"] for r in report["runs"]] == [f"emu {threads[0]}T", "reference", f"torch cpu fp32 {threads[1]}T"]
    assert [r["frames"] for r in report["runs"]] == [4, 3, 4]  # the reference gets its small count
    assert report["model"]["capture"] == [30, 40] and report["model"]["input"] == [24, 32]
    assert report["environment"]["cpu"]["logical_cores"] >= 1
    assert report["command"].startswith(f"sentei bench --model {tiny_model} --backend emu,reference,torch --frames 4")
    assert parser().parse_args(report["command"].split()[1:]).power == "none"  # the command parses back
    for run in report["runs"]:
        assert run["power"]["status"] == "none"
        lat = run["latency"]["end_to_end"]
        assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]


def test_batched_throughput_is_reported_beside_the_single_frame_latency(tiny_model, tmp_path, capsys, monkeypatch):
    from sentei.host.runtime.emulated_overlay import EmulatedMMIO
    from sentei.overlay import registers as R

    starts = []
    real = EmulatedMMIO._execute
    monkeypatch.setattr(EmulatedMMIO, "_execute", lambda self, a: (starts.append((a["cmd"], a["frames"])), real(self, a))[1])
    out = tmp_path / "r.json"
    args = parser().parse_args(["bench", "--model", str(tiny_model), "--backend", "reference", "--frames", "5",
                                "--batch", "3", "--warmup", "0", "--warmup-seconds", "0", "--power", "none",
                                "--idle", "0", "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"batched x3 \(throughput\) +end-to-end [0-9.]+ FPS, accelerator [0-9.]+ FPS \[6 frames in 2 "
                     r"starts of FRAMES=3; latency above is single-frame\]", printed), printed
    run = benchreport.load_report(out)["runs"][0]
    assert run["frames"] == 5 and run["latency"]["end_to_end"]["fps"] > 0  # the single-frame figures, as before
    b = run["batched"]
    assert (b["batch"], b["starts"], b["frames"]) == (3, 2, 6) and b["fps"] > 0 and b["accelerator_fps"] > 0
    runs = [f for c, f in starts if c == R.CMD_RUN_FRAME]
    assert runs.count(3) == 3 and runs.count(1) == 5  # one untimed batch + two timed; 5 single frames
    with pytest.raises(SenteiError, match=r"^--batch 65: 1 to 64 frames per accelerator start$"):
        a = parser().parse_args(["bench", "--model", str(tiny_model), "--batch", "65", "--power", "none"])
        a.func(a)


def test_torch_engine_labels_match_reference_at_capture_size(tiny_model):
    pytest.importorskip("torch")
    from sentei.host.modelfile import schema, reference
    from sentei.host.modelfile.synthetic import random_frame

    model = schema.load(tiny_model)
    engine = bench.open_engine("torch", str(tiny_model), model, "cpu", "fp32")
    frame = random_frame(3, 24, 32)
    labels, accel = engine.infer(frame)
    assert labels.shape == (24, 32) and labels.dtype == np.uint8 and accel > 0
    assert (labels == reference.predict(model, frame)).mean() > 0.9


def test_modeled_fpga_run_is_labelled_and_has_no_invented_power(tiny_model, monkeypatch):
    boards = types.ModuleType("sentei.overlay.perf")
    boards.load_board = lambda name: types.SimpleNamespace(default_clock_mhz=200)
    fake = types.ModuleType("sentei.overlay.report")
    fake.perf_report = lambda model, board, clock: {"board": board, "clock_mhz": clock, "frames_per_s": 250.0,
                                                    "pipeline": {"latency_ms": 6.0, "bottleneck": "conv4"}}
    monkeypatch.setitem(sys.modules, "sentei.overlay.perf", boards)
    monkeypatch.setitem(sys.modules, "sentei.overlay.report", fake)
    from sentei.host.modelfile import schema

    run = backends.modeled_run(schema.load(tiny_model), "zcu104", None)
    assert run["kind"] == "modeled" and run["latency"]["end_to_end"] is None
    assert run["latency"]["accelerator"]["fps"] == 250.0 and run["latency"]["accelerator"]["p50_ms"] == 6.0
    assert run["power"] == {"status": "none", "reason": "the performance model gives no power estimate"}
    assert bench.run_label(run) == "fpga zcu104 @200 MHz (modeled)"
    fake.perf_report = lambda model, board, clock: {"board": board, "frames_per_s": 250.0, "power_w": 5.0}
    run = backends.modeled_run(schema.load(tiny_model), "zcu104", 150)
    assert run["power"]["frames_per_j"] == pytest.approx(50.0) and run["power"]["status"] == "modeled"


# ---------------------------------------------------------------------------------------
# bench-report


def report(label, runs, synthetic=False):
    return {"schema": "sentei-bench", "schema_version": 1, "environment": {"label": label},
            "model": {"name": "m", "synthetic": synthetic}, "runs": runs}


def run(label, fps, frames_per_j=None, kind="measured", watts=None, accel_fps=None):
    def stats(fps):
        return {"p50_ms": 1e3 / fps, "p90_ms": 1e3 / fps, "p99_ms": 1e3 / fps, "fps": fps}

    power = ({"status": "measured", "source": "nvml", "mean_w": watts, "frames_per_j": frames_per_j,
              "energy_per_frame_j": 1 / frames_per_j} if frames_per_j else
             {"status": "none", "reason": "RAPL: absent"})
    lat = {"end_to_end": None, "accelerator": stats(fps)} if kind == "modeled" else \
        {"end_to_end": stats(fps), "accelerator": stats(accel_fps or fps)}
    return {"label": label, "kind": kind, "backend": "x", "latency": lat, "power": power, "frames": 10}


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_bench_report_table_ratios_and_plot(tmp_path):
    gpu = write(tmp_path / "gpu.json", report("Jetson", [run("torch cuda fp16", 20.0, frames_per_j=2.0, watts=10.0,
                                                             accel_fps=40.0)]))
    fpga = write(tmp_path / "fpga.json", report("ZCU104", [run("fpga zcu104 (modeled)", 200.0, kind="modeled"),
                                                           run("fpga", 100.0, frames_per_j=40.0, watts=2.5,
                                                               accel_fps=160.0)]))
    paths = benchreport.write_report([fpga], tmp_path / "out", baseline=gpu)
    text = (tmp_path / "out" / "benchmarks.md").read_text()
    assert "| speedup end-to-end | speedup accel.-only | perf/W |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "machine" not in line]
    assert len(rows) == 3
    base, modeled, board = rows
    assert base.endswith("| 1.00x | 1.00x | 1.00x |")
    # modeled 200 accelerator-only FPS against the baseline's 40 accelerator-only, not its 20 end-to-end
    assert "**modeled**" in modeled and modeled.endswith("| – | 5.00x | – |") and "(accel.)" in modeled
    assert "measured" in board and board.endswith("| 5.00x | 4.00x | 20.00x |")
    assert "ZCU104 / fpga zcu104 (modeled): power none" in text
    assert "ZCU104 / fpga: power from nvml" in text
    png = tmp_path / "out" / "benchmarks.png"
    assert png in paths and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_report_baseline_run_and_missing_power(tmp_path):
    a = write(tmp_path / "a.json", report("cpu", [run("emu", 10.0), run("torch cpu fp32", 5.0)], synthetic=True))
    benchreport.write_report([a], tmp_path / "o", baseline_run="torch", plot=False)
    text = (tmp_path / "o" / "benchmarks.md").read_text()
    assert "Baseline (1.0x): **torch cpu fp32**" in text
    assert "| 2.00x | 2.00x | – |" in text  # emu: twice the FPS, no perf/W without power
    assert "**synthetic**" in text and "cpu / emu, torch cpu fp32: power none — RAPL: absent" in text
    assert not (tmp_path / "o" / "benchmarks.png").exists()
    with pytest.raises(SenteiError, match="no run"):
        benchreport.write_report([a], tmp_path / "o", baseline_run="fpga", plot=False)


def test_bench_report_rejects_other_files(tmp_path):
    with pytest.raises(SenteiError, match="not a sentei bench report"):
        benchreport.load_report(write(tmp_path / "x.json", {"schema": "other"}))
    bad = report("cpu", [run("emu", 1.0)])
    bad["schema_version"] = 99
    with pytest.raises(SenteiError, match="schema version 99"):
        benchreport.load_report(write(tmp_path / "v.json", bad))
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(SenteiError, match="not JSON"):
        benchreport.load_report(tmp_path / "t.json")


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(environment=None), "'environment' is null, expected an object"),
    (lambda r: r.update(model=None), "'model' is null, expected an object"),
    (lambda r: r["runs"][0].update(latency=None), "run 1 (emu): 'latency' is null, expected an object"),
    (lambda r: r["runs"][0].update(power="5 W"), "run 1 (emu): 'power' is \"5 W\", expected an object"),
    (lambda r: r["runs"].__setitem__(0, 1), "run 1 is 1, expected an object"),
    (lambda r: r["runs"].__setitem__(0, {"foo": 1}), "run 1: 'label' is null, expected a string"),
    (lambda r: r["runs"][0].update(label="emu", latency={}), "run 1 (emu): 'latency' is {}, expected an "
                                                             "end_to_end or accelerator figure"),
    (lambda r: r["runs"][0]["latency"]["end_to_end"].update(fps="fast"),
     "run 1 (emu): 'latency.end_to_end.fps' is \"fast\", expected a number"),
])
def test_bench_report_names_the_file_run_and_field_of_a_bad_report(tmp_path, change, message):
    bad = report("cpu", [run("emu", 10.0)])
    change(bad)
    path = write(tmp_path / "r.json", bad)
    with pytest.raises(SenteiError, match="^" + re.escape(f"{path}: {message}")):
        benchreport.load_report(path)


def test_parse_trtexec_recorded_summary():
    from pathlib import Path

    text = (Path(__file__).parent / "fixtures" / "trtexec_summary.txt").read_text()
    t = trtexec.parse_trtexec(text)
    assert t["throughput_qps"] == 120.699
    gpu = t["gpu_compute"]
    assert (gpu["p50_ms"], gpu["p90_ms"], gpu["p99_ms"], gpu["mean_ms"]) == (8.19409, 8.5354, 9.90002, 8.23978)
    assert t["latency"]["p50_ms"] == 9.76404  # the Latency line, not H2D/D2H Latency
    run = trtexec.trtexec_run(text)
    assert run["latency"]["accelerator"]["fps"] == pytest.approx(1e3 / 8.23978)
    assert run["power"]["status"] == "none" and bench.run_label(run) == "tensorrt (trtexec)"
    old = "[I] Throughput: 2.54521e+06 qps\n[I] GPU Compute Time: min = 5.99756 ms, max = 9.45909 ms, " \
          "mean = 7.35231 ms, median = 7.1825 ms, percentile(99%) = 9.2168 ms\n"  # TensorRT 8.2: no p90
    t = trtexec.parse_trtexec(old)
    assert t["throughput_qps"] == 2.54521e6 and t["gpu_compute"]["p90_ms"] is None
    with pytest.raises(SenteiError, match="no trtexec performance summary"):
        trtexec.parse_trtexec("&&&& FAILED TensorRT.trtexec")


def _fake_trtexec(tmp_path, monkeypatch, body: str):
    """A trtexec on PATH that prints a build phase, then ``body`` (shell), then the recorded summary."""
    from pathlib import Path

    summary = Path(__file__).parent / "fixtures" / "trtexec_summary.txt"
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\necho '[I] [TRT] building the engine'\nsleep 0.4\n" + body + f"cat '{summary}'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


class _ConstantSource(pw.PowerSource):
    """A power source reading 5 W before 'Starting inference' would be sampled and 9 W after."""

    name = "fake"
    interval_s = 0.01

    def __init__(self):
        self.watts, self.closed = 5.0, False

    def read(self):
        return {"board": self.watts}

    def total(self, rails):
        return rails["board"], "board"

    def device_info(self):
        return {}

    def close(self):
        self.closed = True


def test_trtexec_power_covers_its_inference_phase_only(tmp_path, monkeypatch):
    """Energy per frame is the inference window's energy over the warm-up and timed queries of
    that window, not a mean over the engine build (where the GPU idles)."""

    source = _ConstantSource()
    monkeypatch.setattr(pw, "open_source", lambda choice, device: (source, ""))
    started = []
    real_start = pw.PowerSampler.start

    def start(self):
        started.append(time.perf_counter())
        if len(started) == 2:  # the first is the idle measurement before trtexec starts
            source.watts = 9.0  # the GPU under load from here on
        return real_start(self)

    monkeypatch.setattr(pw.PowerSampler, "start", start)
    _fake_trtexec(tmp_path, monkeypatch, "printf 'a stray byte \\377 in a log line\\n'\n"  # not UTF-8
                  "echo '[I] Starting inference'\nsleep 0.5\n"
                  "echo '[I] Warmup completed 14 queries over 200 ms'\n"
                  "echo '[I] Timing trace has 101 queries over 0.3 s'\n")
    t0 = time.perf_counter()
    run = trtexec.run_trtexec("--onnx=m.onnx --fp16", "auto", idle_s=0.05)
    assert len(started) == 2 and started[1] - t0 > 0.35  # the run's sampler waited out the build phase
    power = run["power"]
    assert power["status"] == "measured" and source.closed
    assert power["mean_w"] == pytest.approx(9.0) and power["idle_w"] == pytest.approx(5.0)
    window = power["energy_per_frame_j"] * 115 / 9.0  # J/frame = mean W * window / (14 + 101) queries
    assert 0.4 < window < 1.5 and "115 queries" in power["note"]
    assert run["engine"]["trtexec"] == "trtexec --onnx=m.onnx --fp16"
    assert run["latency"]["accelerator"]["p50_ms"] == 8.19409


def test_trtexec_power_is_read_on_the_gpu_it_runs_on(tmp_path, monkeypatch):

    assert trtexec.trtexec_device(["--onnx=m.onnx", "--device=1"]) == "cuda:1"
    assert trtexec.trtexec_device(["--device", "2", "--fp16"]) == "cuda:2"
    assert trtexec.trtexec_device(["--onnx=m.onnx"]) == "cuda"
    asked = []
    monkeypatch.setattr(pw, "open_source", lambda choice, device: (asked.append(device), (None, "none"))[1])
    _fake_trtexec(tmp_path, monkeypatch, "")
    trtexec.run_trtexec("--onnx=m.onnx --device=1", "auto", idle_s=0)
    assert asked == ["cuda:1"]


def test_trtexec_without_an_inference_phase_gives_no_power_and_says_why(tmp_path, monkeypatch):

    source = _ConstantSource()
    monkeypatch.setattr(pw, "open_source", lambda choice, device: (source, ""))
    _fake_trtexec(tmp_path, monkeypatch, "")
    run = trtexec.run_trtexec("--onnx=m.onnx", "auto", idle_s=0)
    assert run["power"]["status"] == "none" and "Starting inference" in run["power"]["reason"]
    assert source.closed and run["engine"]["trtexec_throughput_qps"] == 120.699


def test_trtexec_failure_is_one_line_and_closes_the_power_source(tmp_path, monkeypatch):

    source = _ConstantSource()
    monkeypatch.setattr(pw, "open_source", lambda choice, device: (source, ""))
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\necho '[I] Starting inference'\necho '&&&& FAILED TensorRT.trtexec'\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(SenteiError, match=r"trtexec exited with status 1: &&&& FAILED TensorRT.trtexec$"):
        trtexec.run_trtexec("--onnx=m.onnx", "auto", idle_s=0)
    assert source.closed


def test_power_device_info_is_read_before_the_source_closes(monkeypatch):
    """NVML's device facts vanish with nvmlShutdown(): time_run must read them while the source is open."""

    class ClosingSource(pw.PowerSource):
        name = "fake"
        interval_s = 0.01
        closed = False

        def read(self):
            return {"board": 5.0}

        def device_info(self):
            return {} if self.closed else {"gpu": "Fake GPU"}

        def close(self):
            self.closed = True

    source = ClosingSource()
    monkeypatch.setattr(pw, "open_source", lambda choice, device: (source, ""))
    run = timing.time_run(CountingEngine(), [np.zeros((2, 2, 3), np.uint8)], n=3, warmup=0, power="fake")
    assert source.closed and run["engine"]["power_device"] == {"gpu": "Fake GPU"}


def test_rounds_alternate_the_backends_and_reopen_each(tiny_model, tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba")
    order, opened = [], []
    real = bench.open_engine

    def spy(backend, *a, **k):
        engine = real(backend, *a, **k)
        opened.append(backend)
        infer = engine.infer
        engine.infer = lambda frame: (order.append(backend), infer(frame))[1]
        return engine

    monkeypatch.setattr(bench, "open_engine", spy)
    out = tmp_path / "r.json"
    args = parser().parse_args(["bench", "--model", str(tiny_model), "--backend", "reference,emu",
                                "--frames", "5,reference=2", "--rounds", "3", "--warmup", "1",
                                "--warmup-seconds", "0", "--power", "none", "--json", str(out)])
    assert args.func(args) == 0
    report = benchreport.load_report(out)
    assert [r["backend"] for r in report["runs"]] == ["reference", "emu"]  # the order asked for
    assert [r["frames"] for r in report["runs"]] == [2, 5] and [r["rounds"] for r in report["runs"]] == [2, 3]
    assert opened == ["emu", "reference", "emu", "reference", "emu"]  # round 1: reference has 0 of its 2 frames
    # warmup 1 (reference: 1) then the round's frames, per opening
    assert order == ["emu"] * 2 + ["reference"] * 2 + ["emu"] * 3 + ["reference"] * 2 + ["emu"] * 3
    assert "ratios to reference" in capsys.readouterr().out
    with pytest.raises(SenteiError, match="--rounds 0"):
        a = parser().parse_args(["bench", "--model", str(tiny_model), "--rounds", "0", "--power", "none"])
        a.func(a)


def test_fpga_runs_record_the_bitstream_and_the_pl_clock(tmp_path, monkeypatch):
    import hashlib

    bit = tmp_path / "sentei.bit"
    bit.write_bytes(b"\x00\x09bitstream")
    ps = types.ModuleType("pynq.ps")
    ps.Clocks = types.SimpleNamespace(fclk0_mhz=187.5)
    monkeypatch.setitem(sys.modules, "pynq", types.ModuleType("pynq"))
    monkeypatch.setitem(sys.modules, "pynq.ps", ps)
    info = backends.fpga_info(types.SimpleNamespace(bitfile_name=str(bit)))
    assert info == {"bitstream": str(bit), "bitstream_bytes": 11, "pl_clock_mhz": 187.5,
                    "bitstream_sha256": hashlib.sha256(b"\x00\x09bitstream").hexdigest()}
    monkeypatch.delitem(sys.modules, "pynq.ps")
    monkeypatch.setitem(sys.modules, "pynq", None)  # no pynq: what can be read is kept, nothing made up
    assert backends.fpga_info(types.SimpleNamespace()) == {}
