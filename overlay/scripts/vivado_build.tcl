# Vivado block design and bitstream of the sentei overlay (docs/build.md).
#
#   SENTEI_SETTINGS=build/zcu104/settings.tcl vivado -mode batch -source vivado_build.tcl
#
# The Makefile writes the settings (scripts/write_settings.py: the board's JSON, the clock,
# the paths) and runs this after the HLS step exported the IP. The design is the shell FINN
# builds for its Zynq targets: the processing system with the board preset, the PL clock
# from the PS at the requested frequency, the IP's AXI4-Lite slave on the PS master port
# through a SmartConnect, the IP's m_axi masters into one HP slave port through another,
# one proc_sys_reset. Out: <out_dir>/sentei.bit and sentei.hwh (PYNQ loads the .hwh beside
# the .bit by name), network.json (what the driver checks a model against), sentei_build.json,
# utilization and timing reports.
# Written for Vivado 2023.x (docs/build.md, Requirements).

set sentei_scripts [file dirname [file normalize [info script]]]
if {[info exists ::env(SENTEI_SCRIPTS)]} { set sentei_scripts $::env(SENTEI_SCRIPTS) }
source [file join $sentei_scripts common.tcl]
sentei_load_settings {board part board_part board_connections family ps_ip ps_rule ps_master ps_slave ps_config
             clock_source clock_property clock_actual_property reset_source master_clock_pin
             slave_clock_pin peripheral_base vlnv top ctrl_interface ctrl_range clock_mhz ip_repo
             project_dir out_dir jobs gen_dir}
set design sentei
set ps ps
set ip ${sentei(top)}_0

set tool_version [version -short]
if {![string match 2023.* $tool_version]} {
    puts "sentei build: warning: written for Vivado 2023.x, this is $tool_version"
}

# ---- project --------------------------------------------------------------------------
set proj_dir [file join $sentei(project_dir) vivado]
create_project -force sentei_vivado $proj_dir -part $sentei(part)
if {[info exists ::env(SENTEI_BOARD_REPO)]} {
    # board files not shipped with Vivado (Ultra96-V2, PYNQ-Z2): a local copy of the board store
    set_param board.repoPaths [concat $::env(SENTEI_BOARD_REPO) [get_param board.repoPaths]]
}
# The board JSON names the board file version it was written against; Vivado releases ship
# different ones (KV260 SOM 1.3 in 2022.1, 1.4 later), so the newest installed version of the
# same board (vendor:board:part0) is taken instead, with a warning.
set board_part $sentei(board_part)
if {[llength [get_board_parts -quiet $board_part]] == 0} {
    set board_family [join [lrange [split $board_part :] 0 2] :]
    set others [get_board_parts -quiet -latest_file_version "${board_family}:*"]
    if {[llength $others] == 0} {
        sentei_fail "board file $board_part is not installed (nor another version of $board_family):\
                     install it from the Vivado board store (Tools > Vivado Store > Boards) or point\
                     SENTEI_BOARD_REPO at a copy of github.com/Xilinx/XilinxBoardStore"
    }
    set newest [lindex [lsort -dictionary $others] end]
    puts "sentei build: warning: board file $board_part is not installed, using $newest"
    set board_part $newest
}
set_property board_part $board_part [current_project]
if {$sentei(board_connections) ne ""} {
    set_property board_connections $sentei(board_connections) [current_project]
}
set_property ip_repo_paths [list $sentei(ip_repo)] [current_project]
update_ip_catalog
if {[llength [get_ipdefs -quiet $sentei(vlnv)]] == 0} {
    sentei_fail "IP $sentei(vlnv) is not in $sentei(ip_repo): run the HLS step first (make -C overlay hls)"
}

proc latest_vlnv {pattern} {
    set defs [get_ipdefs -all $pattern]
    if {[llength $defs] == 0} { sentei_fail "no IP matches $pattern in this Vivado" }
    return [get_property VLNV [lindex [lsort -dictionary $defs] end]]
}

# ---- block design ---------------------------------------------------------------------
create_bd_design $design

# processing system with the board preset, then the ports and clock this design uses
create_bd_cell -type ip -vlnv [latest_vlnv $sentei(ps_ip):*] $ps
if {$sentei(family) eq "zynq_7000"} {
    apply_bd_automation -rule $sentei(ps_rule) \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} \
        [get_bd_cells $ps]
} else {
    apply_bd_automation -rule $sentei(ps_rule) -config {apply_board_preset "1"} [get_bd_cells $ps]
}
set ps_props [list]
foreach {name value} $sentei(ps_config) {
    lappend ps_props CONFIG.$name $value
}
lappend ps_props CONFIG.$sentei(clock_property) $sentei(clock_mhz)
set_property -dict $ps_props [get_bd_cells $ps]
set actual_mhz [get_property CONFIG.$sentei(clock_actual_property) [get_bd_cells $ps]]
if {$actual_mhz eq ""} { set actual_mhz $sentei(clock_mhz) }
if {abs($actual_mhz - $sentei(clock_mhz)) > 0.01 * $sentei(clock_mhz)} {
    puts "sentei build: warning: the PS makes $actual_mhz MHz for the requested $sentei(clock_mhz) MHz"
}

# the accelerator
create_bd_cell -type ip -vlnv $sentei(vlnv) $ip
set ctrl [get_bd_intf_pins -quiet $ip/$sentei(ctrl_interface)]
if {[llength $ctrl] == 0} {
    sentei_fail "IP $sentei(vlnv) has no $sentei(ctrl_interface) interface (the s_axilite bundle must be 'control')"
}
set masters [get_bd_intf_pins -of_objects [get_bd_cells $ip] -filter {MODE == Master}]
if {[llength $masters] == 0} { sentei_fail "IP $sentei(vlnv) has no m_axi master interface" }

# reset and interconnect
create_bd_cell -type ip -vlnv [latest_vlnv xilinx.com:ip:proc_sys_reset:*] rst_pl
set sc_vlnv [latest_vlnv xilinx.com:ip:smartconnect:*]
create_bd_cell -type ip -vlnv $sc_vlnv sc_ctrl
set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 1] [get_bd_cells sc_ctrl]
create_bd_cell -type ip -vlnv $sc_vlnv sc_mem
set_property -dict [list CONFIG.NUM_SI [llength $masters] CONFIG.NUM_MI 1] [get_bd_cells sc_mem]

# control: PS master -> sc_ctrl -> s_axi_control
connect_bd_intf_net [get_bd_intf_pins $ps/$sentei(ps_master)] [get_bd_intf_pins sc_ctrl/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins sc_ctrl/M00_AXI] $ctrl
# memory: every m_axi bundle -> sc_mem -> PS high-performance slave port (DDR)
set si 0
foreach m [lsort $masters] {
    connect_bd_intf_net $m [get_bd_intf_pins sc_mem/[format S%02d_AXI $si]]
    incr si
}
connect_bd_intf_net [get_bd_intf_pins sc_mem/M00_AXI] [get_bd_intf_pins $ps/$sentei(ps_slave)]

# one clock for everything: the PL clock of the PS
set clk [get_bd_pins $ps/$sentei(clock_source)]
connect_bd_net $clk [get_bd_pins $ps/$sentei(master_clock_pin)]
connect_bd_net $clk [get_bd_pins $ps/$sentei(slave_clock_pin)]
connect_bd_net $clk [get_bd_pins $ip/ap_clk]
connect_bd_net $clk [get_bd_pins sc_ctrl/aclk]
connect_bd_net $clk [get_bd_pins sc_mem/aclk]
connect_bd_net $clk [get_bd_pins rst_pl/slowest_sync_clk]
connect_bd_net [get_bd_pins $ps/$sentei(reset_source)] [get_bd_pins rst_pl/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl/interconnect_aresetn] [get_bd_pins sc_ctrl/aresetn]
connect_bd_net [get_bd_pins rst_pl/interconnect_aresetn] [get_bd_pins sc_mem/aresetn]
connect_bd_net [get_bd_pins rst_pl/peripheral_aresetn] [get_bd_pins $ip/ap_rst_n]
# The interrupt output stays unconnected: the driver polls AP_CTRL with a timeout.

# addresses: the register window at the start of the PL peripheral space, DDR for the masters
assign_bd_address -offset $sentei(peripheral_base) -range $sentei(ctrl_range) \
    [get_bd_addr_segs $ip/$sentei(ctrl_interface)/Reg]
assign_bd_address
validate_bd_design
save_bd_design

# ---- synthesis, implementation, bitstream ----------------------------------------------
set bd_file [get_files $design.bd]
make_wrapper -files $bd_file -import -fileset sources_1 -top
set_property top ${design}_wrapper [current_fileset]
# Each sparse engine broadcasts a window chunk from one register to every lane's copy (a net
# of lanes x columns x k*Wc loads, sparse_conv.hpp); placement-aware replication of such
# drivers is phys_opt_design's job: run it (and after routing) with the fan-out directive.
set_property STEPS.PHYS_OPT_DESIGN.IS_ENABLED true [get_runs impl_1]
set_property STEPS.PHYS_OPT_DESIGN.ARGS.DIRECTIVE AggressiveFanoutOpt [get_runs impl_1]
set_property STEPS.POST_ROUTE_PHYS_OPT_DESIGN.IS_ENABLED true [get_runs impl_1]
launch_runs impl_1 -to_step write_bitstream -jobs $sentei(jobs)
wait_on_run impl_1
set impl [get_runs impl_1]
set impl_dir [get_property DIRECTORY $impl]
if {[get_property PROGRESS $impl] ne "100%"} {
    sentei_fail "implementation did not finish ([get_property STATUS $impl]): see $impl_dir/runme.log"
}
open_run impl_1
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
file mkdir $sentei(out_dir)
report_utilization -hierarchical -file [file join $sentei(out_dir) utilization.rpt]
report_timing_summary -file [file join $sentei(out_dir) timing_summary.rpt]
set allow 0
if {[info exists sentei(allow_timing_violation)]} { set allow $sentei(allow_timing_violation) }
if {$wns ne "" && $wns < 0 && !$allow} {
    sentei_fail "timing not met at $actual_mhz MHz (WNS $wns ns): lower CLOCK_MHZ, or set\
                 ALLOW_TIMING_VIOLATION=1 to keep the bitstream anyway"
}

# ---- outputs: sentei.bit + sentei.hwh side by side, written whole or not at all --------
set bit [file join $impl_dir ${design}_wrapper.bit]
set hwh ""
foreach dir {gen srcs} {
    set candidate [file join $proj_dir sentei_vivado.$dir sources_1 bd $design hw_handoff $design.hwh]
    if {[file exists $candidate]} { set hwh $candidate; break }
}
if {![file exists $bit]} { sentei_fail "no bitstream at $bit: see $impl_dir/runme.log" }
if {$hwh eq ""} { sentei_fail "no hardware handoff $design.hwh under $proj_dir" }
proc sentei_publish {src dst} {
    file copy -force $src $dst.tmp
    file rename -force $dst.tmp $dst
}
sentei_publish $bit [file join $sentei(out_dir) sentei.bit]
sentei_publish $hwh [file join $sentei(out_dir) sentei.hwh]
# the network the bitstream was built for: the driver checks a model's blob length against it
set network [file join $sentei(gen_dir) network.json]
if {![file exists $network]} { sentei_fail "no $network: run `sentei overlay codegen --out $sentei(gen_dir)` first" }
sentei_publish $network [file join $sentei(out_dir) network.json]
set info [open [file join $sentei(out_dir) sentei_build.json.tmp] w]
puts $info [format {{"board": "%s", "part": "%s", "board_part": "%s", "vlnv": "%s", "clock_mhz_requested": %s,\
 "clock_mhz_actual": %s, "wns_ns": %s, "vivado": "%s"}} $sentei(board) $sentei(part) $board_part $sentei(vlnv) \
    $sentei(clock_mhz) $actual_mhz [expr {$wns eq "" ? "null" : $wns}] $tool_version]
close $info
file rename -force [file join $sentei(out_dir) sentei_build.json.tmp] [file join $sentei(out_dir) sentei_build.json]
puts "sentei build: wrote [file join $sentei(out_dir) sentei.bit] and sentei.hwh ($actual_mhz MHz, WNS $wns ns)"
close_project
