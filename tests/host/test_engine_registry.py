"""The engine registry: the torch engines come from the training side, by registration or entry point."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sentei.errors import SenteiError
from sentei.host import engine_registry


def test_a_backend_nobody_provides_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(engine_registry, "_openers", {})
    monkeypatch.setattr(engine_registry, "_load_entry_points", lambda: None)  # sentei.training not installed
    with pytest.raises(SenteiError, match=r"^--backend torch: no torch engine is installed: "
                                          r"pip install 'sentei\[train\]'$"):
        engine_registry.lookup("bench", "torch")
    with pytest.raises(SenteiError, match=r"^--backend tpu: no tpu engine is installed$"):
        engine_registry.lookup("checkpoint", "tpu")


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="engine role"):
        engine_registry.register("train", "torch", print)


def test_the_torch_engines_come_through_the_entry_point_without_importing_training():
    """A fresh process that never imports sentei.training finds both torch openers (the
    ``sentei.engines`` entry point in pyproject.toml), and importing them needs no torch."""
    code = ("import sys\n"
            "from sentei.host import engine_registry as r\n"
            "assert not any(m.startswith('sentei.training') for m in sys.modules)\n"
            "print(r.lookup('bench', 'torch').__module__, r.lookup('checkpoint', 'torch').__module__, "
            "'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["sentei.training.torch_engines", "sentei.training.torch_engines", "False"]
