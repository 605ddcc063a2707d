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


# --- one option per meaning (issue 28): every subcommand's options, walked from the parser ---

#: (option, subcommand) whose meaning really differs from the option's elsewhere, and why
OPTION_MEANS_ANOTHER_THING = {
    ("--device", "bench"): "the device the torch baseline is timed on: a measurement, so a fixed default (cpu) "
                           "keeps reports of one machine comparable; elsewhere it is where the work runs",
    ("--board", "overlay codegen"): "optional there: without it the lanes come from the divisor rule, not from a board",
    ("--board", "overlay csim"): "as overlay codegen (the same lane allocation)",
}
#: options still declared more than once with different help or default: may only shrink
#: (a new drift fails, and so does an entry that is one declaration now)
KNOWN_DRIFT = {"--backend", "--batch-size", "--clock-mhz", "--config", "--data", "--dense", "--fps", "--frames",
               "--image", "--json", "--lanes", "--limit", "--model", "--name", "--out", "--seed", "--simulate",
               "--size", "--split", "--synthetic", "--teacher"}


def subcommand_options(parser, path=()):
    """``{option string: {subcommand: (help, default)}}`` of every (sub)command below ``parser``."""
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                for option, where in subcommand_options(child, (*path, name)).items():
                    found.setdefault(option, {}).update(where)
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            for option in action.option_strings:
                found.setdefault(option, {})[" ".join(path)] = (action.help, repr(action.default))
    return found


def drifting(options) -> dict:
    """Options declared with more than one (help, default), the documented exceptions left out."""
    out = {}
    for option, where in options.items():
        kept = {sub: hd for sub, hd in where.items() if (option, sub) not in OPTION_MEANS_ANOTHER_THING}
        if len(set(kept.values())) > 1:
            out[option] = kept
    return out


def test_each_option_has_one_help_and_one_default_across_subcommands():
    from sentei.cli import build_parser

    options = subcommand_options(build_parser())
    assert {"--device", "--workers", "--alpha", "--board"} <= set(options)
    drift = drifting(options)
    new = {o: w for o, w in drift.items() if o not in KNOWN_DRIFT}
    assert not new, "one option, one help, one default (a shared add_*_option in sentei.host.options):\n" + \
        "\n".join(f"{o}: " + "; ".join(f"{s}: {h!r} default {d}" for s, (h, d) in w.items()) for o, w in new.items())
    gone = KNOWN_DRIFT - set(drift)
    assert not gone, f"no longer drifting, take off KNOWN_DRIFT: {sorted(gone)}"
    for option, sub in OPTION_MEANS_ANOTHER_THING:
        assert sub in options[option], f"{option} {sub}: not declared there any more, drop the exception"


def test_the_option_walk_sees_a_drift():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sub.add_parser("a").add_argument("--workers", default=2, help="threads decoding frames")
    sub.add_parser("b").add_argument("--workers", default=4, help="threads decoding frames")
    assert drifting(subcommand_options(parser)) == {"--workers": {"a": ("threads decoding frames", "2"),
                                                                  "b": ("threads decoding frames", "4")}}
