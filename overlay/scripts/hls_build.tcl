# Vitis HLS flow of the sentei accelerator: C simulation, synthesis, optional C/RTL
# co-simulation, export as a Vivado IP (docs/build.md).
#
#   SENTEI_SETTINGS=build/zcu104/settings.tcl vitis_hls -f hls_build.tcl
#   SENTEI_SETTINGS=build/zcu104/settings.tcl vitis-run --mode hls --tcl hls_build.tcl   (where vitis_hls is gone)
#
# The settings (scripts/write_settings.py, run by the Makefile) name the part, the clock,
# the HLS sources (overlay/hls), the generated network headers (`sentei overlay codegen`),
# the testbench (overlay/tb) and its golden vectors (`sentei overlay csim --keep`), and the
# IP's VLNV from overlay/registers.py. Settings are passed through the environment because
# vitis_hls and vivado hand -tclargs to a script differently. Written for Vitis HLS 2023.x (docs/build.md, Requirements).

set sentei_scripts [file dirname [file normalize [info script]]]
if {[info exists ::env(SENTEI_SCRIPTS)]} { set sentei_scripts $::env(SENTEI_SCRIPTS) }
source [file join $sentei_scripts common.tcl]
sentei_load_settings {part clock_period_ns top hls_dir gen_dir tb_dir vectors_dir csim_frames csim cosim
             project_dir ip_vendor ip_library ip_version}

set sources [lsort [glob -nocomplain -directory $sentei(hls_dir) *.cpp]]
set headers [lsort [glob -nocomplain -directory $sentei(hls_dir) *.hpp]]
set generated [list [file join $sentei(gen_dir) network_config.h] [file join $sentei(gen_dir) network.h]]
set benches [lsort [glob -nocomplain -directory $sentei(tb_dir) *_tb.cpp]]
set bench_headers [lsort [glob -nocomplain -directory $sentei(tb_dir) *.hpp]]
if {[llength $sources] == 0} { sentei_fail "no HLS sources (*.cpp) in $sentei(hls_dir)" }
foreach f $generated {
    if {![file exists $f]} { sentei_fail "missing $f: run `sentei overlay codegen --model M --out $sentei(gen_dir)`" }
}
if {($sentei(csim) || $sentei(cosim)) && [llength $benches] == 0} {
    sentei_fail "no testbench (*_tb.cpp) in $sentei(tb_dir)"
}
if {($sentei(csim) || $sentei(cosim)) && ![file exists [file join $sentei(vectors_dir) weights.npy]]} {
    sentei_fail "no golden vectors in $sentei(vectors_dir): run `sentei overlay csim --model M --keep $sentei(vectors_dir)`"
}

# the generated headers sit in their own directory; the templates include each other by name
set cflags "-std=c++14 -I$sentei(hls_dir) -I$sentei(gen_dir)"
set tb_cflags "$cflags -I$sentei(tb_dir)"
set csim_report [file join $sentei(project_dir) csim_report.json]
set argv_tb "$sentei(vectors_dir) $sentei(csim_frames) $csim_report"

cd $sentei(project_dir)
open_project -reset sentei_hls
set_top $sentei(top)
foreach f [concat $sources $headers $generated] {
    add_files $f -cflags $cflags
}
foreach f [concat $benches $bench_headers] {
    add_files -tb $f -cflags $tb_cflags
}
add_files -tb $sentei(vectors_dir)

open_solution -reset -flow_target vivado sol1
set_part $sentei(part)
create_clock -period $sentei(clock_period_ns) -name default
if {$sentei(csim)} {
    # the testbench returns its mismatch count: csim_design fails on any mismatch
    csim_design -argv $argv_tb
}
csynth_design
if {$sentei(cosim)} {
    # dataflow profiling records every FIFO's occupancy and every process's stalls: the figures
    # `sentei perf --simulate` predicts (a FIFO that fills and blocks its producer is a stall)
    cosim_design -rtl verilog -trace_level none -enable_dataflow_profiling -argv $argv_tb
}
export_design -format ip_catalog -rtl verilog -vendor $sentei(ip_vendor) -library $sentei(ip_library) \
    -version $sentei(ip_version) -ipname $sentei(top) -display_name "sentei filter-wise sparse CNN" \
    -description "Inter-layer pipelined zero-weight-skipping CNN accelerator (sentei)"
puts "sentei build: IP $sentei(ip_vendor):$sentei(ip_library):$sentei(top):$sentei(ip_version) exported to\
      [file join $sentei(project_dir) sentei_hls sol1 impl ip]"
exit
