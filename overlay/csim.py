"""C-simulation of the HLS accelerator: the real sources, compiled with g++, checked bit for bit.

Two ways in, both built from the same sources (``overlay/hls``, ``overlay/tb``) and the
network header generated for the model (:mod:`sentei.overlay.codegen`):

* :func:`run_csim` -- the testbench: golden vectors from the reference engine are written
  as ``.npy``, the ``sentei_tb`` executable runs the top function on them and compares every
  element of every layer; the result is a :class:`CsimReport` (``sentei overlay csim``).
* :class:`CsimAccelerator` -- the top function in a shared library called through ctypes
  (like hls4ml's ``compile()/predict()``): ``load_weights``, ``run_frame``, ``execute`` for
  the host driver's emulated overlay.

Builds are cached under ``$SENTEI_CACHE/csim`` (default ``~/.cache/sentei/csim``), keyed by a
hash of the sources, the generated headers, the compiler and its flags and the content of
Xilinx's headers (not their path: two virtual environments with the same hls4ml share builds). Xilinx's
``ap_int.h``/``hls_stream.h`` come from the installed ``hls4ml`` wheel (``sentei[dev]``); they
are found through importlib and never copied.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sentei.errors import SenteiError
from sentei.overlay import registers
from sentei.overlay.toolchain import cache_root, find_compiler, hls_include_dir

HERE = Path(__file__).resolve().parent
HLS_DIR = HERE / "hls"
TB_DIR = HERE / "tb"
CXXFLAGS = ("-O2", "-std=c++14", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
            "-fno-gnu-unique")
BUILD_TIMEOUT_S = 900
LIB_NAME = "libsentei_csim.so"
TB_NAME = "sentei_tb"
MAX_FRAMES = 4096  # frames one start of the C-simulation may run (bounds the buffers it allocates)


# ---------------------------------------------------------------------------------------
# sources (the compiler, headers and cache: sentei.overlay.toolchain)


def _sources() -> list[Path]:
    return sorted(list(HLS_DIR.glob("*.hpp")) + list(HLS_DIR.glob("*.cpp")) +
                  list(TB_DIR.glob("*.hpp")) + list(TB_DIR.glob("*.cpp")))


# ---------------------------------------------------------------------------------------
# building


@functools.lru_cache(maxsize=8)
def include_digest(include: Path) -> str:
    """Hash of every file under Xilinx's header directory ``include``, by relative path and
    content: what a build depends on there, wherever the directory lies."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(include).rglob("*") if p.is_file()):
        digest.update(path.relative_to(include).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass
class CsimBuild:
    """A compiled network: the ctypes library and the testbench executable."""

    directory: Path
    facts: object  # sentei.overlay.codegen.NetworkFacts
    key: str
    compile_seconds: float = 0.0  # 0 when found in the cache

    @property
    def library(self) -> Path:
        return self.directory / LIB_NAME

    @property
    def testbench(self) -> Path:
        return self.directory / TB_NAME


def _compile_all(cxx: str, gen_dir: Path, out: Path, include: Path) -> None:
    inc = ["-I", str(gen_dir), "-I", str(HLS_DIR), "-I", str(TB_DIR), "-isystem", str(include)]
    base = [cxx, *CXXFLAGS, *inc]
    log = out / "build.log"

    def start(args):
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(procs):
        failed = None
        with open(log, "a") as fh:
            for args, proc in procs:
                text, _ = proc.communicate(timeout=BUILD_TIMEOUT_S)
                fh.write(" ".join(args) + "\n" + text)
                if proc.returncode and failed is None:
                    first = next((ln for ln in text.splitlines() if "error" in ln), text.strip()[:200])
                    failed = f"C-simulation build failed ({Path(args[-3]).name}): {first.strip()} (log: {log})"
        if failed:
            raise SenteiError(failed)

    # the heavy translation unit (the whole network) next to the two light ones: 2 cores busy
    jobs = [(base + ["-c", str(HLS_DIR / "sentei_top.cpp"), "-o", str(out / "sentei_top.o")]),
            (base + ["-c", str(TB_DIR / "sentei_tb.cpp"), "-o", str(out / "sentei_tb.o")]),
            (base + ["-c", str(TB_DIR / "csim_api.cpp"), "-o", str(out / "csim_api.o")])]
    finish([(args, start(args)) for args in jobs])
    links = [[cxx, "-shared", "-Wl,-Bsymbolic", str(out / "sentei_top.o"), str(out / "csim_api.o"), "-o",
              str(out / LIB_NAME)],
             [cxx, str(out / "sentei_top.o"), str(out / "sentei_tb.o"), "-o", str(out / TB_NAME)]]
    finish([(args, start(args)) for args in links])


def build(model, lanes=None, cache_dir: str | os.PathLike | None = None, board: str | None = None,
          clock_mhz: float | None = None) -> CsimBuild:
    """Generate the network header for ``model`` and compile it (or find it in the cache).

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
    lanes : list of int, optional
        Lanes per layer (default: see :func:`sentei.overlay.codegen.choose_lanes`).
    cache_dir : path, optional
        Cache root; default :func:`cache_root`.

    Returns
    -------
    CsimBuild
    """
    from sentei.overlay import codegen

    include = hls_include_dir()
    cxx = find_compiler()
    facts = codegen.network_facts(model, lanes, board, clock_mhz)
    files = codegen.render(facts)
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in (version, " ".join(CXXFLAGS), include_digest(include)):
        digest.update(part.encode() + b"\0")
    for src in _sources():
        digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    for name in ("network_config.h", "network.h"):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    key = digest.hexdigest()[:24]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    final = root / key
    if (final / LIB_NAME).is_file() and (final / TB_NAME).is_file():
        return CsimBuild(final, facts, key)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    t0 = time.perf_counter()
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        _compile_all(cxx, tmp, tmp, include)
        for obj in tmp.glob("*.o"):
            obj.unlink()
        try:
            os.rename(tmp, final)  # atomic: a concurrent build of the same key keeps its own
        except OSError:
            if not (final / LIB_NAME).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CsimBuild(final, facts, key, compile_seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------
# the accelerator through ctypes


def frame_to_words(frame: np.ndarray, words: int) -> np.ndarray:
    """uint8 HWC frame -> the little-endian 32-bit words the frame port reads (``words`` of them)."""
    raw = np.zeros(words * 4, dtype=np.uint8)
    flat = np.ascontiguousarray(frame, dtype=np.uint8).reshape(-1)[: raw.size]
    raw[: flat.size] = flat
    return raw.view("<u4")


class CsimAccelerator:
    """The HLS top function of one network, compiled for C-simulation and called via ctypes.

    Each instance has its own on-chip state (weights loaded or not), as one accelerator on
    one board: the compiled library is opened from a private copy.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
        The network to compile (its compile-time facts; weights come with :meth:`load_weights`).
    lanes : list of int, optional
        Lanes per layer; default as ``sentei overlay codegen``.
    cache_dir : path, optional
        Build cache root.

    Examples
    --------
    >>> acc = CsimAccelerator(model)                      # doctest: +SKIP
    >>> acc.load_weights(sentei.host.modelfile.schema.weight_blob(model))
    0
    >>> status, logits = acc.run_frame(frame)             # logits: int32 [h, w, num_classes]
    """

    def __init__(self, model, lanes=None, cache_dir: str | os.PathLike | None = None,
                 board: str | None = None, clock_mhz: float | None = None):
        self.model = model
        self.build = build(model, lanes, cache_dir, board, clock_mhz)
        self.facts = self.build.facts
        self._lock = threading.Lock()
        self._traced_frames = 0
        fd, private = tempfile.mkstemp(prefix="sentei_csim_", suffix=".so")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.build.library.read_bytes())
            self._lib = ctypes.CDLL(private)
        finally:
            os.unlink(private)  # the mapping stays valid; nothing is left behind
        lib = self._lib
        u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
        i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
        lib.sentei_csim_execute.argtypes = [u32p, u32p, i32p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                            ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
        lib.sentei_csim_execute.restype = ctypes.c_uint
        lib.sentei_csim_iterations.argtypes = [np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")]
        lib.sentei_csim_iterations.restype = None
        lib.sentei_csim_stage_size.argtypes = [ctypes.c_uint]
        lib.sentei_csim_stage_size.restype = ctypes.c_ulonglong
        lib.sentei_csim_stage.argtypes = [ctypes.c_uint, i32p]
        lib.sentei_csim_stage.restype = None
        for name in ("num_layers", "blob_words", "frame_words", "logit_words"):
            getattr(lib, f"sentei_csim_{name}").restype = ctypes.c_uint
        self.num_layers = lib.sentei_csim_num_layers()
        self.blob_words = lib.sentei_csim_blob_words()
        self.frame_words = lib.sentei_csim_frame_words()
        self.logit_words = lib.sentei_csim_logit_words()
        last = self.facts.layers[-1]
        self.logits_shape = (last.out_height, last.out_width, last.cout)

    def execute(self, cmd: int, frame_words: np.ndarray | None = None, weights: np.ndarray | None = None,
                logits: np.ndarray | None = None, height: int = 0, width: int = 0, trace: bool = False,
                frames: int = 1) -> int:
        """One start of the accelerator: the registers' values and the three DDR buffers.

        Buffers are used as the m_axi ports see DDR: the frame port reads ``frames *
        frame_words`` words, the weight port ``blob_words`` words (words past the end of a
        shorter array read as 0), and the logits port writes ``frames * logit_words`` int32
        into ``logits`` (in place, when given as a C-contiguous int32 array of at least that
        size). ``frames`` is the FRAMES register (0 returns STATUS_BAD_FRAMES). Returns the
        STATUS code.
        """
        def words(arr, n, dtype):
            buf = np.zeros(n, dtype=dtype)
            if arr is not None:
                flat = np.ascontiguousarray(arr).reshape(-1)
                if flat.dtype.itemsize != 4:
                    raise SenteiError(f"DDR buffers are passed as 32-bit words, got {flat.dtype}")
                flat = flat.view(dtype)[:n]
                buf[: flat.size] = flat
            return buf

        frames = int(frames)
        if not 0 <= frames <= MAX_FRAMES:
            raise SenteiError(f"frames {frames}: a start runs 1 to {MAX_FRAMES} frames")
        buffered = max(frames, 1)
        if logits is not None and not (isinstance(logits, np.ndarray) and logits.dtype == np.int32
                                       and logits.flags.c_contiguous and logits.size >= buffered * self.logit_words):
            raise SenteiError(f"logits buffer must be a C-contiguous int32 array of at least "
                              f"{buffered * self.logit_words} values ({buffered} frame(s))")
        f = words(frame_words, buffered * self.frame_words, np.uint32)
        w = words(weights, self.blob_words, np.uint32)
        out = words(logits, buffered * self.logit_words, np.int32)
        with self._lock:
            status = int(self.lib.sentei_csim_execute(f, w, out, int(cmd), int(height), int(width), frames,
                                                      buffered, int(trace)))
        if logits is not None:
            logits.reshape(-1)[: out.size] = out
        return status

    def load_weights(self, blob: np.ndarray) -> int:
        """CMD_LOAD_WEIGHTS with ``blob`` (uint32 words, :func:`sentei.host.modelfile.schema.weight_blob`).

        A blob of another length than the compiled network's returns ``STATUS_BAD_LAYOUT``
        without starting the accelerator: the hardware cannot see a buffer's length, so this
        is the check the driver makes before it starts a load. A build whose layers share a
        window among their lanes takes those layers' weights in schedule order
        (``scheduled_blob(model, weight_blob(model), acc.facts.shared_windows())``,
        :mod:`sentei.host.modelfile.schedule`); in the model file's order its loader returns
        ``STATUS_BAD_LAYOUT``.
        """
        blob = np.asarray(blob)
        if blob.dtype != np.uint32 or blob.ndim != 1:
            raise SenteiError(f"weight blob must be a 1-D uint32 array, got {blob.dtype} {list(blob.shape)} "
                              f"(use sentei.host.modelfile.schema.weight_blob)")
        if blob.size != self.blob_words:
            return registers.STATUS_BAD_LAYOUT
        return self.execute(registers.CMD_LOAD_WEIGHTS, weights=blob)

    def run_frame(self, frame: np.ndarray, trace: bool = False) -> tuple[int, np.ndarray]:
        """CMD_RUN_FRAME: uint8 RGB ``[H, W, 3]`` -> ``(status, int32 logits [h, w, num_classes])``.

        The frame's own height and width go to the HEIGHT/WIDTH registers, so a frame of
        another size than the compiled one returns ``STATUS_BAD_SIZE`` (and zero logits).
        With ``trace`` every stage's activations are kept for :meth:`stage`.
        """
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise SenteiError(f"frame must be uint8 RGB of shape [H, W, 3], got {frame.dtype} {list(frame.shape)} "
                              f"(use sentei.host.data.preprocess.prepare_frame)")
        status, logits = self.run_frames([frame], trace)
        return status, logits[0]

    def run_frames(self, frames, trace: bool = False) -> tuple[int, np.ndarray]:
        """CMD_RUN_FRAME with FRAMES = len(frames): the frames overlap in the pipeline, as on
        the board. -> ``(status, int32 logits [n, h, w, num_classes])``; with ``trace`` the
        stages of every frame are kept (:meth:`stage` takes a frame index)."""
        frames = [np.asarray(f) for f in frames]
        if not 1 <= len(frames) <= MAX_FRAMES:
            raise SenteiError(f"{len(frames)} frames: a start runs 1 to {MAX_FRAMES} frames")
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape != frames[0].shape:
                raise SenteiError(f"frames must be uint8 RGB of one shape [H, W, 3], got {frame.dtype} "
                                  f"{list(frame.shape)} (use sentei.host.data.preprocess.prepare_frame)")
        n = len(frames)
        buf = np.concatenate([frame_to_words(f, self.frame_words) for f in frames])
        logits = np.zeros(n * self.logit_words, dtype=np.int32)
        status = self.execute(registers.CMD_RUN_FRAME, buf, None, logits, frames[0].shape[0], frames[0].shape[1],
                              trace, frames=n)
        self._traced_frames = n if trace else 0
        return status, logits.reshape((n,) + self.logits_shape)

    def close(self) -> None:
        """Release the accelerator; later calls raise SenteiError.

        The library stays mapped until the process ends (never ``dlclose``d: a handle that
        outlived it would call into unmapped code).
        """
        with self._lock:
            self._lib = None

    def __enter__(self) -> "CsimAccelerator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def lib(self):
        if self._lib is None:
            raise SenteiError("this C-simulation accelerator was closed; create a new CsimAccelerator")
        return self._lib

    def iterations(self) -> list[int]:
        """MAC-loop iterations per layer executed by the last command."""
        out = np.zeros(self.num_layers, dtype=np.uint64)
        with self._lock:
            self.lib.sentei_csim_iterations(out)
        return [int(v) for v in out]

    def expected_iterations(self) -> list[int]:
        """``Ho * Wo * NF * K`` (sparse) or ``Ho * Wo * NF * L`` (dense) per layer: what one
        frame must execute."""
        return [f.iterations for f in self.facts.layers]

    def stage(self, s: int, frame: int = 0) -> np.ndarray:
        """Activations of stage ``s`` (0: input, l+1: layer l) of frame ``frame`` of the last
        traced run, ``[h, w, C]``."""
        c, h, w = self.facts.stages()[s]
        size = c * h * w
        with self._lock:
            n = int(self.lib.sentei_csim_stage_size(s))
            if n != size * self._traced_frames or not 0 <= frame < n // max(size, 1):
                raise SenteiError(f"stage {s} of frame {frame} was not recorded: call run_frame(frame, trace=True) "
                                  f"or run_frames(frames, trace=True) first")
            out = np.zeros(n, dtype=np.int32)
            self.lib.sentei_csim_stage(s, out)
        return out[frame * size:(frame + 1) * size].reshape(h, w, c)


# ---------------------------------------------------------------------------------------
# the testbench


@dataclass
class Mismatch:
    """One differing value: where (frame, layer, channel, pixel) and both numbers."""

    frame: int
    stage: int
    layer: str
    channel: int
    y: int
    x: int
    got: int
    expected: int

    def __str__(self) -> str:
        return (f"frame {self.frame} {self.layer}: channel {self.channel} pixel (y={self.y}, x={self.x}): "
                f"design {self.got}, reference {self.expected}")


@dataclass
class CsimReport:
    """Result of :func:`run_csim`."""

    model: str
    frames: int
    errors: int
    status_load: int
    status_run: list[int]  # of the one start (CMD_RUN_FRAME with FRAMES = frames) that ran every frame
    iterations: list[int]  # per layer, summed over frames
    expected_iterations: list[int]  # per layer and frame: Ho*Wo*NF*K (sparse) or Ho*Wo*NF*L (dense)
    dense_iterations: list[int]  # per layer and frame, what Cin*k*k weights would cost the same engine
    lanes: list[int]
    engines: list[str] = field(default_factory=list)  # sparse or dense, per layer
    mismatches: list[Mismatch] = field(default_factory=list)
    build_seconds: float = 0.0
    reference_seconds: float = 0.0
    run_seconds: float = 0.0
    output: str = ""

    @property
    def iterations_ok(self) -> bool:
        return self.iterations == [n * self.frames for n in self.expected_iterations]

    @property
    def bit_exact(self) -> bool:
        return (self.errors == 0 and self.status_load == registers.STATUS_OK
                and self.status_run == [registers.STATUS_OK])

    def to_json(self) -> dict:
        return {"model": self.model, "frames": self.frames, "bit_exact": self.bit_exact, "errors": self.errors,
                "status_load": self.status_load, "status_run": self.status_run, "lanes": self.lanes,
                "engines": self.engines,
                "iterations": self.iterations, "expected_iterations": self.expected_iterations,
                "dense_iterations": self.dense_iterations, "iterations_ok": self.iterations_ok,
                "mismatches": [m.__dict__ for m in self.mismatches], "build_seconds": round(self.build_seconds, 2),
                "reference_seconds": round(self.reference_seconds, 2), "run_seconds": round(self.run_seconds, 2)}


def write_vectors(model, frames: Sequence[np.ndarray], directory: str | os.PathLike, shared_windows=()) -> Path:
    """Golden vectors for the testbench: weight blob (its shared-window layers' weights in
    schedule order, ``shared_windows`` as :meth:`NetworkFacts.shared_windows`), frames and every
    stage of the reference."""
    from sentei.host.modelfile import reference
    from sentei.host.modelfile.schedule import scheduled_blob
    from sentei.host.modelfile.schema import weight_blob

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "weights.npy", scheduled_blob(model, weight_blob(model), shared_windows).astype("<u4"))
    for n, frame in enumerate(frames):
        np.save(out / f"frame_{n}.npy", np.ascontiguousarray(frame, dtype=np.uint8))
        _, acts = reference.run(model, frame, return_all=True)
        for s, act in enumerate(acts):
            np.save(out / f"stage_{n}_{s}.npy", np.ascontiguousarray(act.transpose(1, 2, 0), dtype="<i4"))
    return out


def frames_for(model, frames) -> list[np.ndarray]:
    """``frames`` as uint8 frames of the model: a count N means N seeded random frames."""
    from sentei.host.modelfile.synthetic import random_frame

    if isinstance(frames, (int, np.integer)):
        if frames < 1:
            raise SenteiError(f"--frames must be at least 1, got {frames}")
        return [random_frame(1000 + n, model.input.height, model.input.width) for n in range(int(frames))]
    out = []
    for n, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (model.input.height, model.input.width, 3):
            raise SenteiError(f"frame {n} is {frame.dtype} {list(frame.shape)}; the model takes uint8 "
                              f"[{model.input.height}, {model.input.width}, 3] (use prepare_frame)")
        out.append(frame)
    return out


def run_testbench(b: CsimBuild, directory: str | os.PathLike, frames: int, timeout_s: float = 3600) -> dict:
    """Run the testbench executable of ``b`` on the vectors in ``directory``; return its JSON report."""
    vec = Path(directory)
    report_path = vec / "report.json"
    if report_path.exists():
        report_path.unlink()
    try:
        proc = subprocess.run([str(b.testbench), str(vec), str(frames), str(report_path)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SenteiError(f"C-simulation ran longer than {timeout_s:.0f} s; try fewer --frames") from None
    if not report_path.is_file():
        raise SenteiError(f"C-simulation testbench failed: {(proc.stdout + proc.stderr).strip()[-300:]}")
    rep = json.loads(report_path.read_text())
    rep["output"] = proc.stdout
    return rep


def run_csim(model, frames=1, lanes=None, workdir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, board: str | None = None,
             clock_mhz: float | None = None, timeout_s: float = 3600) -> CsimReport:
    """C-simulate ``model`` on ``frames`` and compare with the reference engine bit for bit.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
    frames : int or sequence of uint8 [H, W, 3] arrays
        A count of full-range random frames, or the frames themselves (at the model's size).
    lanes : list of int, optional
        Lanes per layer.
    workdir : path, optional
        Where the golden vectors and the report go (kept); default a temporary directory.
    cache_dir : path, optional
        Build cache root.

    Returns
    -------
    CsimReport
    """
    frames = frames_for(model, frames)
    b = build(model, lanes, cache_dir, board, clock_mhz)
    facts = b.facts
    names = ["input"] + [f.name for f in facts.layers]
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sentei_csim_")
        workdir = tmp.name
    try:
        t0 = time.perf_counter()
        write_vectors(model, frames, workdir, facts.shared_windows())
        t1 = time.perf_counter()
        rep = run_testbench(b, workdir, len(frames), timeout_s)
        t2 = time.perf_counter()
    finally:
        if tmp is not None:
            tmp.cleanup()
    mismatches = [Mismatch(frame=m["frame"], stage=m["stage"], layer=names[m["stage"]], channel=m["channel"],
                           y=m["y"], x=m["x"], got=m["got"], expected=m["expected"]) for m in rep["mismatches"]]
    # what the same engine would run without zero skipping (the dense engine skips nothing)
    dense = [f.out_height * dict(f.geometry)["row_groups"] * f.folds * f.cin * f.kernel * f.kernel
             if f.engine == "sparse"
             else f.iterations for f in facts.layers]
    return CsimReport(model=model.name, frames=len(frames), errors=int(rep["errors"]),
                      status_load=int(rep["status_load"]), status_run=[int(s) for s in rep["status_run"]],
                      iterations=[int(n) for n in rep["iterations"]],
                      expected_iterations=[f.iterations for f in facts.layers], dense_iterations=dense,
                      lanes=[f.lanes for f in facts.layers], engines=[f.engine for f in facts.layers],
                      mismatches=mismatches,
                      build_seconds=b.compile_seconds, reference_seconds=t1 - t0, run_seconds=t2 - t1,
                      output=rep["output"])
