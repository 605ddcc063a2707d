"""The build scripts without Xilinx tools: board files, Tcl run against recording stubs, Makefile checks.

The HLS and Vivado scripts run in plain ``tclsh`` with every Vitis/Vivado command replaced
by a stub that records its arguments (and answers the few queries the scripts make), so
the tests see the exact sequence of commands and properties a real tool would get.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sentei.host.modelfile import synthetic
from sentei.host.modelfile.schema import save
from sentei.overlay import codegen, registers
from sentei.overlay.perf import BOARD_FIELDS, BUDGET_FIELDS, known_boards, load_board

OVERLAY = Path(__file__).resolve().parents[2] / "overlay"
SCRIPTS = OVERLAY / "scripts"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh is not installed")

# device budgets from the Xilinx product tables (DS891 Zynq UltraScale+, DS190 Zynq-7000, DS987 K26)
DEVICES = {
    "zcu104": ("xczu7ev-ffvc1156-2-e", "xilinx.com:zcu104:part0:1.1", {"dsp": 1728, "bram18": 624, "lut": 230400}),
    "ultra96v2": ("xczu3eg-sbva484-1-i", "avnet.com:ultra96v2:part0:1.2", {"dsp": 360, "bram18": 432, "lut": 70560}),
    "kv260": ("xck26-sfvc784-2LV-c", "xilinx.com:kv260_som:part0:1.4", {"dsp": 1248, "bram18": 288, "lut": 117120}),
    "pynqz2": ("xc7z020clg400-1", "tul.com.tw:pynq-z2:part0:1.0", {"dsp": 220, "bram18": 280, "lut": 53200}),
}
# the PS ports and the configuration property that enables each, per family
FAMILY_PORTS = {
    "zynq_us+": {"ps_ip": "xilinx.com:ip:zynq_ultra_ps_e", "ps_master": "M_AXI_HPM0_FPD",
                 "ps_slave": "S_AXI_HP0_FPD", "clock_source": "pl_clk0", "reset_source": "pl_resetn0",
                 "master_clock_pin": "maxihpm0_fpd_aclk", "slave_clock_pin": "saxihp0_fpd_aclk",
                 "enable": {"PSU__USE__M_AXI_GP0": "1", "PSU__USE__S_AXI_GP2": "1"}},
    "zynq_7000": {"ps_ip": "xilinx.com:ip:processing_system7", "ps_master": "M_AXI_GP0",
                  "ps_slave": "S_AXI_HP0", "clock_source": "FCLK_CLK0", "reset_source": "FCLK_RESET0_N",
                  "master_clock_pin": "M_AXI_GP0_ACLK", "slave_clock_pin": "S_AXI_HP0_ACLK",
                  "enable": {"PCW_USE_M_AXI_GP0": "1", "PCW_USE_S_AXI_HP0": "1"}},
}


# ---------------------------------------------------------------------------------------
# board files


def test_the_four_boards_are_there():
    assert known_boards() == ["kv260", "pynqz2", "ultra96v2", "zcu104"]


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_board_file_fields_part_and_budget(name):
    spec = json.loads((OVERLAY / "boards" / f"{name}.json").read_text())
    assert set(BOARD_FIELDS) <= set(spec)
    assert set(BUDGET_FIELDS) <= set(spec["budget"])
    part, board_part, budget = DEVICES[name]
    assert spec["name"] == name
    assert spec["part"] == part and spec["board_part"] == board_part
    for key, value in budget.items():
        assert spec["budget"][key] == value, key
    ports = FAMILY_PORTS[spec["family"]]
    for key in ("ps_ip", "ps_master", "ps_slave", "clock_source", "reset_source", "master_clock_pin",
                "slave_clock_pin"):
        assert spec[key] == ports[key], key
    for prop, value in ports["enable"].items():
        assert spec["ps_config"][prop] == value, prop
    assert spec["ps_rule"] == spec["ps_ip"].replace(":ip:", ":bd_rule:")
    assert 0 < spec["default_clock_mhz"] <= spec["max_clock_mhz"]
    assert load_board(name).part == part


def test_kv260_names_its_carrier():
    spec = load_board("kv260").spec
    assert spec["board_connections"] == "som240_1_connector xilinx.com:kv260_carrier:som240_1_connector:1.3"
    assert all(load_board(b).spec["board_connections"] == "" for b in ("zcu104", "ultra96v2", "pynqz2"))


def test_the_hls_interfaces_are_the_ones_the_scripts_expect():
    """The Vivado script connects s_axi_<control bundle> and discovers the m_axi bundles."""
    text = (OVERLAY / "hls" / "sentei_top.cpp").read_text()
    lite = set(re.findall(r"mode\s*=\s*s_axilite\s+port\s*=\s*\w+\s+bundle\s*=\s*(\w+)", text))
    assert lite == {"control"}


# ---------------------------------------------------------------------------------------
# Tcl: syntax, then runs against recording stubs


@needs_tclsh
@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.tcl")))
def test_tcl_files_are_complete(script):
    text = (SCRIPTS / script).read_text()
    probe = f"puts [info complete {{{text}}}]"
    out = subprocess.run([TCLSH], input=probe, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "1", out.stderr


# Every tool command records "name<US>arg<US>arg..." one per line; queries answer from ::stub.
STUBS = r"""
set ::calls [open $::env(STUB_LOG) w]
proc rec {name args} { puts $::calls [join [concat [list $name] $args] "\x1f"]; flush $::calls }
proc unknown {name args} { rec $name {*}$args; return "" }
rename exit __exit
proc exit {{code 0}} { catch {rec exit $code; close $::calls}; __exit $code }
proc version {args} { return 2023.2 }
proc get_board_parts {args} {
    set hits [lsort -dictionary [lsearch -all -inline -glob $::stub(board_parts) [lindex $args end]]]
    if {[lsearch $args -latest_file_version] >= 0 && [llength $hits]} { return [lindex $hits end] }
    return $hits
}
proc get_param {args} { return "" }
proc current_project {args} { return proj }
proc current_fileset {args} { return sources_1 }
proc get_ipdefs {args} {
    set pattern [lindex $args end]
    if {$pattern eq $::stub(vlnv)} { return $::stub(ipdef) }
    return [string map {* 9.9} $pattern]
}
proc get_bd_cells {args} { return [lindex $args end] }
proc get_bd_pins {args} { return [lindex $args end] }
proc get_bd_addr_segs {args} { return [lindex $args end] }
proc get_files {args} { return [lindex $args end] }
proc get_runs {args} { return [lindex $args end] }
proc get_timing_paths {args} { return worst_path }
proc get_bd_intf_pins {args} {
    if {[lsearch $args -of_objects] >= 0} { return $::stub(masters) }
    return [lindex $args end]
}
proc get_property {name args} {
    switch -glob -- $name {
        VLNV { return [lindex $args end] }
        CONFIG.*ACT* { return $::stub(actual_mhz) }
        DIRECTORY { return $::stub(impl_dir) }
        PROGRESS { return 100% }
        STATUS { return "write_bitstream Complete!" }
        SLACK { return $::stub(slack) }
        default { return "" }
    }
}
foreach cmd {open_project set_top add_files open_solution set_part create_clock csim_design csynth_design
             cosim_design export_design create_project set_property update_ip_catalog create_bd_design
             create_bd_cell apply_bd_automation connect_bd_intf_net connect_bd_net assign_bd_address
             validate_bd_design save_bd_design make_wrapper launch_runs wait_on_run open_run
             report_utilization report_timing_summary close_project set_param} {
    proc $cmd {args} "rec $cmd {*}\$args; return {}"
}
"""


def _settings(tmp_path, board, **extra):
    gen = tmp_path / "gen"
    vectors = tmp_path / "vectors"
    vectors.mkdir(exist_ok=True)
    (vectors / "weights.npy").write_bytes(b"stub")
    codegen.generate(synthetic.random_model(0), gen)
    values = {"clock_mhz": "200", "jobs": "2", "csim": "1", "cosim": "0", "csim_frames": "1",
              "hls_dir": OVERLAY / "hls", "tb_dir": OVERLAY / "tb", "gen_dir": gen, "vectors_dir": vectors,
              "project_dir": tmp_path, "ip_repo": tmp_path / "ip", "out_dir": tmp_path / "out"}
    values.update(extra)
    out = tmp_path / "settings.tcl"
    args = [sys.executable, str(SCRIPTS / "write_settings.py"), "--board", board, "--out", str(out)]
    proc = subprocess.run(args + [f"{k}={v}" for k, v in values.items()], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def _masters():
    """The m_axi interfaces Vitis HLS makes from the top function's bundles."""
    text = (OVERLAY / "hls" / "sentei_top.cpp").read_text()
    bundles = sorted(set(re.findall(r"mode\s*=\s*m_axi\b.*?bundle\s*=\s*(\w+)", text)))
    assert bundles
    return [f"sentei_top_0/m_axi_{b}" for b in bundles]


def _run_tcl(tmp_path, script, settings, stub=None):
    stub = {"vlnv": registers.VLNV, "ipdef": registers.VLNV, "masters": " ".join(_masters()),
            "actual_mhz": "199.998", "slack": "0.125", "impl_dir": str(tmp_path / "impl"),
            "board_parts": " ".join(load_board(b).spec["board_part"] for b in DEVICES), **(stub or {})}
    log = tmp_path / "calls.log"
    prelude = STUBS + "".join(f"set ::stub({k}) {{{v}}}\n" for k, v in stub.items())
    driver = tmp_path / "driver.tcl"
    driver.write_text(prelude + f"source {{{SCRIPTS / script}}}\n")
    env = {"PATH": "/usr/bin:/bin", "SENTEI_SETTINGS": str(settings), "STUB_LOG": str(log)}
    proc = subprocess.run([TCLSH, str(driver)], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)
    calls = [line.split("\x1f") for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def _names(calls):
    return [c[0] for c in calls]


def _flag(call, flag):
    return call[call.index(flag) + 1]


@needs_tclsh
def test_hls_script_issues_the_flow_in_order(tmp_path):
    proc, calls = _run_tcl(tmp_path, "hls_build.tcl", _settings(tmp_path, "zcu104", clock_mhz="250"))
    assert proc.returncode == 0, proc.stderr
    flow = [n for n in _names(calls) if n != "add_files"]
    assert flow == ["open_project", "set_top", "open_solution", "set_part", "create_clock", "csim_design",
                    "csynth_design", "export_design", "exit"]
    by = {c[0]: c for c in calls}
    assert by["set_top"][1] == "sentei_top"
    assert by["set_part"][1] == "xczu7ev-ffvc1156-2-e"
    assert _flag(by["create_clock"], "-period") == "4.000"  # 250 MHz
    assert "-flow_target" in by["open_solution"] and _flag(by["open_solution"], "-flow_target") == "vivado"
    export = by["export_design"]
    assert _flag(export, "-format") == "ip_catalog"
    vlnv = ":".join(_flag(export, f) for f in ("-vendor", "-library", "-ipname", "-version"))
    assert vlnv == registers.VLNV
    adds = [c for c in calls if c[0] == "add_files"]
    design = {Path(c[1]).name for c in adds if c[1] != "-tb"}
    bench = {Path(c[2]).name for c in adds if c[1] == "-tb"}
    assert {"sentei_top.cpp", "sparse_conv.hpp", "network.h", "network_config.h"} <= design
    assert "sentei_tb.cpp" in bench and "vectors" in bench and "csim_api.cpp" not in bench
    cflags = _flag(next(c for c in adds if c[1].endswith("sentei_top.cpp")), "-cflags")
    assert f"-I{tmp_path / 'gen'}" in cflags.split() and f"-I{OVERLAY / 'hls'}" in cflags.split()
    argv = _flag(by["csim_design"], "-argv").split()
    assert argv[0] == str(tmp_path / "vectors") and argv[1] == "1"


@needs_tclsh
def test_hls_script_cosim_and_no_csim(tmp_path):
    proc, calls = _run_tcl(tmp_path, "hls_build.tcl", _settings(tmp_path, "pynqz2", csim="0", cosim="1",
                                                                clock_mhz="100"))
    assert proc.returncode == 0, proc.stderr
    names = _names(calls)
    assert "csim_design" not in names
    assert names.index("csynth_design") < names.index("cosim_design") < names.index("export_design")
    by = {c[0]: c for c in calls}
    assert by["set_part"][1] == "xc7z020clg400-1"
    assert _flag(by["create_clock"], "-period") == "10.000"


@needs_tclsh
def test_hls_script_stops_without_generated_headers(tmp_path):
    settings = _settings(tmp_path, "zcu104")
    (tmp_path / "gen" / "network.h").unlink()
    proc, calls = _run_tcl(tmp_path, "hls_build.tcl", settings)
    assert proc.returncode != 0
    assert "sentei overlay codegen" in proc.stderr
    assert "open_project" not in _names(calls)


@needs_tclsh
def test_scripts_refuse_to_run_without_settings(tmp_path):
    driver = tmp_path / "d.tcl"
    driver.write_text(f"source {{{SCRIPTS / 'vivado_build.tcl'}}}\n")
    proc = subprocess.run([TCLSH, str(driver)], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "SENTEI_SETTINGS" in proc.stderr


def _fake_outputs(tmp_path):
    impl = tmp_path / "impl"
    impl.mkdir(exist_ok=True)
    (impl / "sentei_wrapper.bit").write_bytes(b"BIT" * 10)
    hwh = tmp_path / "vivado" / "sentei_vivado.gen" / "sources_1" / "bd" / "sentei" / "hw_handoff"
    hwh.mkdir(parents=True, exist_ok=True)
    (hwh / "sentei.hwh").write_text("<hwh/>")


@needs_tclsh
@pytest.mark.parametrize("board", sorted(DEVICES))
def test_vivado_script_block_design(tmp_path, board):
    _fake_outputs(tmp_path)
    spec = load_board(board).spec
    ports = FAMILY_PORTS[spec["family"]]
    proc, calls = _run_tcl(tmp_path, "vivado_build.tcl", _settings(tmp_path, board, clock_mhz="100"))
    assert proc.returncode == 0, proc.stderr
    names = _names(calls)
    create = calls[names.index("create_project")]
    assert _flag(create, "-part") == spec["part"]
    props = [c for c in calls if c[0] == "set_property"]
    assert ["set_property", "board_part", spec["board_part"], "proj"] in props
    assert (["set_property", "board_connections", spec["board_connections"], "proj"] in props) == (board == "kv260")
    cells = {c[-1]: _flag(c, "-vlnv") for c in calls if c[0] == "create_bd_cell"}
    assert cells["ps"] == ports["ps_ip"] + ":9.9"
    assert cells["sentei_top_0"] == registers.VLNV
    auto = next(c for c in calls if c[0] == "apply_bd_automation" and _flag(c, "-rule") == spec["ps_rule"])
    assert 'apply_board_preset "1"' in _flag(auto, "-config")
    assert ("FIXED_IO, DDR" in _flag(auto, "-config")) == (spec["family"] == "zynq_7000")
    ps_dict = next(c for c in props if c[1] == "-dict" and c[-1] == "ps")[2].split()
    ps_props = dict(zip(ps_dict[::2], ps_dict[1::2]))
    assert ps_props[f"CONFIG.{spec['clock_property']}"] == "100"
    for prop, value in ports["enable"].items():
        assert ps_props[f"CONFIG.{prop}"] == value
    masters = _masters()
    sc_mem = next(c for c in props if c[1] == "-dict" and c[-1] == "sc_mem")[2].split()
    assert dict(zip(sc_mem[::2], sc_mem[1::2]))["CONFIG.NUM_SI"] == str(len(masters))
    nets = {(c[1], c[2]) for c in calls if c[0] == "connect_bd_intf_net"}
    assert (f"ps/{ports['ps_master']}", "sc_ctrl/S00_AXI") in nets
    assert ("sc_ctrl/M00_AXI", "sentei_top_0/s_axi_control") in nets
    assert ("sc_mem/M00_AXI", f"ps/{ports['ps_slave']}") in nets
    assert {(m, f"sc_mem/S{i:02d}_AXI") for i, m in enumerate(masters)} <= nets
    wires = {(c[1], c[2]) for c in calls if c[0] == "connect_bd_net"}
    clk = f"ps/{ports['clock_source']}"
    for pin in (f"ps/{ports['master_clock_pin']}", f"ps/{ports['slave_clock_pin']}", "sentei_top_0/ap_clk",
                "sc_ctrl/aclk", "sc_mem/aclk", "rst_pl/slowest_sync_clk"):
        assert (clk, pin) in wires, pin
    assert (f"ps/{ports['reset_source']}", "rst_pl/ext_reset_in") in wires
    assert ("rst_pl/peripheral_aresetn", "sentei_top_0/ap_rst_n") in wires
    addr = next(c for c in calls if c[0] == "assign_bd_address" and "-offset" in c)
    assert int(_flag(addr, "-offset"), 16) == int(spec["peripheral_base"], 16)
    assert int(_flag(addr, "-range")) == registers.ADDRESS_RANGE
    assert addr[-1] == "sentei_top_0/s_axi_control/Reg"
    order = [names.index(n) for n in ("create_bd_design", "assign_bd_address", "validate_bd_design",
                                      "make_wrapper", "launch_runs", "wait_on_run")]
    assert order == sorted(order)
    assert _flag(calls[names.index("launch_runs")], "-to_step") == "write_bitstream"
    # the engines' chunk broadcasts leave one register each: replicated by phys_opt_design, set before the run
    impl = {c[1]: c[2] for c in props if c[-1] == "impl_1"}
    assert impl == {"STEPS.PHYS_OPT_DESIGN.IS_ENABLED": "true",
                    "STEPS.PHYS_OPT_DESIGN.ARGS.DIRECTIVE": "AggressiveFanoutOpt",
                    "STEPS.POST_ROUTE_PHYS_OPT_DESIGN.IS_ENABLED": "true"}
    assert max(n for n, c in enumerate(calls) if c[0] == "set_property" and c[-1] == "impl_1") < names.index("launch_runs")
    out = tmp_path / "out"
    assert (out / "sentei.bit").read_bytes() == b"BIT" * 10
    assert (out / "sentei.hwh").read_text() == "<hwh/>"
    assert (out / "network.json").read_text() == (tmp_path / "gen" / "network.json").read_text()
    info = json.loads((out / "sentei_build.json").read_text())
    assert info == {"board": board, "part": spec["part"], "board_part": spec["board_part"], "vlnv": registers.VLNV,
                    "clock_mhz_requested": 100, "clock_mhz_actual": 199.998, "wns_ns": 0.125, "vivado": "2023.2"}
    assert not list(out.glob("*.tmp"))


@needs_tclsh
def test_vivado_script_takes_another_version_of_the_board_file(tmp_path):
    """A Vivado that ships KV260 SOM 1.3 (2022.1) and not the JSON's 1.4: the newest installed
    version of the same board is used, said in a warning and in sentei_build.json."""
    _fake_outputs(tmp_path)
    installed = "xilinx.com:kv260_som:part0:1.2 xilinx.com:kv260_som:part0:1.3 xilinx.com:zcu104:part0:1.1"
    proc, calls = _run_tcl(tmp_path, "vivado_build.tcl", _settings(tmp_path, "kv260"), {"board_parts": installed})
    assert proc.returncode == 0, proc.stderr
    assert "board file xilinx.com:kv260_som:part0:1.4 is not installed, using xilinx.com:kv260_som:part0:1.3" \
        in proc.stdout
    assert ["set_property", "board_part", "xilinx.com:kv260_som:part0:1.3", "proj"] in calls
    info = json.loads((tmp_path / "out" / "sentei_build.json").read_text())
    assert info["board_part"] == "xilinx.com:kv260_som:part0:1.3"


@needs_tclsh
def test_vivado_script_without_the_board_file_says_how_to_install_it(tmp_path):
    proc, calls = _run_tcl(tmp_path, "vivado_build.tcl", _settings(tmp_path, "kv260"),
                           {"board_parts": "xilinx.com:zcu104:part0:1.1"})
    assert proc.returncode != 0
    assert "board file xilinx.com:kv260_som:part0:1.4 is not installed" in proc.stderr
    assert "Vivado Store" in proc.stderr and "SENTEI_BOARD_REPO" in proc.stderr
    assert "create_bd_design" not in _names(calls)


@needs_tclsh
def test_vivado_script_rejects_failed_timing_and_keeps_no_bitstream(tmp_path):
    _fake_outputs(tmp_path)
    proc, _ = _run_tcl(tmp_path, "vivado_build.tcl", _settings(tmp_path, "zcu104"), {"slack": "-0.4"})
    assert proc.returncode != 0 and "timing not met" in proc.stderr and "CLOCK_MHZ" in proc.stderr
    assert not (tmp_path / "out" / "sentei.bit").exists()
    proc, _ = _run_tcl(tmp_path, "vivado_build.tcl",
                       _settings(tmp_path, "zcu104", allow_timing_violation="1"), {"slack": "-0.4"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "sentei.bit").exists()


@needs_tclsh
def test_vivado_script_needs_the_exported_ip(tmp_path):
    proc, calls = _run_tcl(tmp_path, "vivado_build.tcl", _settings(tmp_path, "kv260"), {"ipdef": ""})
    assert proc.returncode != 0 and "make -C overlay hls" in proc.stderr
    assert "create_bd_design" not in _names(calls)


def test_settings_reject_an_unknown_board_and_a_bad_clock(tmp_path):
    args = [sys.executable, str(SCRIPTS / "write_settings.py"), "--out", str(tmp_path / "s.tcl")]
    proc = subprocess.run(args + ["--board", "zc706"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown board 'zc706': known boards are kv260, pynqz2, ultra96v2, zcu104" in proc.stderr
    proc = subprocess.run(args + ["--board", "pynqz2", "clock_mhz=400"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "400 MHz" in proc.stderr
    proc = subprocess.run(args + ["--board", "pynqz2", "out_dir=/a/{b}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "brace" in proc.stderr
    assert not (tmp_path / "s.tcl").exists()


# ---------------------------------------------------------------------------------------
# Makefile


def _make(*args, cwd=None):
    return subprocess.run(["make", "--no-print-directory", "-C", str(OVERLAY), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.sentei"
    save(synthetic.random_model(0), path)
    return path


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_unknown_board_lists_the_known_ones(model_file):
    proc = _make("-n", "BOARD=zc706", f"MODEL={model_file}")
    assert proc.returncode != 0
    assert "unknown BOARD 'zc706': known boards are kv260 pynqz2 ultra96v2 zcu104" in proc.stderr
    assert proc.stdout == ""


@needs_make
def test_make_without_xilinx_tools_stops_before_doing_anything(model_file, tmp_path):
    proc = _make("-n", "BOARD=zcu104", f"MODEL={model_file}", f"PYTHON={sys.executable}",
                 f"BUILD_DIR={tmp_path / 'b'}")
    assert proc.returncode != 0 and "neither vitis_hls nor vitis-run is on PATH" in proc.stderr
    assert "settings64.sh" in proc.stderr
    proc = _make("vivado", "BOARD=ultra96v2", f"PYTHON={sys.executable}", f"BUILD_DIR={tmp_path / 'b'}")
    assert proc.returncode != 0 and "vivado is not on PATH" in proc.stderr
    assert not (tmp_path / "b").exists()


@needs_make
@pytest.mark.parametrize("tool, command", [
    ("vitis_hls", "vitis_hls -f {scripts}/hls_build.tcl -l {build}/vitis_hls.log"),
    ("vitis-run", "vitis-run --mode hls --tcl {scripts}/hls_build.tcl 2>&1 | tee {build}/vitis_hls.log"),
])
def test_make_runs_whichever_vitis_hls_launcher_is_installed(model_file, tmp_path, tool, command):
    """`vitis_hls -f` (to 2024.1) or, where only the unified Vitis is installed, `vitis-run --tcl`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / tool).chmod(0o755)
    build = tmp_path / "b"
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(OVERLAY), "-n", "hls", "BOARD=zcu104",
                           f"MODEL={model_file}", f"PYTHON={sys.executable}", f"BUILD_DIR={build}"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode == 0, proc.stderr
    assert command.format(scripts=SCRIPTS, build=build) in proc.stdout
    assert not build.exists()


@needs_make
def test_make_checks_the_model(tmp_path):
    proc = _make("-n", "BOARD=zcu104")
    assert proc.returncode != 0 and "MODEL is not set" in proc.stderr
    proc = _make("-n", "BOARD=zcu104", f"MODEL={tmp_path / 'missing.sentei'}")
    assert proc.returncode != 0 and "missing.sentei' does not exist" in proc.stderr
    bundled = sorted((Path(__file__).resolve().parents[2] / "host" / "bundled").glob("*.sentei"))
    if bundled:  # a bundled model by its name, as the README writes it
        proc = _make("-n", "perf", "BOARD=zcu104", f"MODEL={bundled[0].stem}", f"PYTHON={sys.executable}")
        assert proc.returncode == 0 and f"--model {bundled[0]}" in proc.stdout, proc.stderr


@needs_make
def test_make_settings_and_perf_run_here(model_file, tmp_path):
    build = tmp_path / "b"
    proc = _make("settings", "perf", "BOARD=pynqz2", "CLOCK_MHZ=125", f"MODEL={model_file}",
                 f"PYTHON={sys.executable}", f"BUILD_DIR={build}")
    assert proc.returncode == 0, proc.stderr
    text = (build / "settings.tcl").read_text()
    assert "set sentei(part) {xc7z020clg400-1}" in text and "set sentei(clock_period_ns) {8.000}" in text
    report = json.loads((build / "perf.json").read_text())
    assert report["board"] == "pynqz2" and report["clock_mhz"] == 125.0
