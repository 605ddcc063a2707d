"""Options out of range through the command line (one line, status 2, nothing written) and the
Python API (SenteiError)."""
from pathlib import Path

import pytest

from sentei.errors import SenteiError
from sentei.host.runtime.segmenter import Segmenter, choose_backend
from sentei.overlay import perf

from .conftest import assert_one_line_error, files_under, run_main, run_subprocess, tiny_model


def _cases(model, image, data, out):
    return {  # name -> (argv, fragment)
        "segment unknown backend": (["segment", image, "--model", model, "--out", out, "--backend", "gpu"],
                                    "invalid choice: 'gpu'"),
        "eval unknown backend": (["eval", "--model", model, "--data", data, "--backend", "tpu"], "invalid choice"),
        "demo unknown backend": (["demo", "--model", model, "--out", out, "--backend", "npu"], "invalid choice"),
        "camera unknown backend": (["camera", "--source", image, "--out", out / "v.mp4", "--backend", "x"],
                                   "invalid choice"),
        "bench unknown backend": (["bench", "--model", model, "--backend", "emu,gpu", "--json", out / "b.json"],
                                  "gpu is not one of"),
        "fpga without a board": (["segment", image, "--model", model, "--out", out, "--backend", "fpga"],
                                 "use --backend emu"),
        "alpha above 1": (["segment", image, "--model", model, "--out", out, "--alpha", "1.5"], "--alpha: 1.5 must be"),
        "alpha not a number": (["segment", image, "--model", model, "--out", out, "--alpha", "half"],
                               "--alpha: half must be"),
        "eval limit 0": (["eval", "--model", model, "--data", data, "--limit", "0"], "--limit: 0 must be"),
        "bench frames 0": (["bench", "--model", model, "--backend", "emu", "--frames", "0", "--json", out / "b.json"],
                           "at least 1"),
        "csim frames 0": (["overlay", "csim", "--model", model, "--frames", "0", "--json", out / "c.json"],
                          "from 1 to 64"),
        "camera frames 0": (["camera", "--source", image, "--model", model, "--out", out / "v.mp4", "--frames", "0"],
                            "--frames 0"),
        "camera negative fps": (["camera", "--source", image, "--model", model, "--out", out / "v.mp4",
                                 "--fps", "-1"], "frame rate"),
        "camera file url": (["camera", "--source", "file:///etc/passwd", "--model", model, "--out", out / "v.mp4"],
                            "scheme 'file' is not allowed"),
        "perf unknown board": (["perf", "--model", model, "--board", "zedboard", "--json", out / "p.json"],
                               "unknown board 'zedboard': known boards are"),
        "perf board as a path": (["perf", "--model", model, "--board", "../boards/zcu104", "--json", out / "p.json"],
                                 "unknown board"),
        "codegen unknown board": (["overlay", "codegen", "--model", model, "--board", "zc706", "--out", out / "hls"],
                                  "unknown board 'zc706'"),
        "csim unknown board": (["overlay", "csim", "--model", model, "--board", "zc706", "--json", out / "c.json"],
                               "unknown board"),
        "bench unknown board": (["bench", "--model", model, "--backend", "perf", "--board", "zc706",
                                 "--json", out / "b.json"], "unknown board"),
        "perf clock out of range": (["perf", "--model", model, "--clock-mhz", "900", "--json", out / "p.json"],
                                    "clock 900 MHz is outside"),
        "perf dsp fraction": (["perf", "--model", model, "--dsp-fraction", "1.5", "--json", out / "p.json"],
                              "dsp_fraction"),
        "codegen lanes not numbers": (["overlay", "codegen", "--model", model, "--lanes", "a,b", "--out", out / "hls"],
                                      "--lanes"),
        "perf lanes count": (["perf", "--model", model, "--lanes", "4,4", "--json", out / "p.json"],
                             "lane counts given"),
        "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
        "unknown option": (["info", "--modle", model], "unrecognized arguments"),
        "missing required": (["segment", image, "--model", model], "required: --out"),
    }


CASE_NAMES = sorted(_cases(*[Path("x")] * 4))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_option_is_one_line_status_2_and_writes_nothing(name, tmp_path, capsys, model_file, image_file):
    out = tmp_path / "out"
    argv, fragment = _cases(model_file, image_file, tmp_path / "data", out)[name]
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, fragment)
    assert files_under(out) == []


def test_argparse_errors_in_a_fresh_process(tmp_path):
    proc = run_subprocess(["segment", "x.png", "--out", tmp_path, "--backend", "gpu"])
    assert_one_line_error(proc.returncode, proc.stderr, "invalid choice: 'gpu'", "`sentei segment --help`")
    assert "usage:" not in proc.stderr


def test_python_api_options():
    model = tiny_model()
    with pytest.raises(SenteiError, match="unknown backend 'gpu'"):
        Segmenter(model, backend="gpu")
    with pytest.raises(SenteiError, match="unknown backend"):
        choose_backend("cuda")
    with pytest.raises(SenteiError, match="fit='crop'"):
        Segmenter(model, backend="reference", fit="crop")
    with pytest.raises(SenteiError, match="timeout=0"):
        Segmenter(model, backend="reference", timeout=0)
    with pytest.raises(SenteiError, match="unknown board 'zedboard'"):
        perf.load_board("zedboard")
    with pytest.raises(SenteiError, match="backend fpga"):
        Segmenter(model, backend="fpga")
