"""The console script: subcommands, one-line errors, exit status."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sentei import cli


def test_help_lists_every_subcommand(capsys):
    parser = cli.build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"models", "info", "segment", "eval", "demo", "camera", "bench", "bench-report", "train", "compress",
            "export", "compare", "sensitivity", "design", "overlay", "perf"} <= names


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
    code = ("import sys, sentei.cli, sentei.host.modelfile.schema, sentei.host.modelfile.reference, sentei.host.commands.models;"
            "sentei.cli.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_check_output_refuses_before_any_work(tmp_path):
    from sentei.cli import check_output
    from sentei.errors import SenteiError

    src = tmp_path / "in.pt"
    src.write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    assert check_output(tmp_path / "new" / "deeper" / "o.json", "--json") == tmp_path / "new" / "deeper" / "o.json"
    cases = [("", "--json: empty path; pass a file name"),
             (tmp_path / "dir", "a folder is where a file is needed (pass a file name)"),
             (src / "o.json", f"{src}: a file is where a folder is needed"),
             (src, f"is also the input {src}; write to another path")]
    for path, message in cases:
        with pytest.raises(SenteiError, match=re.escape(message)):
            check_output(path, "--json", inputs=[src])
    with pytest.raises(SenteiError, match="a file is where a folder is needed"):
        check_output(src, "--out", folder=True)
    # no shell expanded it (--json=~/x.json): checked as written, where the command writes it
    assert check_output("~/x.json", "--json") == Path("~/x.json")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SenteiError, match=r"cannot write in .*locked \(Permission denied\)"):
            check_output(locked / "o.json", "--json")
    if os.path.isdir("/proc"):  # not writable even for root, whatever its mode bits say
        with pytest.raises(SenteiError, match=r"^--json /proc/o.json: cannot write in /proc \("):
            check_output("/proc/o.json", "--json")


def test_subcommand_group_without_subcommand_is_one_line(capsys):
    assert cli.main(["overlay"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`sentei overlay` needs a subcommand" in err


def test_closed_stdout_pipe_ends_quietly(monkeypatch, capsys):
    """`sentei perf | head -1`: the reader goes away; status 141 as for SIGPIPE, no error line.
    A broken pipe of the command's own (a subprocess) is an error like any OS error."""
    from sentei.host.commands import models as commands

    def reader_gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(commands, "cmd_models", reader_gone)
    assert cli.main(["models"]) == 141
    assert capsys.readouterr().err == ""

    def own_pipe(args):
        raise BrokenPipeError(32, "Broken pipe", "/usr/bin/tegrastats")

    monkeypatch.setattr(commands, "cmd_models", own_pipe)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "sentei: error: /usr/bin/tegrastats: Broken pipe (check the path)\n"
