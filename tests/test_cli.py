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
# Compared per option string: the help (as declared, before argparse fills it in) and the default.
# A subcommand may pass required=True to a shared declaration (add_data_option(p, required=True)):
# `required` is not compared. Choices are compared, except where the help names them as
# %(choices)s (argparse writes each command's own there: backend_option's --backend).

#: (option, subcommand) whose meaning or default really differs from the option's elsewhere, and why
OPTION_MEANS_ANOTHER_THING = {
    ("--device", "bench"): "the device the torch baseline is timed on: a measurement, so a fixed default (cpu) "
                           "keeps reports of one machine comparable; elsewhere it is where the work runs",
    ("--board", "overlay codegen"): "optional there: without it the lanes come from the divisor rule, not from a board",
    ("--board", "overlay csim"): "as overlay codegen (the same lane allocation)",
    ("--backend", "bench"): "a comma-separated list of backends timed side by side, perf (the performance model, "
                            "no engine) among them; elsewhere the one engine that runs the model",
    ("--batch-size", "train"): "overrides the config's train.batch_size: no default of its own (None: the config's)",
    ("--batch-size", "compress"): "overrides the config's compress.batch_size, as train's",
    ("--seed", "train"): "overrides the config's train.seed: no default of its own (None: the config's)",
    ("--seed", "compress"): "overrides the config's compress.seed, as train's",
    ("--config", "train"): "the teacher's training config (camvid-fcn7.yaml); compress and design take a "
                           "compression config (camvid-fw90.yaml)",
    ("--fps", "camera"): "the frame rate written into the video file; design's --fps is the rate the designed "
                         "accelerator must reach",
    ("--frames", "camera"): "a stop condition: the live run ends after N frames",
    ("--frames", "bench"): "the timed frames per backend: N, or a per-backend list such as 30,reference=3",
    ("--frames", "overlay csim"): "random frames run besides --image's, 1 to 64 (the testbench's buffers); perf's "
                                  "are the frames of one simulated start, at least 2",
    ("--image", "compare"): "the one frame compared layer by layer: required, not repeatable",
    ("--model", "eval"): "also a PyTorch checkpoint, which --backend torch runs",
    ("--model", "bench"): "also teacher and synthetic, models only a benchmark runs",
    ("--model", "export"): "the network --onnx exports, a teacher checkpoint too",
    ("--out", "train"): "the run directory: the checkpoints --resume continues from, the log, config and metrics",
    ("--out", "compress"): "the run directory, as train's",
    ("--out", "camera"): "a video file, not a folder",
    ("--out", "demo"): "optional: ./sentei-demo by default, so a first try needs no option",
    ("--out", "overlay codegen"): "optional: build/hls/<model name> by default, where the HLS build looks",
    ("--board", "sentei.training.results"): "repeatable: every board the table prices each run on (none: no "
                                            "hardware columns), not the one board a command models",
    ("--teacher", "sentei.training.bundle model"): "the bundled name of the teacher the run was distilled from "
                                                   "(required, checked against the run's config), not a checkpoint",
    ("--name", "sentei.training.bundle teacher"): "the name the entry is bundled under (what --model then takes), "
                                                  "not the name written into a model file",
    ("--name", "sentei.training.bundle model"): "as for bundle teacher",
}


def subcommand_options(parser, path=()):
    """``{option string: {subcommand: (help, default)}}`` of every (sub)command below ``parser``
    (the help with the choices appended, unless it names them as %(choices)s)."""
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                for option, where in subcommand_options(child, (*path, name)).items():
                    found.setdefault(option, {}).update(where)
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            shown = action.help
            if action.choices is not None and "%(choices)s" not in (action.help or ""):
                shown = f"{action.help} [choices {list(action.choices)}]"
            for option in action.option_strings:
                found.setdefault(option, {})[" ".join(path)] = (shown, repr(action.default))
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
    from sentei.training import bundle, results

    options = subcommand_options(build_parser())
    for tool in (bundle, results):  # the release tools beside the console script declare them alike
        for option, where in subcommand_options(tool.build_parser(), (tool.__name__,)).items():
            options.setdefault(option, {}).update(where)
    assert {"--device", "--workers", "--alpha", "--board"} <= set(options)
    drift = drifting(options)
    assert not drift, "one option, one help, one default (a shared add_*_option in sentei.host.options), " \
        "or an entry in OPTION_MEANS_ANOTHER_THING saying why the meaning differs:\n" + \
        "\n".join(f"{o}: " + "; ".join(f"{s}: {h!r} default {d}" for s, (h, d) in w.items()) for o, w in drift.items())
    for option, sub in OPTION_MEANS_ANOTHER_THING:
        assert sub in options[option], f"{option} {sub}: not declared there any more, drop the exception"
        others = {hd for s, hd in options[option].items() if (option, s) not in OPTION_MEANS_ANOTHER_THING}
        assert others, f"{option}: excepted everywhere; keep one declaration as the option's own"
        assert options[option][sub] not in others, f"{option} {sub}: declared as elsewhere, drop the exception"


def test_the_option_walk_sees_a_drift():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sub.add_parser("a").add_argument("--workers", default=2, help="threads decoding frames")
    sub.add_parser("b").add_argument("--workers", default=4, help="threads decoding frames")
    assert drifting(subcommand_options(parser)) == {"--workers": {"a": ("threads decoding frames", "2"),
                                                                  "b": ("threads decoding frames", "4")}}


def test_the_option_walk_compares_choices_unless_the_help_names_them():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    a, b = sub.add_parser("a"), sub.add_parser("b")
    a.add_argument("--fit", choices=("x", "y"), default="x", help="fit")
    b.add_argument("--fit", choices=("x",), default="x", help="fit")
    a.add_argument("--backend", choices=("x", "y"), default="x", help="one of %(choices)s")
    b.add_argument("--backend", choices=("x",), default="x", help="one of %(choices)s")
    a.add_argument("--data", required=True, help="root")  # a subcommand may require a shared option
    b.add_argument("--data", help="root")
    assert set(drifting(subcommand_options(parser))) == {"--fit"}


def test_the_library_functions_behind_an_option_take_its_default():
    """A notebook calling the library gets what the command line gets: --workers' default in the
    functions that decode frames, and the device --device resolves to (None: CUDA when available)."""
    import inspect

    pytest.importorskip("torch")
    from sentei.host.options import DEFAULT_WORKERS
    from sentei.training import data, sensitivity, train

    for fn in (data.load_camvid, train.load_data, sensitivity.run):
        assert inspect.signature(fn).parameters["workers"].default == DEFAULT_WORKERS, fn.__qualname__
    assert inspect.signature(sensitivity.run).parameters["device"].default is None
