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
  :class:`~sentei.host.bench_engine.BenchEngine` (``sentei bench --backend torch``).
"""
from __future__ import annotations

from typing import Callable

from sentei.errors import SenteiError

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
