"""sentei.host.runtime.pynq_ip: SenteiIP is registered with PYNQ by importing the module, by VLNV, and
PYNQ imports the module by itself through the ``pynq.lib`` entry point."""
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sentei.host.runtime import driver as drv
from sentei.overlay import registers as R

needs_pynq = pytest.mark.skipif(importlib.util.find_spec("pynq") is None,
                                reason="pynq is not installed (pip install 'sentei[board]')")
ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str, tmp_path) -> None:
    """Run ``code`` in a new interpreter (PYNQ's driver table is process-wide), away from the checkout
    (whose folder may hold a stale ``sentei.egg-info`` that would shadow the installed metadata)."""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_without_pynq_the_overlay_is_one_line(tmp_path):
    """A PC install without the board extra: the host imports, SenteiOverlay says what is missing."""
    _fresh("import sys\n"
           "sys.modules['pynq'] = None  # as if not installed\n"
           "import sentei.host\n"
           "from sentei.errors import SenteiError\n"
           "try:\n"
           "    sentei.host.SenteiOverlay\n"
           "except SenteiError as exc:\n"
           "    assert 'pynq is not installed' in str(exc) and '\\n' not in str(exc), exc\n"
           "else:\n"
           "    raise AssertionError('no error')\n", tmp_path)



@needs_pynq
def test_importing_the_module_registers_the_driver_by_vlnv(tmp_path):
    _fresh("import pynq.overlay as o\n"
           f"vlnv = {R.VLNV!r}\n"
           "assert vlnv not in o._ip_drivers, 'registered before the import'\n"
           "import sentei.host.runtime.pynq_ip as m\n"
           "assert o._ip_drivers[vlnv] is m.SenteiIP and o._ip_drivers[vlnv.rpartition(':')[0]] is m.SenteiIP\n"
           # PYNQ's own binding step, on the ip_dict entry a .hwh gives for the accelerator
           "desc = {'hierarchies': {}, 'ip': {'sentei_top_0': {'type': vlnv}}}\n"
           "o._assign_drivers(desc, False, None)\n"
           "assert desc['ip']['sentei_top_0']['driver'] is m.SenteiIP\n", tmp_path)


@needs_pynq
def test_the_driver_class_is_a_module_level_default_ip():
    import pynq

    from sentei.host.runtime import pynq_ip

    assert drv.board_driver_class() is pynq_ip.SenteiIP  # the very class PYNQ registered, not a copy
    assert issubclass(pynq_ip.SenteiIP, pynq.DefaultIP) and issubclass(pynq_ip.SenteiIP, drv.SenteiDriver)
    assert pynq_ip.SenteiIP.bindto == [R.VLNV] and pynq_ip.SenteiIP.__module__ == drv.BOARD_DRIVER_MODULE
    assert R.VLNV == "sentei.org:hls:sentei_top:1.0"  # what overlay/scripts/hls_build.tcl exports


def _pynq_lib_points() -> set:
    """``(name, module)`` of the installed ``pynq.lib`` entry points."""
    found = importlib.metadata.entry_points()
    group = found.select(group="pynq.lib") if hasattr(found, "select") else found.get("pynq.lib", [])
    return {(ep.name, ep.value) for ep in group}


def test_the_pynq_lib_entry_point_names_the_driver_module():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pynq.lib"] == {"sentei": drv.BOARD_DRIVER_MODULE}
    assert {value for name, value in _pynq_lib_points() if name == "sentei"} <= {drv.BOARD_DRIVER_MODULE}


@needs_pynq
def test_pynq_imports_the_driver_through_the_entry_point(tmp_path):
    """What ``pynq.Overlay.__init__`` does first: import the ``pynq.lib`` plugins, then bind."""
    out = subprocess.run([sys.executable, "-c",
                          "import sys, pynq.overlay as o\n"
                          "from pynqutils.setup_utils import ExtensionsManager\n"
                          "if 'sentei.host.runtime.pynq_ip' not in [e.module_name for e in ExtensionsManager('pynq.lib').list]:\n"
                          "    sys.exit(3)\n"
                          "o.Overlay._register_drivers(None)\n"
                          f"assert 'sentei.host.runtime.pynq_ip' in sys.modules and {R.VLNV!r} in o._ip_drivers\n"],
                         cwd=tmp_path)
    if out.returncode == 3:
        pytest.skip("this environment's sentei was installed before the pynq.lib entry point (pip install -e .)")
    assert out.returncode == 0
