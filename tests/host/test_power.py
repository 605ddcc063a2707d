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
from sentei.host.bench import power as pw
from sentei.host.bench.power import choose, pynq_pmbus, rapl

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
    assert total == pytest.approx(3.205 + 4.405 + 4.765)  # VDDQ_VDD2_1V8AO is part of VIN_SYS_5V0
    assert label.startswith("sum(VDD_CPU_CV+VDD_GPU_SOC+VIN_SYS_5V0): AGX Orin module rails")


def test_agx_orin_ina3221_and_tegrastats_agree_on_the_same_readings(tmp_path):
    """The sysfs tree holds the readings of tegrastats_agx_orin.txt's first line (to the mW, as
    tegrastats prints them), plus the VDDQ_VDD2_1V8AO channel that the INA3221 always has and
    tegrastats prints on some L4T releases only: all three give one module total."""
    ina = pw.Ina3221Source(sysfs_tree(tmp_path, "sysfs_agx_orin_l4t36.json"))
    ina.open()
    rails = ina.read()
    watts = {name: f"{round(w * 1000)}mW/{round(w * 1000)}mW" for name, w in rails.items()}
    three = " ".join(f"{name} {watts[name]}" for name in ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"))
    for line in (three, three + f" VDDQ_VDD2_1V8AO {watts['VDDQ_VDD2_1V8AO']}"):
        tegra = pw.TegrastatsSource(command=fake_tegrastats(tmp_path, f"while true; do echo 'RAM 1/2MB {line}'; "
                                                                      f"sleep 0.02; done"))
        tegra.open()
        try:
            reading = tegra.read()
        finally:
            tegra.close()
        assert tegra.total(reading) == (pytest.approx(ina.total(rails)[0]), ina.total(rails)[1])
    # and the recorded line itself, whose VIN_SYS_5V0 the tree reproduces to 2 mW
    recorded = pw.jetson_total(pw.parse_tegrastats(tegra_line("agx_orin")))[0]
    assert recorded == pytest.approx(ina.total(rails)[0], abs=0.003)


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

    monkeypatch.setattr(rapl, "_read_number", denied)
    with pytest.raises(pw.PowerUnavailable, match="root only"):
        pw.find_rapl(root)
    with pytest.raises(pw.PowerUnavailable, match="does not exist"):
        pw.find_rapl(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------
# NVML and PYNQ through stand-ins of their libraries


class NvmlError(Exception):
    """What nvidia-ml-py raises (its NVMLError subclasses print like this)."""


GPU0 = "GPU-5a0c5b4e-9f41-7d2c-1a3b-2c4d6e8f0a1b"
GPU1 = "GPU-8f6a1c2e-3b4d-5e6f-7a8b-9c0d1e2f3a4b"
MIG1 = "MIG-0d1e2f3a-4b5c-6d7e-8f9a-0b1c2d3e4f5a"  # an instance of GPU1


class FakeNvml:
    """nvidia-ml-py stand-in: GPUs in NVML's (PCI bus) order, MIG instances, and a board whose
    energy is ``energy_j(t)`` joules at time ``t`` (``self.t``, which the tests move).

    ``nvmlDeviceGetTotalEnergyConsumption`` is that counter in mJ (``counter=False``: Not
    Supported, as before Volta); ``nvmlDeviceGetPowerUsage`` is what NVML documents for Ampere
    and newer, the mean over the last second (mW). A MIG instance reads neither (Not Supported).
    Every successful nvmlInit and every nvmlShutdown is counted.
    """

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_DEVICE_MIG_ENABLE = 1, 2, 1

    def __init__(self, gpus=(GPU0,), migs=None, pci=None, energy_j=lambda t: 1e6 + 71.234 * t, counter=True,
                 fail=None):
        self.gpus, self.migs, self.pci = list(gpus), dict(migs or {}), dict(pci or {})
        self.energy_j, self.counter, self.fail = energy_j, counter, fail
        self.t, self.sm_clock = 0.0, 1980
        self.inits = self.shutdowns = 0

    @property
    def shutdown(self):
        return self.shutdowns > 0

    def nvmlInit(self):
        if self.fail:
            raise NvmlError(self.fail)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", self.gpus[i])

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid in self.gpus or uuid in self.migs:
            return ("gpu" if uuid in self.gpus else "mig", uuid)
        raise NvmlError("Not Found")

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        return ("gpu", self.pci[bus_id])

    def nvmlDeviceGetUUID(self, handle):
        return handle[1]

    def nvmlDeviceIsMigDeviceHandle(self, handle):
        return int(handle[0] == "mig")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle):
        return ("gpu", self.migs[handle[1]])

    def nvmlDeviceGetMigMode(self, handle):
        return [int(handle[1] in self.migs.values()), 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, k):
        mine = [m for m, parent in self.migs.items() if parent == handle[1]]
        if k >= len(mine):
            raise NvmlError("Not Found")
        return ("mig", mine[k])

    def _board(self, handle):
        if handle[0] == "mig":
            raise NvmlError("Not Supported")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._board(handle)
        if not self.counter:
            raise NvmlError("Not Supported")
        return int(round(self.energy_j(self.t) * 1000))

    def nvmlDeviceGetPowerUsage(self, handle):
        self._board(handle)
        return int(round((self.energy_j(self.t) - self.energy_j(self.t - 1.0)) * 1000))

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H200"

    def nvmlDeviceGetClockInfo(self, handle, which):
        return {1: self.sm_clock, 2: 3201}[which]


def nvml_source(fake, index=0):
    return pw.NvmlSource(index, nvml=fake, clock=lambda: fake.t)


def test_nvml_without_energy_counter_reads_power_usage_and_device_info():
    fake = FakeNvml(counter=False)
    source = nvml_source(fake)
    source.open()
    rails = source.read()
    assert rails == {"gpu": pytest.approx(71.234)}
    total, label = source.total(rails)
    assert total == pytest.approx(71.234)
    assert label.startswith("gpu board (nvmlDeviceGetPowerUsage: averaged over 1 s") and "Not Supported" in label
    info = source.device_info()
    assert info["name"] == "NVIDIA H200" and info["uuid"] == GPU0 and "driver" not in info
    assert info["power_from"] == label
    source.close()
    assert fake.inits == fake.shutdowns == 1


def test_nvml_energy_counter_is_differenced_so_the_run_is_not_averaged_with_idle():
    """A board idling at 50 W steps to 300 W when the run starts (t = 0). The energy counter
    differenced gives 300 W from the first interval on; nvmlDeviceGetPowerUsage, a 1 s mean on
    Ampere and newer, would count the idle second in (about 237 W over a 2 s run)."""
    fake = FakeNvml(energy_j=lambda t: 5000.0 + (50.0 * t if t < 0 else 300.0 * t))
    source = nvml_source(fake)
    source.open()
    trace = pw.PowerTrace("nvml")
    for i in range(21):  # one reading every 0.1 s over the 2 s run
        fake.t = i * 0.1
        rails = source.read()
        if rails:
            trace.times.append(fake.t)
            trace.totals.append(source.total(rails)[0])
    assert len(trace.totals) == 20  # the first reading only primes the counter
    assert trace.totals == [pytest.approx(300.0)] * 20 and trace.mean_w() == pytest.approx(300.0)
    assert source.total({"gpu": 1.0})[1] == "gpu board (nvmlDeviceGetTotalEnergyConsumption, differenced)"
    usage = sum(fake.nvmlDeviceGetPowerUsage(("gpu", GPU0)) for fake.t in [i * 0.1 for i in range(1, 21)]) / 20000
    assert usage < 250  # what the old reading gave
    source.close()
    assert fake.inits == fake.shutdowns == 1


def test_nvml_counter_primed_afresh_for_each_sampling():
    """run_trtexec samples one source twice (inference, then idle): the idle series' first
    reading must not be the mean over the gap since the run's last reading."""
    fake = FakeNvml(energy_j=lambda t: 300.0 * min(t, 1.0) + 50.0 * max(t - 1.0, 0.0))  # 300 W, then 50 W
    source = nvml_source(fake)
    source.open()
    source.begin()
    for fake.t in (0.0, 0.5, 1.0):
        run = source.read()
    assert run == {"gpu": pytest.approx(300.0)}
    fake.t = 1.1
    source.begin()
    assert source.read() is None
    fake.t = 1.2
    assert source.read() == {"gpu": pytest.approx(50.0)}
    source.close()


def test_sampler_start_begins_a_series():
    source = RampSource()
    source.begin = lambda: setattr(source, "begun", getattr(source, "begun", 0) + 1)
    sampler = pw.PowerSampler(source).start()
    sampler.stop()
    assert source.begun == 1


def test_nvml_median_sm_clock_of_the_run_not_the_idle_one_after_it():
    fake = FakeNvml()
    source = nvml_source(fake)
    source.open()
    assert source.device_info()["sm_clock_mhz"] == 1980  # nothing recorded yet: the clock now
    assert source.device_info()["sm_clock_mhz_during_run"] is False
    for clock in (1980, 1755, 1980, 1830, 1980):
        fake.sm_clock, fake.t = clock, fake.t + 0.1
        source.read()
    fake.sm_clock = 345  # the run is over, the GPU idles
    info = source.device_info()
    assert info["sm_clock_mhz"] == 1980 and info["sm_clock_mhz_during_run"] is True
    assert info["sm_clock_readings"] == 5
    source.close()


class CudaUuid:
    """torch's _CUuuid: prints as the 8-4-4-4-12 hex of the UUID, without NVML's GPU-/MIG- kind."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


def fake_torch(monkeypatch, props, available=True):
    cuda = SimpleNamespace(is_available=lambda: available, current_device=lambda: 1,
                           get_device_properties=lambda n: props[n])
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda, version=SimpleNamespace(hip=None)))


def test_nvml_finds_the_gpu_by_torchs_uuid_not_by_counting(monkeypatch):
    """CUDA numbered the faster GPU first: torch's cuda:0 is NVML's 1 although CUDA_VISIBLE_DEVICES
    says nothing of it; torch's UUID finds it whatever the order."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    fake_torch(monkeypatch, [SimpleNamespace(uuid=CudaUuid(GPU1[4:])), SimpleNamespace(uuid=CudaUuid(GPU0[4:]))])
    assert pw.nvml_device("cuda:0") == GPU1 and pw.nvml_device("cuda") == GPU0  # cuda: torch's current device
    assert pw.make_source("nvml", "cuda:0").index == GPU1
    fake = FakeNvml(gpus=(GPU0, GPU1))
    source = nvml_source(fake, pw.nvml_device("cuda:0"))
    source.open()
    assert source._handle == ("gpu", GPU1) and source.device_info()["uuid"] == GPU1
    source.close()
    # a build without uuid but with the PCI location: NVML's bus id format
    fake_torch(monkeypatch, [SimpleNamespace(pci_domain_id=0, pci_bus_id=0x65, pci_device_id=0)])
    assert pw.nvml_device("cuda:0") == "00000000:65:00.0"
    source = nvml_source(FakeNvml(gpus=(GPU0, GPU1), pci={"00000000:65:00.0": GPU1}), "00000000:65:00.0")
    source.open()
    assert source._handle == ("gpu", GPU1)
    source.close()
    # torch without a GPU, or no such device: CUDA_VISIBLE_DEVICES as before
    fake_torch(monkeypatch, [], available=False)
    assert pw.nvml_device("cuda:1") == 1
    fake_torch(monkeypatch, [])
    assert pw.nvml_device("cuda:1") == 1


def test_nvml_mig_instance_reads_its_parent_gpu_and_says_so(monkeypatch):
    fake_torch(monkeypatch, [SimpleNamespace(uuid=CudaUuid(MIG1[4:]))])
    ident = pw.nvml_device("cuda:0")
    assert ident == "GPU-" + MIG1[4:]  # torch does not say GPU or MIG: NvmlSource tries both
    fake = FakeNvml(gpus=(GPU0, GPU1), migs={MIG1: GPU1})
    for name in (ident, MIG1, "MIG-" + GPU1 + "/1/0"):  # torch's, CUDA >= 11.4's and CUDA 11.0-11.3's spelling
        source = nvml_source(fake, name)
        source.open()
        assert source._handle == ("gpu", GPU1)
        fake.t += 0.1
        source.read()
        fake.t += 0.1
        rails = source.read()
        assert rails == {"gpu": pytest.approx(71.234, abs=0.01)}  # the counter counts whole mJ
        assert "the whole GPU's power, not the MIG instance's" in source.total(rails)[1]
        source.close()
    assert fake.inits == fake.shutdowns == 3


def test_nvml_uuid_prefix_as_cuda_accepts_it():
    fake = FakeNvml(gpus=(GPU0, GPU1), migs={MIG1: GPU1})
    assert pw.nvml_device("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-8f6a"}) == "GPU-8f6a"
    source = nvml_source(fake, "GPU-8f6a")
    source.open()
    assert source._handle == ("gpu", GPU1)
    source.close()
    source = nvml_source(fake, "MIG-0d1e")
    source.open()
    assert source._handle == ("gpu", GPU1) and source.whole_gpu
    source.close()
    with pytest.raises(pw.PowerUnavailable, match="GPU- is the start of 2 UUIDs"):
        nvml_source(fake, "GPU-").open()
    assert fake.inits == fake.shutdowns == 3


def test_nvml_reads_the_gpu_torch_runs_on(monkeypatch):
    """Without torch's answer: torch's cuda:N counts the visible GPUs; NVML counts them all (or takes a UUID)."""
    assert pw.nvml_device("cuda", {}) == 0 and pw.nvml_device("cuda:1", {}) == 1
    assert pw.nvml_device("cuda:1", {"CUDA_VISIBLE_DEVICES": "2,3"}) == 3
    assert pw.nvml_device("cuda", {"CUDA_VISIBLE_DEVICES": GPU1}) == GPU1
    source = nvml_source(FakeNvml(gpus=(GPU0, GPU1)), GPU1)
    source.open()
    assert source._handle == ("gpu", GPU1)
    source.close()
    fake_torch(monkeypatch, [], available=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pw.make_source("nvml", "cuda:2").index == 2 and pw.make_source("nvml", "cpu").index == 0
    assert pw.auto_candidates("cuda:1") == ["nvml"] or pw.is_jetson() or pw.is_zynq()


def test_nvml_failure_is_a_reason_and_nvml_is_shut_down_on_every_path():
    with pytest.raises(pw.PowerUnavailable, match="nvml: Driver Not Loaded"):
        pw.NvmlSource(nvml=FakeNvml(fail="Driver Not Loaded")).open()
    fake = FakeNvml()  # initialised, then no such GPU: NVML is shut down again
    with pytest.raises(pw.PowerUnavailable, match="nvml: Not Found"):
        nvml_source(fake, GPU1).open()
    assert fake.inits == fake.shutdowns == 1
    fake = FakeNvml(counter=False)  # neither an energy counter nor a power reading
    fake.nvmlDeviceGetPowerUsage = lambda handle: (_ for _ in ()).throw(NvmlError("Not Supported"))
    with pytest.raises(pw.PowerUnavailable, match=r"no energy counter \(Not Supported\) and no power reading"):
        nvml_source(fake).open()
    assert fake.inits == fake.shutdowns == 1
    fake = FakeNvml()
    source = nvml_source(fake)
    source.open()
    source.open()  # opened twice: the first is closed
    source.close()
    source.close()
    assert fake.inits == fake.shutdowns == 2


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


ULTRA96_V2_RAILS = ("AUX", "1V2", "PSDDR", "INT", "3V3_D", "PSAUX", "PSINT_LP", "3V3", "PSINT_FP", "PSPLL", "5V")


def test_pynq_total_is_the_board_input_only_where_there_is_one():
    """ZCU104's 12V is its input. Ultra96-V2's labels (Avnet/Ultra96-PYNQ, sensorconf-v2/ultra96.conf)
    have none ("5V" is its IR38060 buck's output), nor KV260's libsensors default labels, and
    VCCPSINTFP is a core rail: there the sum is given, and said to be the SoC rails, not the board."""
    assert pw.pynq_total({"12V": 14.05, "INT": 3.5}) == (14.05, "12V")
    watts, how = pw.pynq_total({name: 0.5 for name in ULTRA96_V2_RAILS})
    assert watts == pytest.approx(5.5)
    assert how == pw.PYNQ_SUM + ": sum(" + "+".join(sorted(ULTRA96_V2_RAILS)) + ")"
    assert pw.pynq_total({"VCCPSINTFP": 1.0, "VCCINT": 2.0}) == (3.0, pw.PYNQ_SUM + ": sum(VCCINT+VCCPSINTFP)")
    watts, how = pw.pynq_total({"power1": 1.5, "power2": 0.25})  # KV260: no sensors.d config
    assert watts == 1.75 and how.startswith(pw.PYNQ_SUM) and "same-named rails of other chips are not read" in how


def fake_pmbus(monkeypatch, watts):
    """pynq.pmbus stand-in: ``_lib.sensors_get_value(chip, number, out)`` writes ``watts[(chip, number)]``
    and returns 0, or returns -4 (-SENSORS_ERR_KERNEL) and leaves ``out`` alone where that is None;
    ``Sensor.value``, as pynq's, ignores the return and gives ``_value[0]`` (0.0 before a good read)."""
    mod = SimpleNamespace()

    class Lib:
        def sensors_get_value(self, chip, number, out):
            if watts[(chip, number)] is None:
                return -4
            out[0] = watts[(chip, number)]
            return 0

    class Sensor:
        def __init__(self, chip, number):
            self._chip, self._number, self._value = chip, number, [0.0]

        @property
        def value(self):
            mod._lib.sensors_get_value(self._chip, self._number, self._value)
            return self._value[0]

    Sensor.__module__ = "fake_pynq_pmbus"
    mod._lib, mod.Sensor = Lib(), Sensor
    monkeypatch.setitem(sys.modules, "fake_pynq_pmbus", mod)
    return {name: SimpleNamespace(power=Sensor(name, 1)) for name, _ in watts}


def test_pynq_failed_sensor_read_is_refused_not_a_zero_or_stale_figure(monkeypatch):
    watts = {("12V", 1): None, ("INT", 1): 3.5}
    source = pw.PynqSource(fake_pmbus(monkeypatch, watts))
    with pytest.raises(pw.PowerUnavailable, match=r"rail 12V's power failed .*sensors_get_value returned -4"):
        source.open()  # through Sensor.value: 12V reads 0.0, "measured"
    watts[("12V", 1)] = 14.05
    source = pw.PynqSource(fake_pmbus(monkeypatch, watts))
    source.open()
    assert source.total(source.read()) == (14.05, "12V")
    watts[("12V", 1)] = None
    assert source._rails["12V"].power.value == 14.05  # what pynq gives now: the last good value
    with pytest.raises(pw.PowerUnavailable, match="rail 12V's power failed"):
        source.read()


def test_pynq_total_of_exactly_zero_is_refused():
    """Where sensors_get_value cannot be reached, a failed first read still shows as 0.0 W."""
    rails = pynq_rails()
    rails["12V"] = SimpleNamespace(power=SimpleNamespace(value=0.0))
    with pytest.raises(pw.PowerUnavailable, match="12V reads exactly 0.0 W: a failed sensor read"):
        pw.PynqSource(rails).open()
    with pytest.raises(pw.PowerUnavailable, match="exactly 0.0 W"):
        pw.PynqSource({"INT": SimpleNamespace(power=SimpleNamespace(value=0.0))}).open()


def fake_pynq(monkeypatch, rails, lib=True):
    """A ``pynq`` module whose get_rails() returns ``rails`` and counts its calls; ``pmbus._lib`` is
    None for ``lib=False`` (libsensors not loaded). The process-wide cache starts empty."""
    pynq = SimpleNamespace(calls=0, pmbus=SimpleNamespace(_lib=object() if lib else None))

    def get_rails(config_file=None):
        pynq.calls += 1
        return rails

    pynq.get_rails = get_rails
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    monkeypatch.setattr(pynq_pmbus, "_PYNQ_RAILS", None)
    return pynq


def test_pynq_get_rails_once_per_process(monkeypatch):
    """Every get_rails() re-runs sensors_init, which leaks: the idle reading and each --rounds round
    open a source, and all of them share one call."""
    pynq = fake_pynq(monkeypatch, pynq_rails())
    for _ in range(2):
        source = pw.PynqSource()
        source.open()
        assert source.total(source.read()) == (14.05, "12V")
    assert pynq.calls == 1


def test_pynq_without_libsensors_says_so(monkeypatch):
    pynq = fake_pynq(monkeypatch, {}, lib=False)
    with pytest.raises(pw.PowerUnavailable, match=r"pynq could not load libsensors \(apt install libsensors-dev\)"):
        pw.PynqSource().open()
    assert pynq.calls == 0


# ---------------------------------------------------------------------------------------
# choosing a source, sampling, summarizing


def test_open_source_auto_none_and_explicit(monkeypatch):
    monkeypatch.setattr(choose, "auto_candidates", lambda device: ["nvml"])
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

    monkeypatch.setattr(choose, "make_source", lambda name, device: Broken())
    monkeypatch.setattr(choose, "auto_candidates", lambda device: ["ina3221"])
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


def test_summary_flags_a_run_whose_readings_are_all_identical():
    def run(totals):
        return pw.PowerTrace("x", times=[0.1 * i for i in range(len(totals))], totals=totals,
                             rails=[{"r": t} for t in totals], total_from="r")

    flat = pw.summarize(run([14.05] * 10), None, frames=10, seconds=1.0)
    assert flat["status"] == "measured" and flat["mean_w"] == pytest.approx(14.05)
    assert flat["warning"] == "x: every reading identical (10 x 14.05 W): a stuck sensor?"
    assert "warning" not in pw.summarize(run([14.05] * 9), None, frames=10, seconds=1.0)
    assert "warning" not in pw.summarize(run([14.05] * 9 + [14.1]), None, frames=10, seconds=1.0)
    ended = run([14.05] * 10)
    ended.error = "x: OSError: gone"
    assert pw.summarize(ended, None, 10, 1.0)["warning"] == ("x: OSError: gone; x: every reading identical "
                                                            "(10 x 14.05 W): a stuck sensor?")


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
