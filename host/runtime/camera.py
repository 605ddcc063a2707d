"""Live segmentation: frames from a camera, a stream URL or a video file, through the
accelerator, out to a window, a video file, or a notebook cell.

- :func:`parse_source` checks what the user typed (``0``, ``rtsp://...``, ``clip.mp4``). A URL
  is untrusted input: only ``rtsp``, ``rtsps``, ``http`` and ``https``, no control characters or
  spaces, a host name, a valid port; credentials never appear in messages; FFmpeg is told to
  use only the network protocols of that scheme (no ``file:``, ``concat:``, ``pipe:`` from a
  playlist), with open and read timeouts. A file path is passed to FFmpeg absolute, so a file
  named ``pipe:0`` stays a file.
- :class:`FrameReader` yields RGB frames and records why it stopped (end of file, camera gone).
- :class:`VideoSink` writes to a temporary file and renames it on :meth:`~VideoSink.close`:
  the video is complete and playable, or absent. :class:`WindowSink` shows an OpenCV window
  (not on a headless OpenCV), :class:`InlineSink` a notebook cell.
- :func:`run_live` is the loop: :meth:`Segmenter.stream` (pipelined; a video file in batches of
  :data:`FILE_BATCH` frames per accelerator start), the blended overlay with
  the FPS written on it, the sinks; it closes every sink whatever ends the loop -- the
  source ending, the camera vanishing, ``--frames``, a key in the window, Ctrl-C.

OpenCV (``pip install 'sentei[camera]'``) is imported by the functions that need it.
"""
from __future__ import annotations

import ipaddress
import os
import string
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import numpy as np

from sentei.errors import SenteiError

URL_SCHEMES = {  # scheme -> the FFmpeg protocols a stream of that scheme may use
    "rtsp": "rtsp,rtp,srtp,udp,tcp",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "http": "http,tcp,hls,crypto,httpproxy",
    "https": "https,http,tcp,tls,hls,crypto,httpproxy",
}
MAX_URL = 2048
MAX_CAMERA_INDEX = 63
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
OPEN_TIMEOUT_MS = 10_000


def _cv2():
    # FFmpeg's own lines ("[tcp @ 0x...] Connection refused") are silenced unless the user
    # asks for them; OpenCV reads this when its FFmpeg backend first starts, so it is set here
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    # a V4L2 camera that stops sending (a USB hiccup) blocks each read for this many seconds
    # (OpenCV's default 10; CAP_PROP_READ_TIMEOUT_MSEC does not reach V4L2): 2 s, unless set
    os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")
    try:
        import cv2
    except ImportError:
        raise SenteiError("live segmentation needs OpenCV: pip install 'sentei[camera]'") from None
    return cv2


@contextmanager
def _quiet(cv2):
    """OpenCV's own log silenced (its ``[ WARN...]``/``[ERROR...]`` lines for a camera index, URL
    or output file that does not open); our one-line error says what failed. ``OPENCV_LOG_LEVEL`` set by
    the user wins."""
    if "OPENCV_LOG_LEVEL" in os.environ or not hasattr(cv2, "setLogLevel"):  # (OpenCV < 4 lacks it)
        yield
        return
    before = cv2.getLogLevel()
    cv2.setLogLevel(0)  # LOG_LEVEL_SILENT: at ERROR a missing camera still prints an obsensor line
    try:
        yield
    finally:
        cv2.setLogLevel(before)


@dataclass(frozen=True)
class Source:
    """A checked frame source."""

    kind: str  # "camera" | "url" | "file"
    target: object  # camera index or V4L2 device path, URL, or absolute path
    label: str  # for messages: the URL without credentials

    @property
    def live(self) -> bool:
        return self.kind != "file"


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def parse_source(text) -> Source:
    """Check ``--source``: a camera index, a stream URL or a video file.

    Raises
    ------
    SenteiError
        For a URL with another scheme, control characters, no host or a bad port, or a
        file that does not exist.
    """
    if isinstance(text, int):
        text = str(text)
    text = str(text).strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is True, int("²") fails
        index = int(text)
        if index > MAX_CAMERA_INDEX:
            raise SenteiError(f"camera index {index} is out of range (0-{MAX_CAMERA_INDEX})")
        return Source("camera", index, f"camera {index}")
    if "://" in text:
        return _parse_url(text)
    if not text.isprintable():
        raise SenteiError("the source file name contains control characters (a newline, NUL, ...); "
                          "pass a camera index, a URL or a plain file name")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~nobody/x": that user has no home directory
        path = Path(text)
    try:
        is_file = path.is_file()
        is_device = not is_file and path.resolve().is_char_device()  # /dev/video2, /dev/v4l/by-id/... links
    except OSError:  # a name too long for the file system, a path through a file, ...
        is_file = is_device = False
    if is_device:
        return Source("camera", str(path.resolve()), f"camera {path}")
    if not is_file:
        raise SenteiError(f"video source not found: {text} (pass a camera index like 0 or a device like "
                          f"/dev/video0, an rtsp:// or http(s):// URL, or a video file)")
    return Source("file", path.resolve(), str(path))


def _parse_url(text: str) -> Source:
    if len(text) > MAX_URL:
        raise SenteiError(f"the source URL is {len(text)} characters long (at most {MAX_URL})")
    if any(ch not in string.printable or ch in string.whitespace for ch in text):
        raise SenteiError("the source URL contains spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(text)
        safe = redact(text)
    except ValueError as exc:  # unbalanced or invalid [IPv6] host; the URL itself is not echoed
        raise SenteiError(f"the source URL is not a valid URL ({exc}); check the host part") from None
    bracketed = parts.netloc.rpartition("@")[2]
    if bracketed.startswith("["):  # checked here as well: Python before 3.11 lets any [host] through
        try:
            ipaddress.IPv6Address(bracketed[1:bracketed.find("]")].partition("%")[0])
        except ValueError:
            raise SenteiError("the source URL is not a valid URL (a host in brackets must be an IPv6 address); "
                              "check the host part") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise SenteiError(f"source URL scheme {parts.scheme!r} is not allowed: use "
                          f"{', '.join(s + '://' for s in URL_SCHEMES)}")
    try:
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise SenteiError(f"source URL {safe}: the port is not a number in 1-65535") from None
    if not host:
        raise SenteiError(f"source URL {safe} has no host name")
    if port == 0:
        raise SenteiError(f"source URL {safe}: port 0 is not a valid port")
    return Source("url", text, safe)


def open_capture(source: Source, timeout_ms: int = OPEN_TIMEOUT_MS):
    """An opened ``cv2.VideoCapture`` for ``source`` (raises :class:`SenteiError` if it does not open)."""
    cv2 = _cv2()
    with _quiet(cv2):
        cap = _capture(cv2, source, timeout_ms)
    if not cap.isOpened():
        cap.release()
        hint = {"camera": "is a camera plugged in (ls /dev/video*) and not used by another program?",
                "file": "is it a video file OpenCV can decode (mp4, avi, mkv)?",
                "url": "is the stream reachable from this machine?"}[source.kind]
        raise SenteiError(f"cannot open {source.label}: {hint}")
    return cap


def _capture(cv2, source: Source, timeout_ms: int):
    if source.kind == "camera":
        cap = cv2.VideoCapture(source.target, cv2.CAP_V4L2) if isinstance(source.target, str) else \
            cv2.VideoCapture(source.target)
        # one frame queued, not V4L2's default four: when segmentation is slower than the camera the
        # overlay shows the newest frame instead of lagging four behind (ignored where unsupported)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    if source.kind == "file":
        return cv2.VideoCapture(str(source.target), cv2.CAP_FFMPEG)
    key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    before = os.environ.get(key)
    scheme = urlsplit(source.target).scheme.lower()
    os.environ[key] = f"protocol_whitelist;{URL_SCHEMES[scheme]}"
    try:
        return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG,
                                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


class FrameReader:
    """RGB frames of a capture; ``end_reason`` says why the frames stopped.

    Parameters
    ----------
    source : Source
    capture : cv2.VideoCapture, optional
        Opened with :func:`open_capture` when not given.
    """

    def __init__(self, source: Source, capture=None):
        self.source = source
        self.capture = capture if capture is not None else open_capture(source)
        self.frames = 0
        self.end_reason: str | None = None
        self.lost = False  # True when a live source stopped delivering (not a normal end)

    @property
    def fps(self) -> float:
        """The frame rate the source reports (0 when unknown)."""
        cv2 = _cv2()
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return fps if 0.0 < fps <= 1000.0 else 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        cv2 = _cv2()
        while True:
            try:
                ok, bgr = self.capture.read()
            except cv2.error:
                ok, bgr = False, None
            if not ok or bgr is None:
                if self.source.live:
                    self.lost = True
                    self.end_reason = (f"{self.source.label} stopped delivering frames after {self.frames} "
                                       f"(unplugged, or the stream ended)")
                else:
                    self.end_reason = f"end of {self.source.label} after {self.frames} frames"
                return
            self.frames += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.capture.release()


class StopLive(Exception):
    """Raised by a sink to end the loop (a key pressed in the window)."""


def check_video_out(path, source: Source | None = None) -> Path:
    """``--out``: a writable ``.mp4``/``.avi``/``.mkv`` path that is not the source file."""
    from sentei.output_paths import check_output

    inputs = (source.target,) if source is not None and source.kind == "file" else ()
    out = check_output(path, "--out", inputs=inputs)
    if out.suffix.lower() not in VIDEO_CODECS:
        raise SenteiError(f"--out {path}: use a .mp4, .avi or .mkv file name")
    return out


def check_fps(fps: float | None) -> None:
    """``--fps``: a frame rate in (0, 240], or None (measured)."""
    if fps is not None and not 0 < fps <= 240:
        raise SenteiError(f"--fps {fps:g} is outside (0, 240]; pass a frame rate such as 30")


class VideoSink:
    """Frames to a video file, written under a temporary name and renamed when closed.

    Parameters
    ----------
    path : str or Path
        ``.mp4`` (MPEG-4 part 2), ``.avi`` (Motion JPEG) or ``.mkv``.
    fps : float, optional
        The file's frame rate; by default measured from the first frames' arrival times,
        so a file of a 5 FPS live run plays at the speed it was seen.
    """

    WARMUP = 8  # frames buffered to measure the rate when fps is not given

    def __init__(self, path, fps: float | None = None):
        self.path = check_video_out(path)
        suffix = self.path.suffix.lower()
        check_fps(fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._pending: list[tuple[float, np.ndarray]] = []

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None and self.fps is None:
            self._pending.append((time.perf_counter(), rgb))
            if len(self._pending) >= self.WARMUP:
                self._open_with_pending()
            return
        self._put(rgb)

    def _open_with_pending(self) -> None:
        if self.fps is None:
            times = [t for t, _ in self._pending]
            span = times[-1] - times[0]
            rate = (len(times) - 1) / span if len(times) > 1 and span > 0 else 10.0
            self.fps = float(min(max(rate, 1.0), 60.0))
        pending, self._pending = self._pending, []
        for _, rgb in pending:
            self._put(rgb)

    def _put(self, rgb: np.ndarray) -> None:
        cv2 = _cv2()
        if self._writer is None:
            h, w = rgb.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            with _quiet(cv2):
                self._writer = cv2.VideoWriter(str(self.tmp), fourcc, float(self.fps), (w, h))
            if not self._writer.isOpened():
                self._writer = None
                try:  # a place that cannot be written, rather than a missing encoder?
                    self.tmp.touch()
                    self.tmp.unlink()
                except OSError as exc:
                    raise SenteiError(f"cannot write {self.path} ({exc.strerror}); pass another path") from None
                others = " or ".join(s for s in VIDEO_CODECS if s != self.path.suffix.lower())
                raise SenteiError(f"cannot write {self.path}: OpenCV has no encoder for "
                                  f"{self.path.suffix} here (try {others})")
            self.size = (w, h)
        if rgb.shape[1::-1] != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file (playable) and give it its name; None if no frame was written."""
        if self._pending:
            self._open_with_pending()
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        writer.release()
        os.replace(self.tmp, self.path)
        return self.path


class WindowSink:
    """An OpenCV window; ``q`` or Esc in it ends the loop."""

    def __init__(self, title: str = "sentei"):
        cv2 = _cv2()
        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SenteiError("--display needs a desktop (no $DISPLAY here); on a headless board "
                              "use --out video.mp4")
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise SenteiError("--display needs an OpenCV with GUI support (pip install opencv-python, "
                              "not -headless); or use --out video.mp4") from None
        self.title = title

    def write(self, rgb: np.ndarray) -> None:
        cv2 = _cv2()
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise StopLive("stopped from the window")

    def close(self) -> None:
        cv2 = _cv2()
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class InlineSink:
    """Frames shown in a Jupyter cell, replaced in place (``IPython.display`` with a display id).

    Parameters
    ----------
    every : int
        Show every n-th frame (JPEG encoding and the notebook's websocket cost time).
    width : int
        Width of the shown image in pixels.
    """

    def __init__(self, every: int = 1, width: int = 480):
        from IPython.display import display

        self.every = max(1, int(every))
        self.width = width
        self.frames = 0
        self._handle = display(display_id=True)

    def write(self, rgb: np.ndarray) -> None:
        from IPython.display import Image

        self.frames += 1
        if (self.frames - 1) % self.every:
            return
        cv2 = _cv2()
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if ok:
            self._handle.update(Image(data=jpeg.tobytes(), format="jpeg", width=self.width))

    def close(self) -> None:
        pass


class FpsMeter:
    """Frames per second over the last ``window`` frames."""

    def __init__(self, window: int = 30):
        self.times: deque = deque(maxlen=window + 1)

    def tick(self, now: float | None = None) -> float:
        self.times.append(time.perf_counter() if now is None else now)
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


def annotate(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` in the top-left corner (white on a dark outline), in place."""
    cv2 = _cv2()
    scale = max(0.4, rgb.shape[1] / 900.0)
    org = (8, int(10 + 22 * scale))
    thick = max(1, int(round(2 * scale)))
    cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return rgb


@dataclass
class LiveReport:
    """How a live run went."""

    frames: int = 0
    seconds: float = 0.0
    reason: str = ""
    lost: bool = False  # the live source vanished
    outputs: list = field(default_factory=list)  # files written

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


FILE_BATCH = 4  # frames per accelerator start when reading a file (no one waits for the newest frame)


def live_batch(seg, frames) -> int:
    """Frames per accelerator start for ``frames``: :data:`FILE_BATCH` (at least the Segmenter's)
    for a video file, where throughput is what counts; the Segmenter's own (1 by default) for a
    live source, where a batch would show every frame up to ``batch - 1`` frame periods late."""
    source = getattr(frames, "source", None)
    own = getattr(seg, "batch", 1)
    return max(own, FILE_BATCH) if source is not None and not source.live else own


def run_live(seg, frames: Iterable[np.ndarray], sinks: list, max_frames: int | None = None,
             alpha: float = 0.5, batch: int | None = None) -> LiveReport:
    """Segment ``frames`` and send the annotated overlays to ``sinks`` until the frames end.

    Parameters
    ----------
    seg : Segmenter
    frames : iterable of numpy.ndarray
        RGB frames (a :class:`FrameReader`, whose ``end_reason`` is reported).
    sinks : list
        Objects with ``write(rgb)`` and ``close()``.
    max_frames : int, optional
        Stop after this many frames.
    alpha : float
        Opacity of the labels in the overlay.
    batch : int, optional
        Frames per accelerator start (default :func:`live_batch`: 4 for a video file, the
        Segmenter's own for a live source).

    Returns
    -------
    LiveReport
        Every sink is closed, whatever ended the loop (Ctrl-C included).
    """
    report = LiveReport()
    meter = FpsMeter()

    def limited():
        for n, frame in enumerate(frames):
            if max_frames is not None and n >= max_frames:
                report.reason = f"reached {max_frames} frames"
                return
            yield frame

    results = seg.stream(limited(), batch=live_batch(seg, frames) if batch is None else batch)
    t0 = time.perf_counter()
    try:
        for res in results:
            fps = meter.tick()
            image = seg.blend(res.frame, res.labels, alpha)
            annotate(image, f"{fps:5.1f} FPS  {seg.backend}  accel {res.timing.accelerator * 1e3:.0f} ms")
            for sink in sinks:
                sink.write(image)
            report.frames += 1
    except KeyboardInterrupt:
        report.reason = "stopped by Ctrl-C"
    except StopLive as stop:
        report.reason = str(stop)
    finally:
        report.seconds = time.perf_counter() - t0
        results.close()
        for sink in sinks:
            out = sink.close()
            if out is not None:
                report.outputs.append(out)
    if not report.reason:
        report.reason = getattr(frames, "end_reason", None) or "the frames ended"
        report.lost = bool(getattr(frames, "lost", False))
    return report
