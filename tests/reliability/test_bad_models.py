"""Corrupt model files through every command that reads one, and through the Python API.

tests/host/test_format.py and test_format_fuzz.py check the loader itself; here each
corruption goes through `sentei info | segment | eval | overlay codegen | overlay csim | perf |
bench`: exit status 2, one line naming the field, no traceback, no output file.
"""
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentei.errors import ModelFormatError
from sentei.host.modelfile import schema as F
from sentei.host.modelfile import bundled
from sentei.host.runtime.segmenter import Segmenter

from .conftest import (assert_one_line_error, corrupt_models, files_under, make_split, run_main, run_subprocess,
                       tiny_model)

CORRUPT = corrupt_models()


def _commands(model, image, data, out):
    """Every command that loads a model, each told to write under ``out``."""
    return {
        "info": ["info", "--model", model, "--json", out / "info.json"],
        "segment": ["segment", image, "--model", model, "--out", out / "seg"],
        "eval": ["eval", "--model", model, "--data", data, "--json", out / "eval.json"],
        "codegen": ["overlay", "codegen", "--model", model, "--out", out / "hls"],
        "csim": ["overlay", "csim", "--model", model, "--json", out / "csim.json", "--workdir", out / "csim"],
        "perf": ["perf", "--model", model, "--json", out / "perf.json"],
        "bench": ["bench", "--model", model, "--backend", "emu", "--frames", "1", "--json", out / "bench.json"],
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("data"), "val", {"a": 3})


def test_every_corruption_is_refused_by_the_loader_with_its_field():
    for name, (data, fragment) in CORRUPT.items():
        with pytest.raises(ModelFormatError, match=None) as info:
            F.from_bytes(data)
        assert fragment in str(info.value), (name, str(info.value))


@pytest.mark.parametrize("command", ["info", "segment", "eval", "codegen", "csim", "perf", "bench"])
def test_each_command_refuses_each_corrupt_model_in_one_line(command, tmp_path, capsys, image_file, dataset):
    for name, (data, fragment) in CORRUPT.items():
        path = tmp_path / f"{name}.sentei"
        path.write_bytes(data)
        out = tmp_path / f"out-{name}"
        argv = _commands(path, image_file, dataset, out)[command]
        status, stdout, err = run_main(argv, capsys)
        assert_one_line_error(status, err, str(path), fragment)
        assert files_under(out) == [], (command, name, files_under(out))


@pytest.mark.parametrize("name", ["truncated", "unequal-k", "not-a-model-png"])
def test_python_api_refuses_corrupt_models(name, tmp_path):
    path = tmp_path / "m.sentei"
    path.write_bytes(CORRUPT[name][0])
    with pytest.raises(ModelFormatError, match=CORRUPT[name][1]):
        bundled.load_model(path)
    with pytest.raises(ModelFormatError, match=CORRUPT[name][1]):
        Segmenter(path, backend="reference")


def test_a_folder_or_a_missing_file_as_model(tmp_path, capsys):
    status, _, err = run_main(["info", "--model", tmp_path], capsys)
    assert_one_line_error(status, err, "is a directory")
    status, _, err = run_main(["info", "--model", tmp_path / "nope.sentei"], capsys)
    assert_one_line_error(status, err, "model not found")


def test_a_pytorch_checkpoint_where_a_model_file_is_needed(tmp_path, capsys):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"PK\x03\x04 not really a checkpoint")
    status, _, err = run_main(["segment", path, "--model", path, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(status, err, "PyTorch checkpoint", "--backend torch")


_GOOD = F.to_bytes(tiny_model(seed=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, len(_GOOD))))
def test_fuzzed_files_through_the_cli(flips, cut):
    """Whatever the bytes: `sentei info` prints the facts (status 0) or one error line (status 2)."""
    import contextlib
    import io

    from sentei import cli

    data = bytearray(_GOOD)
    for pos, value in flips:
        data[pos] = value
    if cut is not None:
        data = data[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.sentei"
        path.write_bytes(bytes(data))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["info", "--model", str(path), "--json", str(Path(tmp) / "out.json")])
        written = (Path(tmp) / "out.json").exists()
    if status == 0:
        assert written and err.getvalue() == ""
    else:
        assert_one_line_error(status, err.getvalue(), "fuzz.sentei: ")
        assert not written


def test_console_script_end_to_end(tmp_path):
    """The real console script in a fresh process: status 2, one line, no traceback; --debug shows it."""
    path = tmp_path / "bad.sentei"
    path.write_bytes(CORRUPT["index-out-of-range"][0])
    proc = run_subprocess(["segment", tmp_path / "x.png", "--model", path, "--out", tmp_path / "o"])
    assert_one_line_error(proc.returncode, proc.stderr, "indices: position")
    assert proc.stdout == "" and not (tmp_path / "o").exists()
    proc = run_subprocess(["--debug", "info", "--model", path])
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ModelFormatError" in proc.stderr

