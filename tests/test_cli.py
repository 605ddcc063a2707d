"""The console script: subcommands, one-line errors, exit status."""
import subprocess
import sys

import pytest

from sentei import cli


def test_help_lists_every_subcommand(capsys):
    parser = cli.build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"models", "info", "segment", "eval", "demo", "camera", "bench", "bench-report", "train", "compress",
            "export", "compare", "overlay", "perf"} <= names


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: sentei" in capsys.readouterr().out


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    status = cli.main(["info", "--model", str(tmp_path / "nope.sentei")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("sentei: error: model not found")
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="model not found"):
        cli.main(["--debug", "info", "--model", str(tmp_path / "nope.sentei")])


def test_console_script_runs_from_any_directory(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sentei", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("sentei ")


def test_host_never_imports_torch():
    code = ("import sys, sentei.cli, sentei.host.format, sentei.host.reference, sentei.host.commands;"
            "sentei.cli.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
