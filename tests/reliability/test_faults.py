"""Faults: a process killed while it writes, an accelerator that stops answering, a second user
of the accelerator, a live run stopped from outside, and OS errors on output paths.

What must hold: a file at its final name is always complete (temp file + rename), buffers are
freed and the accelerator given back on a timeout, the accelerator is refused to a second user
while the first holds it (and freed when the holder dies), and every command fails in one line.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sentei.errors import HardwareTimeoutError, ModelFormatError, SenteiError
from sentei.host.runtime import driver as drv
from sentei.host.modelfile import schema as F
from sentei.host.modelfile import reference
from sentei.host.runtime import segmenter
from sentei.host.runtime.emulated_overlay import EmulatedOverlay
from sentei.host.runtime.segmenter import Segmenter
from sentei.host.modelfile.synthetic import LayerSpec, random_frame, random_model

from .conftest import H, W, assert_one_line_error, files_under, run_main, tiny_model

# a model whose file is a few hundred KiB: a write takes long enough to be killed in the middle
BIG_SPECS = (LayerSpec(64, stride=2), LayerSpec(128, stride=2), LayerSpec(128, stride=2))


def _child(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_line(proc: subprocess.Popen, expected: str, timeout: float = 60.0) -> str:
    """The child's first stdout line (it says when it is ready to be killed)."""
    t0 = time.monotonic()
    line = proc.stdout.readline()
    assert expected in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    assert time.monotonic() - t0 < timeout
    return line


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


# -- atomic writes under SIGKILL ------------------------------------------------------------

SAVE_LOOP = """
    import sys
    from sentei.host.modelfile import schema as F
    from sentei.host.modelfile.synthetic import LayerSpec, random_model
    specs = (LayerSpec(64, stride=2), LayerSpec(128, stride=2), LayerSpec(128, stride=2))
    models = [random_model(seed=s, height=16, width=24, specs=specs) for s in (1, 2)]
    print("ready", flush=True)
    n = 0
    while True:  # export after export to the same path, until killed
        F.save(models[n % 2], sys.argv[1])
        n += 1
"""


def test_a_killed_export_never_leaves_a_half_file_at_its_name(tmp_path):
    """SIGKILL at random moments of a loop of exports: the file at the name is one whole model."""
    expected = [F.to_bytes(random_model(seed=s, height=16, width=24, specs=BIG_SPECS)) for s in (1, 2)]
    assert len(expected[0]) > 100_000
    target = tmp_path / "model.sentei"
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = _child(SAVE_LOOP, target)
        _wait_line(proc, "ready")
        time.sleep(float(rng.uniform(0.05, 0.6)))
        _kill(proc)
        if target.exists():
            assert target.read_bytes() in expected
            F.load(target)
        for leftover in tmp_path.glob(".model.sentei.*.tmp"):  # a temp file the kill interrupted
            data = leftover.read_bytes()
            if data not in expected:
                with pytest.raises(ModelFormatError):
                    F.from_bytes(data)
            leftover.unlink()


KILL_BEFORE_RENAME = """
    import os, sys, time
    from sentei.host.modelfile import schema as F
    from sentei.host.modelfile.synthetic import random_model
    def stall(src, dst):  # the data is written and synced; the kill comes before the rename
        print("written", flush=True)
        time.sleep(600)
    os.replace = stall
    F.save(random_model(seed=int(sys.argv[2]), height=16, width=24), sys.argv[1])
"""


def test_killed_between_write_and_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.sentei"
    old = F.save(tiny_model(seed=1), target).read_bytes()
    proc = _child(KILL_BEFORE_RENAME, target, 2)
    _wait_line(proc, "written")
    _kill(proc)
    assert target.read_bytes() == old  # the previous export, whole
    (leftover,) = tmp_path.glob(".model.sentei.*.tmp")
    assert leftover.read_bytes() == F.to_bytes(tiny_model(seed=2))  # hidden, and never under the name


def test_report_writers_are_atomic(tmp_path, monkeypatch):
    """An error while a report is written leaves the old report and no temp file."""
    from sentei.atomic_write import write_json

    path = write_json(tmp_path / "r.json", {"frames": 1})

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        write_json(path, {"frames": 2})
    assert path.read_text() == '{\n  "frames": 1\n}\n'
    assert files_under(tmp_path) == ["r.json"]


# -- the accelerator stops answering ---------------------------------------------------------

@pytest.fixture
def hanging_overlays(monkeypatch):
    """Every EmulatedOverlay the commands create never signals done; a short emu timeout."""
    made = []
    original = EmulatedOverlay.__init__

    def init(self, network, hardware="reference", hang=False, delay_s=0.0):
        original(self, network, hardware, hang=True, delay_s=delay_s)
        made.append(self)

    monkeypatch.setattr(EmulatedOverlay, "__init__", init)
    monkeypatch.setitem(segmenter.DEFAULT_TIMEOUT, "emu", 0.3)
    monkeypatch.setitem(segmenter.DEFAULT_TIMEOUT, "reference", 0.3)
    return made


def test_segment_with_a_hung_accelerator_times_out_in_one_line(tmp_path, capsys, model_file, image_file,
                                                              hanging_overlays, stranded):
    t0 = time.monotonic()
    status, _, err = run_main(["segment", image_file, "--model", model_file, "--out", tmp_path / "o"], capsys)
    assert time.monotonic() - t0 < 10
    assert_one_line_error(status, err, "LOAD_WEIGHTS")
    (overlay,) = hanging_overlays
    # the hung command's buffers stay allocated (it may still write them), nothing else is kept
    assert overlay.memory.live_buffers() == len(stranded) == 5 and overlay.owner is None
    assert files_under(tmp_path / "o") == []


def test_accelerator_hanging_mid_run_strands_only_its_buffers(tmp_path, capsys, model_file, image_file,
                                                             monkeypatch, stranded):
    """Weights load, then the first frame never finishes: one line, no output, the accelerator
    given back, and only the hung command's buffers kept (never freed under its writes)."""
    overlays = []
    original_overlay = EmulatedOverlay.__init__
    original_accelerator = drv.Accelerator.__init__

    def overlay_init(self, *args, **kwargs):
        original_overlay(self, *args, **kwargs)
        overlays.append(self)

    def accelerator_init(self, *args, **kwargs):
        original_accelerator(self, *args, **kwargs)
        overlays[-1].mmio.hang = True  # the accelerator stops answering after LOAD_WEIGHTS

    monkeypatch.setattr(EmulatedOverlay, "__init__", overlay_init)
    monkeypatch.setattr(drv.Accelerator, "__init__", accelerator_init)
    monkeypatch.setitem(segmenter.DEFAULT_TIMEOUT, "emu", 0.3)
    second = tmp_path / "second.png"
    second.write_bytes(image_file.read_bytes())
    status, _, err = run_main(["segment", image_file, second, "--model", model_file, "--out", tmp_path / "o"],
                              capsys)
    assert_one_line_error(status, err, "RUN_FRAME")
    (overlay,) = overlays
    assert overlay.memory.live_buffers() == len(stranded) == 5 and overlay.owner is None
    assert files_under(tmp_path / "o") == []


def test_a_stream_that_hangs_with_a_frame_in_flight_gives_the_accelerator_back(stranded):
    model = tiny_model()
    overlay = EmulatedOverlay(model, hardware="reference")
    seg = Segmenter(model, overlay=overlay, timeout=0.3)
    frames = [random_frame(n, H, W) for n in range(6)]

    def source():
        for n, frame in enumerate(frames):
            if n == 3:
                overlay.mmio.hang = True  # frame 2 is running, frame 3 about to be submitted
            yield frame

    got = []
    with pytest.raises(HardwareTimeoutError):
        for result in seg.stream(source()):
            got.append(result.labels)
    assert 1 <= len(got) <= 3
    for labels, frame in zip(got, frames):
        assert np.array_equal(labels, reference.predict(model, frame))
    assert seg.closed and overlay.memory.live_buffers() == len(stranded) == 5 and overlay.owner is None
    with pytest.raises(SenteiError, match="closed"):
        seg(frames[0])


# -- one user of the accelerator at a time ---------------------------------------------------

def test_a_refused_second_segmenter_leaves_the_first_working():
    model = tiny_model()
    overlay = EmulatedOverlay(model, hardware="reference")
    frame = random_frame(5, H, W)
    with Segmenter(model, overlay=overlay) as first:
        with pytest.raises(SenteiError, match=r"in use by Segmenter\(model 'random-1'"):
            Segmenter(model, overlay=overlay)
        assert np.array_equal(first(frame), reference.predict(model, frame))
        assert overlay.memory.live_buffers() == 5


HOLD_LOCK = """
    import sys, time
    from sentei.host.runtime import driver as drv
    drv.LOCK_DIR = sys.argv[1]
    lock = drv._BoardLock("Segmenter(model 'holder', backend fpga)")
    print("holding", flush=True)
    time.sleep(600)
"""


def test_board_lock_names_the_holder_and_dies_with_it(tmp_path, monkeypatch):
    """The FPGA lock (an flock) refuses a second process, and a killed holder leaves no stale lock."""
    monkeypatch.setattr(drv, "LOCK_DIR", str(tmp_path))
    proc = _child(HOLD_LOCK, tmp_path)
    try:
        _wait_line(proc, "holding")
        with pytest.raises(SenteiError, match=rf"in use by Segmenter\(model 'holder', backend fpga\) "
                                              rf"\(pid {proc.pid}\)"):
            drv._BoardLock("second")
    finally:
        _kill(proc)
    lock = drv._BoardLock("third")  # the kernel dropped the dead holder's lock
    lock.release()


# -- a live run stopped from outside ---------------------------------------------------------

@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W * 2, H * 2))
    rng = np.random.default_rng(1)
    for _ in range(3000):
        writer.write(rng.integers(0, 256, size=(H * 2, W * 2, 3), dtype=np.uint8))
    writer.release()
    return path


def _camera(model_file, video, out):
    return subprocess.Popen([sys.executable, "-m", "sentei", "camera", "--source", str(video), "--model",
                             str(model_file), "--backend", "reference", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=60.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)
    time.sleep(0.3)  # some frames into the file


def test_ctrl_c_on_a_live_run_leaves_a_playable_video(tmp_path, model_file, long_video):
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "run.avi"
    proc = _camera(model_file, long_video, out)
    _wait_for(tmp_path / ".run.partial.avi", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and f"wrote {out}" in stdout
    assert not (tmp_path / ".run.partial.avi").exists()
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert 0 < n < 3000


def test_a_killed_live_run_never_leaves_a_broken_file_at_its_name(tmp_path, model_file, long_video):
    out = tmp_path / "run.avi"
    proc = _camera(model_file, long_video, out)
    _wait_for(tmp_path / ".run.partial.avi", proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert not out.exists()  # only the hidden partial file, never a truncated one under the name


# -- OS errors on output paths: one line --------------------------------------------------------

def test_a_file_where_the_output_folder_should_be(tmp_path, capsys, model_file, image_file):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    status, _, err = run_main(["segment", image_file, "--model", model_file, "--out", blocker], capsys)
    assert_one_line_error(status, err, str(blocker), "a file is where a folder is needed")
    status, _, err = run_main(["info", "--model", model_file, "--json", blocker / "facts.json"], capsys)
    assert_one_line_error(status, err, "a file is where a folder is needed")
    assert blocker.read_text() == "x"


def test_a_folder_where_the_report_file_should_be(tmp_path, capsys, model_file):
    (tmp_path / "r.json").mkdir()
    status, _, err = run_main(["info", "--model", model_file, "--json", tmp_path / "r.json"], capsys)
    assert_one_line_error(status, err, "a folder is where a file is needed")
    assert files_under(tmp_path) == []  # no temp file left beside it


def test_bench_report_of_a_binary_file(tmp_path, capsys, model_file):
    status, _, err = run_main(["bench-report", model_file, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(status, err, "not a sentei bench report")
    assert files_under(tmp_path / "o") == []
