"""Engines that other parts of sentei add to the host, looked up by role and name.

The board runtime runs where torch is not installed, so ``host/`` never imports
``sentei.training``. The PyTorch engines behind ``--backend torch`` are registered from the
training side instead (:mod:`sentei.training.torch_engines`), in two ways that reach the same
table: importing :mod:`sentei.training` registers them, and a lookup of a name that is not
registered yet first loads the ``sentei.engines`` entry points (pyproject.toml), which import
the module that registers it -- as hls4ml finds its backends and timm its models.

Roles and what their openers return:

- ``"checkpoint"``: ``opener(path, exact=True)`` -> an engine with ``input_size``, ``name``,
  ``class_names``, ``path`` and ``predict(frame, size)`` (``sentei eval --backend torch``);
- ``"bench"``: ``opener(model_arg, model, device, precision, threads)`` -> a
  :class:`~sentei.host.bench.engine.BenchEngine` (``sentei bench --backend torch``).

It also holds the one table of backend names (:data:`BACKENDS`) that every ``--backend`` option
is built from (:func:`backend_option`), with one default, ``auto``.
"""
from __future__ import annotations

from typing import Callable

from sentei.errors import SenteiError

#: Every backend a command may name, and what it runs. ``auto`` means the same in every command
#: and library call: the FPGA when this machine has one with a sentei bitstream installed, else
#: the emulated overlay (:func:`sentei.host.runtime.segmenter.choose_backend` resolves it, and says why).
BACKENDS = {
    "auto": "the FPGA when there is one, else emulation (default)",
    "fpga": "the board",
    "emu": "emulated overlay on the fast emulator",
    "reference": "emulated overlay on the numpy reference engine",
    "csim": "emulated overlay on the C-simulation of the HLS sources",
    "torch": "a PyTorch checkpoint (needs sentei[train])",
    "perf": "the overlay's performance model (modeled FPGA, no board)",
}
#: the one default of every --backend option and every library function that takes a backend
DEFAULT_BACKEND = "auto"
#: the backends that run a model file on the accelerator or its emulation (a Segmenter)
SEGMENTER_BACKENDS = ("auto", "fpga", "emu", "reference", "csim")
#: the backends that run a model (a Segmenter's, or torch): every one a single --backend may name
ENGINE_BACKENDS = SEGMENTER_BACKENDS + ("torch",)


def backend_option(names=SEGMENTER_BACKENDS, several: bool = False) -> dict:
    """The keyword arguments of a command's ``--backend`` (``add_argument("--backend", **...)``):
    one of ``names`` (``several``: a comma-separated list of them), default :data:`DEFAULT_BACKEND`,
    and a help text that says what each one runs: one help for every single ``--backend`` (what
    every engine runs; argparse names each command's own ``names`` for ``%(choices)s``)."""
    if several:
        listed = "; ".join(f"{name}: {BACKENDS[name]}" for name in names)
        return {"default": DEFAULT_BACKEND, "metavar": "BACKEND[,BACKEND...]",
                "help": f"comma-separated, e.g. emu,torch runs both and prints their ratios -- {listed}"}
    if not set(names) <= set(ENGINE_BACKENDS):
        raise ValueError(f"--backend choices {names}: a subset of {ENGINE_BACKENDS}")
    return {"default": DEFAULT_BACKEND, "choices": tuple(names),
            "help": "engine that runs the model, one of %(choices)s -- " + "; ".join(
                f"{name}: {what}" for name, what in BACKENDS.items() if name in ENGINE_BACKENDS)}


ENTRY_POINT_GROUP = "sentei.engines"
ROLES = ("checkpoint", "bench")
#: the extra that installs what an engine needs, for the message when it is not registered
EXTRAS = {"torch": "train"}

_openers: dict[tuple[str, str], Callable] = {}


def register(role: str, name: str, opener: Callable) -> None:
    """Make ``opener`` the engine ``name`` for ``role`` (a later registration replaces it)."""
    if role not in ROLES:
        raise ValueError(f"engine role {role!r}: one of {', '.join(ROLES)}")
    _openers[(role, name)] = opener


def lookup(role: str, name: str) -> Callable:
    """The opener registered for ``role`` and ``name``, loading the entry points when it is not
    registered yet; a one-line :class:`SenteiError` naming the extra to install when none is."""
    if (role, name) not in _openers:
        _load_entry_points()
    try:
        return _openers[(role, name)]
    except KeyError:
        extra = EXTRAS.get(name)
        install = f": pip install 'sentei[{extra}]'" if extra else ""
        raise SenteiError(f"--backend {name}: no {name} engine is installed{install}") from None


def _load_entry_points() -> None:
    """Import every ``sentei.engines`` entry point (each registers its engines when imported);
    one whose own dependencies are missing is skipped (its engines stay unregistered)."""
    from importlib.metadata import entry_points

    found = entry_points()
    group = found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, ())
    for point in group:
        try:
            point.load()
        except ImportError:
            continue
