"""Where sentei keeps machine-local build caches: ``$SENTEI_CACHE`` or ``~/.cache/sentei``.

Never inside the installed package: a cache written there outlives ``pip uninstall`` (pip
removes only the files it installed) and leaves a package directory without its
``__init__.py`` behind, which then shadows a later editable install of sentei.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$SENTEI_CACHE/<kind>``, or ``~/.cache/sentei/<kind>`` (``csim`` builds, ``numba`` kernels)."""
    base = os.environ.get("SENTEI_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "sentei") / kind
