"""Outputs that must not replace what they should not (issue 26, "High" and "nothing lost by a
slip"): device nodes, FIFOs and symbolic links are written through, never replaced by a plain
file; an existing run folder is refused without --resume or --overwrite; an output never
replaces an input."""
from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest
from PIL import Image

from sentei.atomic_write import atomic_write_bytes
from sentei.errors import SenteiError

from .conftest import H, W, assert_one_line_error, files_under, run_main


# --- the atomic writer and its targets --------------------------------------------------


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]  # no temp left


def test_dangling_symlink_creates_what_it_names(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "target.json")
    atomic_write_bytes(link, b"x")
    assert link.is_symlink() and (tmp_path / "target.json").read_bytes() == b"x"


def char_device(tmp_path, name: str, minor: int) -> str:
    """A character device like ``/dev/<name>`` (major 1): a node of its own in ``tmp_path`` where
    the test may make one (root: a broken writer then replaces that node, never the system's),
    else the system's (which a user without root cannot replace)."""
    node = tmp_path / name
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        return str(node)
    except (PermissionError, OSError):
        if os.geteuid() == 0:
            pytest.skip("root without CAP_MKNOD: the test would risk the system's device node")
        return f"/dev/{name}"


def test_dev_null_stays_a_device(tmp_path, model_file, capsys):
    null = char_device(tmp_path, "null", 3)
    status, _, err = run_main(["info", "--model", model_file, "--json", null], capsys)
    assert status == 0, err
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_dev_full_one_line_naming_it(tmp_path, model_file, capsys):
    full = char_device(tmp_path, "full", 7)
    status, _, err = run_main(["info", "--model", model_file, "--json", full], capsys)
    assert_one_line_error(status, err, full, "no space left")
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_fifo_without_reader_refused_not_replaced(tmp_path, model_file, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    status, _, err = run_main(["info", "--model", model_file, "--json", fifo], capsys)
    assert_one_line_error(status, err, "FIFO with no reader")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_fifo_with_reader_gets_the_bytes(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    for _ in range(200):  # until the reader has opened its end
        try:
            atomic_write_bytes(fifo, b"through the pipe")
            break
        except SenteiError:
            threading.Event().wait(0.01)
    reader.join(10)
    if reader.is_alive():  # the writer never opened the FIFO (or replaced it): release the reader
        with open(fifo, "wb"):
            pass
        reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_disk_full_names_the_path(tmp_path, monkeypatch):
    import errno

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: full(fd, b""))
        with pytest.raises(OSError) as info:
            atomic_write_bytes(target, b"x")
    assert info.value.filename == str(target) and not list(tmp_path.iterdir())


# --- segment: never over an input, no partial set -----------------------------------------


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def test_segment_refuses_to_write_over_an_input(tmp_path, model_file, capsys):
    a = _png(tmp_path / "a.png")
    b = _png(tmp_path / "a_labels.png", 1)
    before = b.read_bytes()
    status, _, err = run_main(["segment", a, b, "--model", model_file, "--out", tmp_path,
                               "--backend", "reference"], capsys)
    assert_one_line_error(status, err, "would be written over the input", "a_labels.png")
    assert b.read_bytes() == before and files_under(tmp_path) == ["a.png", "a_labels.png"]


def test_segment_failure_mid_run_leaves_no_partial_set(tmp_path, model_file, capsys):
    good = _png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(_png(tmp_path / "tmp.png").read_bytes()[:60])  # the header reads, the pixels do not
    (tmp_path / "tmp.png").unlink()
    out = tmp_path / "out"
    status, _, err = run_main(["segment", good, bad, "--model", model_file, "--out", out,
                               "--backend", "reference"], capsys)
    assert_one_line_error(status, err, "bad.png")
    assert files_under(out) == []


# --- training: an existing run is not overwritten by a slip --------------------------------


def _train_argv(tmp_path, out, *extra):
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("torch")
    from tests.training.conftest import tiny_config

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(epochs=1)))
    return ["train", "--config", config, "--synthetic", "--out", out, "--device", "cpu", *extra]


def test_train_refuses_an_existing_run_without_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"the run's checkpoint")
    status, _, err = run_main(_train_argv(tmp_path, run), capsys)
    assert_one_line_error(status, err, "already holds a run (last.pt)", "--resume", "--overwrite")
    assert (run / "last.pt").read_bytes() == b"the run's checkpoint"
    status, _, err = run_main(_train_argv(tmp_path, run, "--resume", "--overwrite"), capsys)
    assert_one_line_error(status, err, "not both")


def test_compress_refuses_to_write_into_the_teachers_folder(tmp_path, capsys):
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("torch")
    from tests.training.conftest import compress_config

    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / "teacher.pt").write_bytes(b"weights")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(compress_config()))
    for extra in ([], ["--overwrite"]):
        status, _, err = run_main(["compress", "--config", config, "--synthetic", "--teacher",
                                   teacher_dir / "teacher.pt", "--out", teacher_dir, *extra], capsys)
        assert_one_line_error(status, err, "holds the input", "teacher.pt")
    assert files_under(teacher_dir) == ["teacher.pt"]
