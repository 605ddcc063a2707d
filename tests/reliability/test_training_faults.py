"""Training under faults, through the console script: SIGKILL at a random moment then --resume
ends bit-identical to an uninterrupted run; checkpoints are untrusted input (weights only);
bad options and data sets fail in one line. (tests/training/test_train.py covers the same
loop in-process, with an exception instead of a kill.)"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import assert_one_line_error, files_under, make_split, run_main

torch = pytest.importorskip("torch", reason="training needs PyTorch (pip install 'sentei[train]')")
pytest.importorskip("yaml")

TINY_CONFIG = """\
name: tiny
model:
  num_classes: 11
  input: {height: 32, width: 48}
  layers:
    - {name: conv1, out: 8, stride: 2}
    - {name: conv2, out: 16, stride: 2}
    - {name: conv3, out: 16, dilation: 2}
    - {name: conv4, out: 16, stride: 2}
data: {synthetic_frames: 16, augment: {scale: [0.9, 1.2]}}
train: {epochs: 60, batch_size: 8, lr: 0.01, eval_every: 5, seed: 0}
"""


def _train(config, out, *extra) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the same arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "sentei", "train", "--config", str(config), "--synthetic",
                             "--out", str(out), "--device", "cpu", "--workers", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc, timeout=300):
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-2000:]
    return stdout


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(scope="module")
def straight_run(config, tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("straight") / "run"
    _finish(_train(config, out))
    return out


def _load(path):
    from sentei.training.train import load_checkpoint

    return load_checkpoint(path)


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_equals_the_uninterrupted_run(config, straight_run, tmp_path):
    out = tmp_path / "run"
    rng = np.random.default_rng(int(time.time()))
    epoch, delay = int(rng.integers(2, 50)), float(rng.uniform(0.0, 0.05))  # a random moment of a random epoch
    proc = _train(config, out)
    t0 = time.monotonic()
    log = out / "train.log"
    while not (log.exists() and log.read_text().count("teacher epoch") >= epoch):  # one line per epoch
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() - t0 < 120
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    killed_at = _load(out / "last.pt")["epoch"]  # loads: the kill never leaves half a checkpoint
    assert epoch - 1 <= killed_at < 59, (epoch, delay, killed_at)
    _finish(_train(config, out, "--resume"))
    straight, resumed = _load(straight_run / "last.pt"), _load(out / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 59
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for name in ("best.pt", "teacher.pt"):
        a, b = _load(straight_run / name), _load(out / name)
        assert a["epoch"] == b["epoch"] and a["val"] == b["val"]
    assert [h["epoch"] for h in resumed["history"]] == list(range(60))
    assert files_under(out) == files_under(straight_run)  # and no temp file left by the kill


def test_resume_with_no_checkpoint_yet_is_one_line(config, tmp_path, capsys):
    status, _, err = run_main(["train", "--config", config, "--synthetic", "--out", tmp_path / "run",
                               "--device", "cpu", "--resume"], capsys)
    assert_one_line_error(status, err, "--resume: no checkpoint", "last.pt")


def test_resume_with_other_options_is_one_line_naming_the_runs_command(config, straight_run, tmp_path, capsys):
    """A run carried to another session is resumed with its own options; others are refused."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(straight_run, out)
    before = (out / "last.pt").read_bytes()
    status, _, err = run_main(["train", "--config", config, "--synthetic", "--out", out, "--device", "cpu",
                               "--epochs", "80", "--resume"], capsys)
    assert_one_line_error(status, err, "train.epochs = 60, this command gives 80", "--out", "run's own options")
    assert f"--out {straight_run}" in err and err.rstrip().endswith("in another --out")
    assert (out / "last.pt").read_bytes() == before


def test_checkpoints_are_weights_only_through_every_command(tmp_path, capsys, image_file):
    """A checkpoint that would run code when unpickled is refused; the code never runs."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "sentei-checkpoint", "kind": "teacher", "payload": Payload()}, evil)
    for argv in (["export", evil, "-o", tmp_path / "m.sentei"],
                 ["eval", "--backend", "torch", "--model", evil, "--data", make_split(tmp_path / "d", "val", {"a": 1})],
                 ["compress", "--synthetic", "--teacher", evil, "--out", tmp_path / "c"],
                 ["bench", "--model", evil, "--backend", "torch", "--frames", "1"]):
        status, _, err = run_main(argv, capsys)
        assert_one_line_error(status, err, "not a sentei checkpoint")
        assert not marker.exists()
    assert files_under(tmp_path / "c") == [] and not (tmp_path / "m.sentei").exists()


@pytest.mark.parametrize("argv_tail, fragment", [
    (["--sparsity", "1.0"], "argument --sparsity: 1.0 must be a number in [0, 1)"),
    (["--sparsity", "-0.1"], "argument --sparsity: -0.1 must be a number in [0, 1)"),
    (["--sparsity", "0"], "--sparsity 0.0: must lie in (0, 1)"),
    (["--weight-bits", "9"], "argument --weight-bits: 9 must be an integer from 2 to 8"),  # bits the model file and the hardware do not take
    (["--weight-bits", "1"], "argument --weight-bits: 1 must be an integer from 2 to 8"),
    (["--act-bits", "20"], "argument --act-bits: 20 must be an integer from 8 to 16"),
    (["--act-bits", "3"], "argument --act-bits: 3 must be an integer from 8 to 16"),
    (["--nm", "2-4"], "expected N:M"),
    (["--nm", "4:2"], "needs 0 < N < M"),
    (["--scheme", "dense", "--sparsity", "0.5"], "a dense model prunes nothing"),
    (["--epochs", "0"], "--epochs: 0 must be an integer of at least 1, e.g. 1"),
    (["--qat-epochs", "-3"], "--qat-epochs: -3 must be an integer of at least 1, e.g. 1"),
    (["--size", "axb"], "expected HxW"),
])
def test_compress_options_are_refused_before_any_work(argv_tail, fragment, tmp_path, capsys):
    status, _, err = run_main(["compress", "--synthetic", "--teacher", tmp_path / "missing.pt",
                               "--out", tmp_path / "c", *argv_tail], capsys)
    assert_one_line_error(status, err, fragment)
    assert not (tmp_path / "c").exists()


def test_train_config_errors_are_one_line(tmp_path, capsys):
    status, _, err = run_main(["train", "--config", tmp_path / "none.yaml", "--synthetic", "--out", tmp_path / "r"],
                              capsys)
    assert_one_line_error(status, err, "config not found")
    listing = tmp_path / "list.yaml"
    listing.write_text("- just\n- a list\n")
    status, _, err = run_main(["train", "--config", listing, "--synthetic", "--out", tmp_path / "r"], capsys)
    assert_one_line_error(status, err, "must be a mapping")
    assert not (tmp_path / "r").exists()


def test_train_on_a_broken_data_set_is_one_line_and_writes_nothing(config, tmp_path, capsys):
    root = make_split(tmp_path / "data", "train", {"a": 1}, frames=["a", "b"], size=(32, 48))
    make_split(root, "val", {"a": 1}, size=(32, 48))
    status, _, err = run_main(["train", "--config", config, "--data", root, "--out", tmp_path / "r",
                               "--device", "cpu", "--workers", "1"], capsys)
    assert_one_line_error(status, err, "b.png has no label map")
    assert not (tmp_path / "r").exists()


def test_a_model_file_outside_the_run_directory_is_refused_before_training(tmp_path, capsys):
    config = tmp_path / "escape.yaml"
    config.write_text("compress: {model_file: ../../escaped.sentei}\n")
    status, _, err = run_main(["compress", "--config", config, "--synthetic", "--teacher", tmp_path / "t.pt",
                               "--out", tmp_path / "runs" / "c", "--device", "cpu"], capsys)
    assert_one_line_error(status, err, "points outside the run directory")
    assert not (tmp_path / "escaped.sentei").exists() and not (tmp_path / "runs").exists()
