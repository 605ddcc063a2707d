"""The live loop on a generated video file: frames counted, output playable however the run
ends (end of file, --frames, the camera vanishing, Ctrl-C); source strings checked as
untrusted input."""

import os

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.runtime import camera
from sentei.host.modelfile import schema, synthetic
from sentei.host.runtime.camera import FrameReader, LiveReport, VideoSink, parse_source, run_live
from sentei.host.runtime.segmenter import Segmenter

from .conftest import live_cli

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'sentei[camera]')")

W, H, N = 64, 48, 12


@pytest.fixture(scope="module")
def model():
    return synthetic.random_model(seed=21, height=24, width=32)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (W, H))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(N):
        writer.write(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8))
    writer.release()
    return path


def count_frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (H, W, 3)
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


def test_video_file_to_video_file(model, video, tmp_path):
    out = tmp_path / "out.mp4"
    reader = FrameReader(parse_source(str(video)))
    assert reader.fps == pytest.approx(12.0)
    with Segmenter(model, backend="reference") as seg:
        report = run_live(seg, reader, [VideoSink(out, fps=reader.fps)])
    reader.close()
    assert report.frames == N and not report.lost
    assert report.reason == f"end of {video} after {N} frames"
    assert report.outputs == [out]
    assert count_frames(out) == (N, pytest.approx(12.0))
    assert not list(tmp_path.glob(".*partial*"))


def test_frames_limit_and_measured_output_rate(model, video, tmp_path):
    out = tmp_path / "short.avi"
    with Segmenter(model, backend="reference") as seg:
        report = run_live(seg, FrameReader(parse_source(video)), [VideoSink(out)], max_frames=5)
    assert report.frames == 5 and report.reason == "reached 5 frames"
    n, fps = count_frames(out)
    assert n == 5 and 1.0 <= fps <= 60.0


def test_a_video_file_runs_in_batches_and_a_live_camera_frame_by_frame(model, video, tmp_path):
    """A file: FILE_BATCH frames per accelerator start (throughput; the last batch shorter); a live
    source: one (the newest frame shown at once). Same frames out, in order."""
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay
    from sentei.overlay import registers as R

    def frames_per_start(ov):
        return [e[2] for e in ov.log if e[:2] == ("write", R.FRAMES)][1:]  # after LOAD_WEIGHTS

    class Collect:
        def __init__(self):
            self.images = []

        def write(self, rgb):
            self.images.append(rgb)

        def close(self):
            return None

    ov = EmulatedOverlay(model)
    with Segmenter(model, overlay=ov) as seg:
        sink = Collect()
        report = run_live(seg, FrameReader(parse_source(str(video))), [sink], max_frames=10)
        assert report.frames == 10 and len(sink.images) == 10
        assert frames_per_start(ov) == [camera.FILE_BATCH, camera.FILE_BATCH, 2]
        reader = FrameReader(camera.Source("camera", 0, "camera 0"), capture=VanishingCamera(3))
        assert camera.live_batch(seg, reader) == 1
        mark = len(frames_per_start(ov))
        assert run_live(seg, reader, [Collect()]).frames == 3
        assert frames_per_start(ov)[mark:] == [1, 1, 1]


class VanishingCamera:
    """A live source that delivers a few frames, then stops (the camera was unplugged)."""

    def __init__(self, frames):
        self.frames = frames
        self.capture = self

    def read(self):
        if self.frames:
            self.frames -= 1
            return True, np.full((H, W, 3), 90, np.uint8)
        return False, None

    def release(self):
        pass

    def get(self, prop):
        return 30.0


def test_camera_vanishing_mid_stream_leaves_a_playable_file(model, tmp_path):
    out = tmp_path / "cam.mp4"
    reader = FrameReader(camera.Source("camera", 0, "camera 0"), capture=VanishingCamera(7))
    with Segmenter(model, backend="reference") as seg:
        report = run_live(seg, reader, [VideoSink(out, fps=10)])
    assert report.lost and report.frames == 7
    assert "camera 0 stopped delivering frames after 7" in report.reason
    assert count_frames(out)[0] == 7


def test_ctrl_c_ends_the_loop_with_a_playable_file(model, tmp_path):
    out = tmp_path / "interrupted.mp4"

    def frames():
        for i in range(100):
            if i == 6:
                raise KeyboardInterrupt
            yield synthetic.random_frame(i, H, W)

    with Segmenter(model, backend="reference") as seg:
        report = run_live(seg, frames(), [VideoSink(out, fps=10)])
        assert seg._acc.running is None  # the frame in flight was collected
    # frames 0-5 were read; frame 5 was on the accelerator when Ctrl-C came: collected, not shown
    assert report.reason == "stopped by Ctrl-C" and report.frames == 5
    assert count_frames(out)[0] == 5


def test_an_error_mid_run_still_finishes_the_file(model, tmp_path):
    out = tmp_path / "err.mp4"

    class Exploding:
        def write(self, rgb):
            raise RuntimeError("disk full")

        def close(self):
            return None

    sink = VideoSink(out, fps=10)
    with Segmenter(model, backend="reference") as seg, pytest.raises(RuntimeError):
        run_live(seg, (synthetic.random_frame(i, H, W) for i in range(4)), [sink, Exploding()])
    assert sink.frames == 1 and count_frames(out)[0] == 1  # the frame before the error, playable
    assert not list(tmp_path.glob(".*partial*"))


def test_overlay_has_the_fps_text(model):
    frames = [np.zeros((H, W, 3), np.uint8) for _ in range(3)]
    shown = []

    class Collect:
        def write(self, rgb):
            shown.append(rgb.copy())

        def close(self):
            return None

    with Segmenter(model, backend="reference") as seg:
        run_live(seg, frames, [Collect()], alpha=0.0)  # alpha 0: the frame itself, plus the text
    assert len(shown) == 3
    assert all(img.shape == (H, W, 3) for img in shown)
    assert all((img > 128).sum() > 30 for img in shown)  # white text on the black frame


@pytest.mark.parametrize("text, kind", [("0", "camera"), ("2", "camera"), ("rtsp://cam.local:554/live", "url"),
                                        ("https://example.org/stream.m3u8", "url")])
def test_accepted_sources(text, kind):
    assert parse_source(text).kind == kind


@pytest.mark.parametrize("text, message", [
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("concat://a|b", "scheme 'concat' is not allowed"),
    ("rtsp://host/a b", "spaces or control characters"),
    ("http://host/x\r\nHeader: y", "spaces or control characters"),
    ("rtsp:///path", "has no host name"),
    ("rtsp://host:70000/x", "port is not a number"),
    ("http://" + "a" * 3000, "characters long"),
    ("64", "out of range"),
    ("pipe:0", "video source not found"),
    ("/no/such/video.mp4", "video source not found"),
])
def test_rejected_sources(text, message):
    with pytest.raises(SenteiError, match=message):
        parse_source(text)


def test_a_v4l2_device_path_is_a_camera(tmp_path):
    """`--source /dev/video2` (or a /dev/v4l/by-id link to it) is a camera like an index; a
    character device stands in for the camera node here."""
    src = parse_source("/dev/null")
    assert (src.kind, src.target, src.label, src.live) == ("camera", "/dev/null", "camera /dev/null", True)
    link = tmp_path / "usb-cam-video-index0"
    link.symlink_to("/dev/null")
    assert parse_source(str(link)).target == "/dev/null"


def test_a_camera_queues_one_frame_and_a_device_path_goes_to_v4l2(monkeypatch):
    """The overlay shows the newest frame (V4L2 would queue four), a stalled camera blocks a read
    for 2 s rather than OpenCV's 10 unless the user chose, and a device path opens through V4L2."""
    calls = []

    class Capture:
        def __init__(self, *args):
            calls.append(("open", args))

        def set(self, prop, value):
            calls.append(("set", prop, value))
            return True

        def isOpened(self):
            return True

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    monkeypatch.delenv("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", raising=False)
    camera.open_capture(parse_source("0"))
    assert calls == [("open", (0,)), ("set", cv2.CAP_PROP_BUFFERSIZE, 1)]
    assert os.environ["OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"] == "2"
    calls.clear()
    camera.open_capture(parse_source("/dev/null"))
    assert calls[0] == ("open", ("/dev/null", cv2.CAP_V4L2))


def test_credentials_never_appear_in_messages():
    src = parse_source("rtsp://admin:secret@cam.local/live")
    assert "secret" not in src.label and "admin" not in src.label
    with pytest.raises(SenteiError) as err:
        parse_source("rtsp://admin:secret@cam.local:99999/live")
    assert "secret" not in str(err.value)


def test_file_named_like_an_ffmpeg_protocol_stays_a_file(tmp_path, monkeypatch, video):
    odd = tmp_path / "pipe:0"
    odd.write_bytes(video.read_bytes())
    monkeypatch.chdir(tmp_path)
    src = parse_source("pipe:0")
    assert src.kind == "file" and str(src.target).startswith("/")
    reader = FrameReader(src)
    assert sum(1 for _ in reader) == N


def test_unknown_output_suffix_is_refused(tmp_path):
    with pytest.raises(SenteiError, match=".mp4, .avi or .mkv"):
        VideoSink(tmp_path / "x.gif")


def test_display_without_a_desktop_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SenteiError, match="--out video.mp4"):
        camera.WindowSink()


def test_camera_command_on_a_video_file(model, video, tmp_path, capsys):
    path = schema.save(model, tmp_path / "m.sentei")
    out = tmp_path / "o.mp4"
    assert live_cli(["camera", "--source", str(video), "--model", str(path), "--backend", "reference",
                 "--out", str(out), "--frames", "4"]) == 0
    assert count_frames(out)[0] == 4
    assert "reached 4 frames: 4 frames" in capsys.readouterr().out


def test_camera_command_needs_display_or_out(model, tmp_path):
    with pytest.raises(SystemExit):
        live_cli(["camera", "--source", "0"])


def test_live_report_fps():
    assert LiveReport(frames=10, seconds=2.0).fps == 5.0
    assert LiveReport().fps == 0.0


def test_a_source_without_frames_is_an_error_and_writes_nothing(model, tmp_path):
    """A text file named .jpg opens (FFmpeg's image demuxer) but yields no frame: not a 0 FPS success."""
    path = schema.save(model, tmp_path / "m.sentei")
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    out = tmp_path / "v.mp4"
    with pytest.raises(SenteiError, match=f"no frame could be read from {text}"):
        live_cli(["camera", "--source", str(text), "--model", str(path), "--backend", "reference",
                  "--out", str(out)])
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("argv, message", [
    (["--fps", "0"], r"--fps 0 is outside \(0, 240\]"),
    (["--out", "{video}"], "is also the input"),
    (["--out", ""], "--out: empty path"),
])
def test_camera_options_are_checked_before_the_model_loads(video, argv, message):
    argv = [a.format(video=video) for a in argv]
    if "--out" not in argv:
        argv += ["--out", "o.mp4"]
    with pytest.raises(SenteiError, match=message):  # a model that does not exist: checked later
        live_cli(["camera", "--source", str(video), "--model", "/no/such/model.sentei", *argv])


class ClosedWriter:
    """A cv2.VideoWriter that did not open (no encoder, or no place to write)."""

    def __init__(self, *args):
        pass

    def isOpened(self):
        return False


def test_a_missing_encoder_suggests_another_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    sink = VideoSink(tmp_path / "x.avi", fps=10)
    with pytest.raises(SenteiError, match=r"no encoder for \.avi here \(try \.mp4 or \.mkv\)"):
        sink.write(np.zeros((H, W, 3), np.uint8))


def test_an_unwritable_place_is_not_blamed_on_the_encoder(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    monkeypatch.setattr(camera.Path, "touch", refuse)
    sink = VideoSink(tmp_path / "x.avi", fps=10)
    with pytest.raises(SenteiError, match=r"cannot write .*x\.avi \(Permission denied\); pass another path"):
        sink.write(np.zeros((H, W, 3), np.uint8))


def test_opencv_says_nothing_when_a_camera_does_not_open(capfd, monkeypatch):
    """Only our one-line error: OpenCV's [ WARN...]/[ERROR...] lines for a missing camera are silenced."""
    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    with pytest.raises(SenteiError, match="cannot open camera 63"):
        camera.open_capture(camera.Source("camera", 63, "camera 63"))
    assert cv2.getLogLevel() != 0  # restored afterwards
    err = capfd.readouterr().err
    assert "WARN" not in err and "ERROR" not in err


def test_opencv_log_is_silenced_while_opening_and_restored(monkeypatch):
    import types

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    levels = []
    cv2 = types.SimpleNamespace(getLogLevel=lambda: 3, setLogLevel=levels.append)
    with camera._quiet(cv2):
        assert levels == [0]
    assert levels == [0, 3]
    with camera._quiet(types.SimpleNamespace()):  # an OpenCV without the call (3.x): nothing to silence
        pass
    monkeypatch.setenv("OPENCV_LOG_LEVEL", "DEBUG")  # the user's choice wins
    with camera._quiet(cv2):
        assert levels == [0, 3]
