# Shared by hls_build.tcl and vivado_build.tcl: one-line failures and the settings file.
#
# The settings file (written by write_settings.py from the board's JSON, the clock and the
# paths) is named by the environment variable SENTEI_SETTINGS, because vitis_hls and vivado
# hand -tclargs to a script differently; it fills the array `sentei`.

proc sentei_fail {msg} {
    puts stderr "sentei build: error: $msg"
    error $msg
}

# Source the settings into the global array `sentei` and check that it holds every key.
proc sentei_load_settings {keys} {
    global sentei
    if {![info exists ::env(SENTEI_SETTINGS)] || ![file exists $::env(SENTEI_SETTINGS)]} {
        sentei_fail "SENTEI_SETTINGS does not name a settings file: run the build through\
                     `make -C overlay BOARD=... MODEL=...`"
    }
    uplevel #0 [list source $::env(SENTEI_SETTINGS)]
    foreach key $keys {
        if {![info exists sentei($key)]} {
            sentei_fail "settings file $::env(SENTEI_SETTINGS) lacks sentei($key): rerun make"
        }
    }
}
