"""The C++ toolchain the accelerator's software models build with: compiler, HLS headers, cache.

The C-simulation of the HLS sources (:mod:`sentei.overlay.csim`) and the clock-level
pipeline simulator (:mod:`sentei.overlay.simulate`) both compile C++ with the same
compiler into the same cache; this module finds them, below both, so that neither imports
the other. Xilinx's ``ap_int.h`` and ``hls_stream.h`` come from the installed hls4ml
package, found through importlib and never copied.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from sentei.cache import cache_dir
from sentei.errors import SenteiError

INSTALL_HINT = "pip install 'sentei[dev]'"


def hls_include_dir() -> Path:
    """Directory of Xilinx's ``ap_int.h`` and ``hls_stream.h`` inside the installed hls4ml."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise SenteiError(f"C-simulation needs Xilinx's ap_int.h from the hls4ml package, which is not "
                          f"installed: {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        inc = Path(root) / "templates" / "vivado" / "ap_types"
        if (inc / "ap_int.h").is_file() and (inc / "hls_stream.h").is_file():
            return inc
    raise SenteiError(f"the installed hls4ml has no templates/vivado/ap_types/ap_int.h; reinstall it: "
                      f"{INSTALL_HINT}")


def find_compiler() -> str:
    """The C++ compiler: ``$CXX`` or ``g++`` on PATH."""
    cxx = os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if path is None:
        raise SenteiError(f"C-simulation needs a C++ compiler and {cxx!r} is not on PATH: install g++ "
                          f"(e.g. apt-get install g++) and {INSTALL_HINT}")
    return path


def cache_root() -> Path:
    """``$SENTEI_CACHE/csim``, or ``~/.cache/sentei/csim``."""
    return cache_dir("csim")
