"""Options every command shares, declared once: ``--backend`` from the engine registry's one table
with one default (``auto``, resolved the same way everywhere) and ``--model`` from
host/options.py; and the number rules of the command line."""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from sentei.cli import build_parser
from sentei.host.commands import bench
from sentei.host import engine_registry
from sentei.host.runtime import evaluation
from sentei.host.runtime import driver as drv
from sentei.host.runtime import segmenter
from sentei.host.options import model_option

BACKEND_COMMANDS = {"segment", "eval", "demo", "camera", "bench"}


def commands(parser=None, prefix=()):
    """``{("overlay", "csim"): parser, ...}`` for every (sub)command of ``sentei``."""
    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[(*prefix, name)] = sub
                found.update(commands(sub, (*prefix, name)))
    return found


def option(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_every_backend_option_defaults_to_auto():
    with_backend = {" ".join(name): option(p, "--backend") for name, p in commands().items()
                    if option(p, "--backend") is not None}
    assert set(with_backend) == BACKEND_COMMANDS
    assert {name: a.default for name, a in with_backend.items()} == dict.fromkeys(BACKEND_COMMANDS, "auto")
    for name, action in with_backend.items():  # the same words for the same names
        assert "auto: the FPGA when there is one, else emulation (default)" in action.help, name
    assert option(commands()[("segment",)], "--backend").choices == ("auto", "fpga", "emu", "reference", "csim")
    assert option(commands()[("eval",)], "--backend").choices == ("auto", "fpga", "emu", "reference", "csim", "torch")
    # library calls take the same default as the commands
    assert inspect.signature(evaluation.evaluate).parameters["backend"].default == "auto"
    assert inspect.signature(segmenter.Segmenter).parameters["backend"].default == "auto"
    assert inspect.signature(segmenter.choose_backend).parameters["requested"].default == "auto"
    assert engine_registry.DEFAULT_BACKEND == "auto"


def test_every_model_option_is_the_shared_one():
    models = {" ".join(name): option(p, "--model") for name, p in commands().items() if option(p, "--model")}
    assert len(models) >= 10, sorted(models)
    for name, action in models.items():
        assert action.default is None, name
        assert "(default: the bundled model)" in action.help, name
    assert model_option()["help"] == "model file or bundled name (default: the bundled model)"


@pytest.fixture
def no_board(monkeypatch):
    monkeypatch.setattr(drv, "pynq_device_status", lambda: (False, "not a PYNQ board"))


@pytest.fixture
def board(monkeypatch):
    monkeypatch.setattr(drv, "pynq_device_status", lambda: (True, "a ZCU104"))
    monkeypatch.setattr(drv, "find_bitstream", lambda bitfile=None: Path("sentei.bit"))


def test_auto_resolves_to_the_emulation_without_a_board(no_board):
    from sentei.host.emulator.engine import available

    choice = segmenter.choose_backend("auto")
    assert choice.name == ("emu" if available()[0] else "reference")  # what --backend emu runs
    assert choice.name == segmenter.choose_backend("emu").name
    assert "no FPGA: not a PYNQ board" in choice.reason
    assert bench.resolve_auto(["auto"]) == (["emu"], "emu")
    assert bench.resolve_auto(["auto", "emu", "torch"]) == (["emu", "torch"], "emu")
    assert bench.resolve_auto(["reference"]) == (["reference"], None)


def test_auto_resolves_to_the_fpga_on_a_board_in_every_command(board):
    assert segmenter.choose_backend("auto").name == "fpga"
    assert bench.resolve_auto(["torch", "auto"]) == (["torch", "fpga"], "fpga")


def test_bench_frames_of_auto_go_to_what_it_resolved_to():
    assert bench.parse_frames("30,auto=3", ["emu", "torch"], auto="emu") == {"emu": 3, "torch": 30}
    assert bench.parse_frames("7", ["fpga"], auto="fpga") == {"fpga": 7}


def test_every_backend_is_described_once():
    assert set(engine_registry.SEGMENTER_BACKENDS) <= set(engine_registry.BACKENDS)
    assert bench.BACKENDS == tuple(engine_registry.BACKENDS)
    several = engine_registry.backend_option(bench.BACKENDS, several=True)
    assert several["default"] == "auto" and "choices" not in several
    for name in engine_registry.BACKENDS:
        assert f"{name}: {engine_registry.BACKENDS[name]}" in several["help"]


def test_configs_and_bench_reports_share_one_schema_mechanism():
    """training/config.py and host/bench/report.py declare their keys the same way (dataclass fields
    of sentei.host.options.key), and a report's bad field is found by the same walk."""
    from dataclasses import fields

    from sentei.host.bench import report as benchreport
    from sentei.host import options

    pytest.importorskip("yaml")
    from sentei.training import config

    assert config.Section is options.Section and config.key is options.key
    assert all(isinstance(f.metadata["rule"], options.Section) for f in fields(benchreport.Report))
    run = {"label": "emu", "latency": {"end_to_end": {"fps": -1.0}}, "power": {"status": "none"}}
    assert list(options.schema_problems(run, benchreport.Run)) == [
        ("latency.end_to_end.fps", -1.0, "a number >= 0 or null")]
    assert list(options.schema_problems({"latency": {}, "power": 5}, benchreport.Run)) == [
        ("power", 5, "an object")]
    assert options.fill({"kind": "modeled"}, benchreport.Run)["power"]["status"] == "none"
    assert benchreport.Run.kind == "measured"
