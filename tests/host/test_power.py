"""Power parsers and sources on recorded outputs (tests/host/fixtures/README.md says where each comes from)."""
from __future__ import annotations

import json
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sentei.errors import SenteiError
from sentei.host import power as pw

FIX = Path(__file__).parent / "fixtures" / "power"


def tegra_line(name: str, n: int = 0) -> str:
    return (FIX / f"tegrastats_{name}.txt").read_text().splitlines()[n]


def sysfs_tree(tmp_path: Path, fixture: str) -> Path:
    root = tmp_path / "sys"
    for rel, content in json.loads((FIX / fixture).read_text()).items():
        if rel.startswith("_"):
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    return root


# ---------------------------------------------------------------------------------------
# tegrastats


@pytest.mark.parametrize("board, expected, total, total_from", [
    ("nano", {"POM_5V_IN": 1.022, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.204}, 1.022, "POM_5V_IN"),
    ("tx1", {"VDD_IN": 2.532, "VDD_CPU": 0.076, "VDD_GPU": 0.019}, 2.532, "VDD_IN"),
    ("tx2", {"VDD_SYS_GPU": 0.152, "VDD_SYS_SOC": 0.687, "VDD_4V0_WIFI": 0.0, "VDD_IN": 3.056,
             "VDD_SYS_CPU": 0.152, "VDD_SYS_DDR": 0.883}, 3.056, "VDD_IN"),
    ("xavier_nx", {"VDD_IN": 4.067, "VDD_CPU_GPU_CV": 0.738, "VDD_SOC": 1.353}, 4.067, "VDD_IN"),
    ("orin_nx", {"VDD_IN": 5.299, "VDD_CPU_GPU_CV": 0.773, "VDD_SOC": 1.424}, 5.299, "VDD_IN"),
])
def test_tegrastats_input_rail(board, expected, total, total_from):
    rails = pw.parse_tegrastats(tegra_line(board))
    assert rails == pytest.approx(expected)
    assert set(rails) == set(expected)  # RAM, SWAP, IRAM, EMC_FREQ, GR3D_FREQ are not rails
    got, label = pw.jetson_total(rails)
    assert got == pytest.approx(total) and label == total_from


def test_tegrastats_agx_xavier_has_no_input_rail_and_is_summed():
    rails = pw.parse_tegrastats(tegra_line("agx_xavier"))
    assert rails == pytest.approx({"GPU": 0.0, "CPU": 0.311, "SOC": 0.932, "CV": 0.0, "VDDRQ": 0.621,
                                   "SYS5V": 1.482})
    total, label = pw.jetson_total(rails)
    assert total == pytest.approx(3.346)
    assert label == "sum(CPU+CV+GPU+SOC+SYS5V+VDDRQ)"


@pytest.mark.parametrize("n, expected", [(0, 12.377), (1, 10.370)])
def test_tegrastats_agx_orin_r36(n, expected):
    rails = pw.parse_tegrastats(tegra_line("agx_orin", n))
    assert set(rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}
    assert pw.jetson_total(rails)[0] == pytest.approx(expected)


def test_tegrastats_line_without_power():
    assert pw.parse_tegrastats("RAM 534/3964MB (lfb 98x4MB) SWAP 5/1982MB (cached 1MB) GR3D_FREQ 0%@76") == {}
    with pytest.raises(pw.PowerUnavailable):
        pw.jetson_total({})


def fake_tegrastats(tmp_path, body):
    script = tmp_path / "tegrastats"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_tegrastats_source_reads_a_subprocess(tmp_path):
    lines = tegra_line("orin_nx")
    source = pw.TegrastatsSource(command=fake_tegrastats(tmp_path, f"while true; do echo '{lines}'; sleep 0.02; done"))
    source.open()
    try:
        trace = pw.PowerSampler(source).start()
        time.sleep(0.2)
        result = trace.stop()
    finally:
        source.close()
    assert len(result.totals) >= 3
    assert result.totals == [pytest.approx(5.299)] * len(result.totals)
    assert result.total_from == "VDD_IN" and not result.error



def test_tegrastats_that_stays_silent_times_out_instead_of_hanging(tmp_path):
    source = pw.TegrastatsSource(command=fake_tegrastats(tmp_path, "sleep 30"), timeout_s=0.3)
    t0 = time.perf_counter()
    with pytest.raises(pw.PowerUnavailable, match="no output within 0.3 s"):
        source.open()
    assert time.perf_counter() - t0 < 5 and source._proc is None  # the child was stopped


def test_tegrastats_that_exits_ends_the_sampler_with_the_reason(tmp_path):
    line = tegra_line("orin_nx")
    source = pw.TegrastatsSource(command=fake_tegrastats(tmp_path, f"for i in 1 2 3; do echo '{line}'; done"))
    source.open()
    try:
        sampler = pw.PowerSampler(source).start()
        sampler._thread.join(5)
        assert not sampler._thread.is_alive()  # ended on EOF, not spinning on it
        result = sampler.stop()
    finally:
        source.close()
    assert result.totals == [pytest.approx(5.299)] * 2
    assert "tegrastats: the process exited" in result.error

# ---------------------------------------------------------------------------------------
# INA3221 sysfs


def test_ina3221_iio_layout_l4t32(tmp_path):
    root = sysfs_tree(tmp_path, "sysfs_jetson_nano_l4t32.json")
    channels = pw.find_ina3221(root)
    assert [c.label for c in channels] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    source = pw.Ina3221Source(root)
    source.open()
    rails = source.read()
    assert rails == pytest.approx({"POM_5V_IN": 1.022, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.204})
    assert source.total(rails) == (pytest.approx(1.022), "POM_5V_IN")


def test_ina3221_hwmon_layout_skips_the_shunt_sum(tmp_path):
    root = sysfs_tree(tmp_path, "sysfs_orin_nx_l4t35.json")
    channels = pw.find_ina3221(root)
    assert [c.label for c in channels] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    rails = {c.label: c.watts() for c in channels}
    assert rails == pytest.approx({"VDD_IN": 5.056 * 1.048, "VDD_CPU_GPU_CV": 5.048 * 0.153,
                                   "VDD_SOC": 5.048 * 0.282})
    assert pw.jetson_total(rails)[0] == pytest.approx(5.298688)


def test_ina3221_agx_orin_skips_nc_and_sums(tmp_path):
    root = sysfs_tree(tmp_path, "sysfs_agx_orin_l4t36.json")
    source = pw.Ina3221Source(root)
    source.open()
    rails = source.read()
    assert sorted(rails) == ["VDDQ_VDD2_1V8AO", "VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]
    total, label = source.total(rails)
    assert total == pytest.approx(3.205 + 4.405 + 4.765 + 0.6)
    assert label.startswith("sum(")


def test_ina3221_absent(tmp_path):
    with pytest.raises(pw.PowerUnavailable, match="no INA3221 rails"):
        pw.Ina3221Source(tmp_path).open()


# ---------------------------------------------------------------------------------------
# RAPL


def test_rapl_wraparound():
    assert pw.rapl_delta_uj(100, 350, 1000) == 250
    assert pw.rapl_delta_uj(900, 50, 999) == 150  # 900 -> 999 (99 uJ), wrap to 0 (+1), -> 50


def test_rapl_source_packages_only_and_wrap(tmp_path):
    root = sysfs_tree(tmp_path, "sysfs_rapl.json")
    clock = iter([10.0, 10.5])
    source = pw.RaplSource(root, clock=lambda: next(clock))
    source.open()
    assert [z.name for z in source.zones] == ["package-0", "package-1"]  # intel-rapl:0:0 is a subzone
    assert source.read() is None  # the first reading only primes the counters
    (root / "intel-rapl:0/energy_uj").write_text("500\n")  # wrapped
    (root / "intel-rapl:1/energy_uj").write_text("15000000\n")
    rails = source.read()
    assert rails["package-0"] == pytest.approx((262143328850 - 262143000000 + 500 + 1) / 1e6 / 0.5)
    assert rails["package-1"] == pytest.approx(20.0)
    assert source.total(rails)[0] == pytest.approx(rails["package-0"] + 20.0)


def test_rapl_unreadable_says_why(tmp_path, monkeypatch):
    root = sysfs_tree(tmp_path, "sysfs_rapl.json")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pw, "_read_number", denied)
    with pytest.raises(pw.PowerUnavailable, match="root only"):
        pw.find_rapl(root)
    with pytest.raises(pw.PowerUnavailable, match="does not exist"):
        pw.find_rapl(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------
# NVML and PYNQ through stand-ins of their libraries


class FakeNvml:
    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    def __init__(self, mw=71234, fail=None):
        self.mw, self.fail, self.shutdown = mw, fail, False

    def nvmlInit(self):
        if self.fail:
            raise RuntimeError(self.fail)

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.mw

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H200"

    def nvmlDeviceGetClockInfo(self, handle, which):
        return {1: 1980, 2: 3201}[which]

    def nvmlShutdown(self):
        self.shutdown = True


def test_nvml_milliwatts_and_device_info():
    fake = FakeNvml()
    source = pw.NvmlSource(nvml=fake)
    source.open()
    rails = source.read()
    assert rails == {"gpu": pytest.approx(71.234)}
    assert source.total(rails)[0] == pytest.approx(71.234)
    info = source.device_info()
    assert info["name"] == "NVIDIA H200" and info["sm_clock_mhz"] == 1980 and "driver" not in info
    source.close()
    assert fake.shutdown


def test_nvml_reads_the_gpu_torch_runs_on(monkeypatch):
    """torch's cuda:N counts the visible GPUs; NVML counts them all (or takes a UUID)."""
    assert pw.nvml_device("cuda", {}) == 0 and pw.nvml_device("cuda:1", {}) == 1
    assert pw.nvml_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "2,3"}) == 3
    assert pw.nvml_device("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-8f6a1c2e-0000"}) == "GPU-8f6a1c2e-0000"
    fake = FakeNvml()
    fake.nvmlDeviceGetHandleByUUID = lambda uuid: ("gpu", uuid)
    source = pw.NvmlSource(index="GPU-8f6a1c2e-0000", nvml=fake)
    source.open()
    assert source._handle == ("gpu", "GPU-8f6a1c2e-0000")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pw.make_source("nvml", "cuda:2").index == 2 and pw.make_source("nvml", "cpu").index == 0
    assert pw.auto_candidates("cuda:1") == ["nvml"] or pw.is_jetson() or pw.is_zynq()


def test_nvml_failure_is_a_reason():
    with pytest.raises(pw.PowerUnavailable, match="nvml: Driver Not Loaded"):
        pw.NvmlSource(nvml=FakeNvml(fail="Driver Not Loaded")).open()
    fake = FakeNvml()  # initialised, then no such GPU: NVML is shut down again

    def no_such_gpu(uuid):
        raise RuntimeError("Not Found")

    fake.nvmlDeviceGetHandleByUUID = no_such_gpu
    with pytest.raises(pw.PowerUnavailable, match="nvml: Not Found"):
        pw.NvmlSource(index="GPU-0", nvml=fake).open()
    assert fake.shutdown


def pynq_rails():
    data = json.loads((FIX / "pynq_zcu104_rails.json").read_text())["rails"]
    return {name: SimpleNamespace(power=SimpleNamespace(value=r["power"]),
                                  voltage=SimpleNamespace(value=r["voltage"])) for name, r in data.items()}


def test_pynq_zcu104_board_input_rail():
    rails = pynq_rails()
    rails["VCCAUX"] = SimpleNamespace(power=None)  # a rail with voltage only is not read
    source = pw.PynqSource(rails)
    source.open()
    reading = source.read()
    assert len(reading) == 10 and reading["INT"] == 3.5
    assert source.total(reading) == (14.05, "12V")


def test_pynq_board_without_pmbus():
    with pytest.raises(pw.PowerUnavailable, match="no PMBus"):
        pw.PynqSource({}).open()
    assert pw.pynq_total({"INT": 3.5, "1V8": 0.5}) == (4.0, "sum(1V8+INT)")


# ---------------------------------------------------------------------------------------
# choosing a source, sampling, summarizing


def test_open_source_auto_none_and_explicit(monkeypatch):
    monkeypatch.setattr(pw, "auto_candidates", lambda device: ["nvml"])
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail="NVML Shared Library Not Found"))
    source, why = pw.open_source("auto", "cuda")
    assert source is None and why == "nvml: NVML Shared Library Not Found"
    with pytest.raises(SenteiError, match="--power nvml: nvml: NVML Shared Library Not Found"):
        pw.open_source("nvml", "cuda")
    assert pw.open_source("none", "cpu") == (None, "not requested (--power none)")


def test_open_source_reports_a_sensor_failing_its_own_way(monkeypatch):
    """An OSError from a driver (not a PowerUnavailable) is a reason for auto and a one-line error when named."""

    class Broken(pw.PowerSource):
        name, closed = "ina3221", False

        def open(self):
            raise OSError(5, "Input/output error")

        def read(self):
            return None

        def close(self):
            Broken.closed = True

    monkeypatch.setattr(pw, "make_source", lambda name, device: Broken())
    monkeypatch.setattr(pw, "auto_candidates", lambda device: ["ina3221"])
    assert pw.open_source("auto", "cpu") == (None, "ina3221: OSError: [Errno 5] Input/output error")
    assert Broken.closed
    with pytest.raises(SenteiError, match=r"^--power ina3221: ina3221: OSError: \[Errno 5\] Input/output error; use"):
        pw.open_source("ina3221", "cpu")


class RampSource(pw.PowerSource):
    name = "ramp"
    interval_s = 0.01

    def __init__(self, fail_after=None):
        self.n, self.fail_after = 0, fail_after

    def read(self):
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            raise OSError("sensor went away")
        return {"a": 2.0, "b": 3.0}


def test_sampler_thread_collects_and_stops():
    sampler = pw.PowerSampler(RampSource()).start()
    time.sleep(0.15)
    trace = sampler.stop(timeout_s=1.0)
    assert len(trace.totals) >= 3 and set(trace.totals) == {5.0}
    assert trace.rail_means() == {"a": 2.0, "b": 3.0}
    assert not any(t.name.startswith("sentei-power") for t in threading.enumerate())


def test_failing_sensor_ends_in_none_with_the_reason():
    sampler = pw.PowerSampler(RampSource(fail_after=1)).start()
    time.sleep(0.1)
    trace = sampler.stop()
    assert "sensor went away" in trace.error
    summary = pw.summarize(trace, None, frames=10, seconds=1.0)
    assert summary["status"] == "none" and "sensor went away" in summary["reason"]


def test_summary_energy_per_frame_and_dynamic_power():
    run = pw.PowerTrace("x", times=[0.0, 1.0, 2.0, 3.0], totals=[10.0, 12.0, 12.0, 10.0],
                        rails=[{"r": 1.0}] * 4, total_from="r")
    idle = pw.PowerTrace("x", times=[0.0, 1.0, 2.0], totals=[4.0, 4.0, 4.0])
    s = pw.summarize(run, idle, frames=20, seconds=2.0)
    mean = (11.0 + 12.0 + 11.0) / 3  # trapezoids over three 1 s intervals
    assert s["mean_w"] == pytest.approx(mean)
    assert s["energy_per_frame_j"] == pytest.approx(mean * 2.0 / 20)
    assert s["frames_per_j"] == pytest.approx(20 / (mean * 2.0))
    assert s["idle_w"] == pytest.approx(4.0) and s["dynamic_w"] == pytest.approx(mean - 4.0)
    assert s["dynamic_energy_per_frame_j"] == pytest.approx((mean - 4.0) * 2.0 / 20)
    none = pw.summarize(None, None, 20, 2.0, why_none="RAPL: absent")
    assert none == {"status": "none", "reason": "RAPL: absent"}
    short = pw.summarize(pw.PowerTrace("x", times=[0.0], totals=[3.0]), None, 1, 0.01)
    assert short["status"] == "none" and "1 reading" in short["reason"]


def test_summary_of_rounds_sums_energy_and_skips_the_gaps():
    """--rounds: energy = sum of each round's mean power x its time, never a trapezoid across the
    gap when another engine ran (there the rounds' readings would be joined)."""
    r1 = pw.PowerTrace("x", times=[0.0, 1.0, 2.0], totals=[10.0, 10.0, 10.0], rails=[{"r": 10.0}] * 3, total_from="r")
    r2 = pw.PowerTrace("x", times=[50.0, 51.0], totals=[20.0, 20.0], rails=[{"r": 20.0}] * 2, total_from="r")
    idle = pw.PowerTrace("x", times=[0.0, 1.0, 2.0], totals=[4.0, 4.0, 4.0])
    s = pw.summarize_rounds([(r1, 10, 2.0), (r2, 30, 1.0)], idle)
    energy = 10.0 * 2.0 + 20.0 * 1.0
    assert s["mean_w"] == pytest.approx(energy / 3.0) and s["rounds"] == 2 and s["samples"] == 5
    assert s["energy_per_frame_j"] == pytest.approx(energy / 40) and s["frames_per_j"] == pytest.approx(40 / energy)
    assert s["rails_mean_w"]["r"] == pytest.approx(energy / 3.0)
    assert s["dynamic_w"] == pytest.approx(energy / 3.0 - 4.0)
    assert s["dynamic_energy_per_frame_j"] == pytest.approx((energy / 3.0 - 4.0) * 3.0 / 40)
    assert pw.summarize_rounds([(r1, 10, 2.0)], idle) == pw.summarize(r1, idle, 10, 2.0)
    short = pw.PowerTrace("x", times=[0.0], totals=[3.0])
    assert pw.summarize_rounds([(r1, 10, 2.0), (short, 1, 0.01)], None)["status"] == "none"
