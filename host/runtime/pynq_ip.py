"""The PYNQ driver of the sentei accelerator: ``SenteiIP``, registered with PYNQ when this module is imported.

``pynq.DefaultIP``'s metaclass (``pynq.overlay.RegisterIP``) enters every subclass that has a
``bindto`` into PYNQ's driver table (``pynq.overlay._ip_drivers``, by VLNV and by VLNV without
its version) when the class statement runs. So this module's one class statement is the
registration: once it is imported, every ``pynq.Overlay`` whose ``.hwh`` holds an IP of type
:data:`sentei.overlay.registers.VLNV` -- the one ``overlay/scripts/hls_build.tcl`` exports --
hands out a ``SenteiIP`` for it (``overlay.sentei_top_0``).

PYNQ imports it by itself: ``pynq.Overlay.__init__`` imports every module registered under the
``pynq.lib`` entry point group (``Overlay._register_drivers``, PYNQ 3.0 and later) before it
assigns drivers, and sentei registers this module there (``pyproject.toml``). A plain
``pynq.Overlay("sentei.bit")`` in a notebook therefore binds the driver without naming sentei.

This module imports pynq at its top; nothing else in ``sentei.host`` imports it at module level
(``sentei.host.runtime.driver.board_driver_class`` imports it by name when a board is opened), so a PC
without pynq never reaches it.
"""
from __future__ import annotations

from pynq import DefaultIP

from sentei.host.runtime.driver import SenteiDriver
from sentei.overlay import registers as R


class SenteiIP(SenteiDriver, DefaultIP):
    """PYNQ driver of the sentei accelerator (``overlay.sentei_top_0``).

    The register protocol is :class:`~sentei.host.runtime.driver.SenteiDriver`'s (``start_command``,
    ``wait_done`` with a timeout, ``check_register_map``); ``read``/``write`` and
    ``register_map`` are ``DefaultIP``'s, on PYNQ's MMIO over the AXI4-Lite window.
    """

    bindto = [R.VLNV]

    def __init__(self, description: dict):
        super().__init__(description)
