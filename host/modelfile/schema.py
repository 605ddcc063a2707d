"""The sentei model file: writer, reader, validator, and the hardware's weight blob.

This module is the only code that knows the bytes of a ``*.sentei`` file
(docs/model-format.md is its specification). Training writes through :func:`save`, the
host and the overlay read through :func:`load`; the driver copies :func:`weight_blob`
into one PYNQ buffer.

Nothing here imports torch, and nothing in a file is ever executed: the header is JSON,
the arrays are raw little-endian integers.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sentei.atomic_write import atomic_write_bytes
from sentei.errors import ModelFormatError, SenteiError
from sentei.host.data import camvid

MAGIC = b"SENTEI\x1a\n"
VERSION = 1
ALIGN = 64
MAX_HEADER = 16 * 1024 * 1024
BLOB_MAGIC = 0x544E4553  # b"SENT" read as a little-endian uint32
ACTS = ("relu", "linear", "logits")
SCHEMES = ("filterwise", "groupwise", "unstructured", "nm", "pattern", "smallworld", "dense")
INT32_MAX = 2**31 - 1
# what the accelerator runs (spec section 2.2); the training-side checker uses the same limits
KERNELS = (1, 3)
STRIDES = (1, 2)
MAX_DILATION = 16
MAX_PADDING = 16
MAX_CHANNELS = 4096
MAX_INPUT_SIDE = 8192  # input.height, input.width
INT32_MIN = -INT32_MAX - 1
MAX_SHIFT = 62  # requantization shift (spec section 3)
# what one frame may cost, whatever the header claims (spec section 1, "limits"): a 7 KB file
# could otherwise ask for gigabytes of feature maps or dense weights
MAX_FILE_BYTES = 1 << 30  # a model file: read only a regular file of at most this size
MAX_MAP_ELEMENTS = 1 << 25  # each feature map, padded input of a layer and its output (C*H*W)
MAX_FRAME_MACS = 1 << 36  # executed multiply-accumulates per frame, all layers (K*Cout*Ho*Wo)
MAX_DENSE_WEIGHTS = 1 << 26  # sum of Cout*Cin*k*k: what a dense export (ONNX, torch) builds
MIN_OUTPUT_SCALE, MAX_OUTPUT_SCALE = 2.0**-40, 2.0**40  # float32(logits)*scale stays finite and normal
# Names are data that reaches generated C++, Tcl, Markdown, file names and terminals: the
# model's and the layers' names keep to an identifier-like alphabet, class names to printable
# ASCII without markup or quoting characters (spec section 1, "names").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
CLASS_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.,+()/-]{0,63}")
NAME_RULE = "1-64 characters of A-Z a-z 0-9 _ . + -, starting with a letter or digit"
CLASS_NAME_RULE = "1-64 characters of A-Z a-z 0-9, space and _ . , + ( ) / -, starting with a letter or digit"

# dtype of each per-layer array, in the file and in memory
LAYER_ARRAYS = {
    "values": np.dtype("<i1"),
    "indices": np.dtype("<u4"),
    "bias": np.dtype("<i4"),
    "mult": np.dtype("<i4"),
    "shift": np.dtype("u1"),
}



@dataclass
class InputQuant:
    """uint8 RGB frame -> signed ``bits``-bit input activation (section 2.1 of the spec)."""

    height: int
    width: int
    mul: tuple[int, ...]
    add: tuple[int, ...]
    shift: int
    bits: int = 8
    channels: int = 3
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def from_normalization(cls, height: int, width: int, mean: Iterable[float], std: Iterable[float],
                           scale: float, bits: int = 8, shift: int = 16) -> "InputQuant":
        """Fold ``((pix/255 - mean)/std)/scale`` into the integer ``mul``, ``add``, ``shift``."""
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        mul = tuple(int(round(2**shift / (255.0 * s * scale))) for s in std)
        add = tuple(int(round(-m * 2**shift / (s * scale))) for m, s in zip(mean, std))
        return cls(height=height, width=width, mul=mul, add=add, shift=shift, bits=bits,
                   channels=len(mul), scale=float(scale), mean=mean, std=std)

    def to_json(self) -> dict:
        d = {"height": self.height, "width": self.width, "channels": self.channels, "bits": self.bits,
             "mul": list(self.mul), "add": list(self.add), "shift": self.shift}
        for key in ("scale", "mean", "std"):
            value = getattr(self, key)
            if value is not None:
                d[key] = list(value) if isinstance(value, tuple) else value
        return d


@dataclass
class ConvLayer:
    """One k x k convolution with its sparse packed weights (section 2.2 of the spec)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    dilation: int
    padding: int
    weight_bits: int
    act: str
    out_bits: int
    values: np.ndarray  # int8 [Cout, K]
    indices: np.ndarray  # uint32 [Cout, K], strictly increasing per filter
    bias: np.ndarray  # int32 [Cout]
    mult: np.ndarray | None = None  # int32 [Cout]; None for logits
    shift: np.ndarray | None = None  # uint8 [Cout]; None for logits
    sparsity: float | None = None
    scheme: str = "dense"

    @property
    def k_nonzero(self) -> int:
        """K: the stored weights per output filter, equal for every filter."""
        return int(self.values.shape[1])

    @property
    def fan_in(self) -> int:
        """Cin * k * k: the dense filter size."""
        return self.in_channels * self.kernel * self.kernel

    @property
    def stored_out_bits(self) -> int:
        """Bits of each output value as computed and stored: ``out_bits``, 32 for the logits (int32)."""
        return 32 if self.act == "logits" else self.out_bits

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return conv_out_size(height, width, self.kernel, self.stride, self.dilation, self.padding)

    def dense_weights(self) -> np.ndarray:
        """The weights unpacked to a dense int32 array ``[Cout, Cin, k, k]``."""
        dense = np.zeros((self.out_channels, self.fan_in), dtype=np.int32)
        rows = np.repeat(np.arange(self.out_channels), self.k_nonzero)
        dense[rows, self.indices.reshape(-1).astype(np.int64)] = self.values.reshape(-1)
        return dense.reshape(self.out_channels, self.in_channels, self.kernel, self.kernel)

    def nonzeros_per_filter(self) -> np.ndarray:
        """Nonzero weights actually stored per filter (K minus explicit zero padding)."""
        return np.count_nonzero(self.values, axis=1)

    def header(self) -> dict:
        return {"name": self.name, "type": "conv", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel": self.kernel, "stride": self.stride,
                "dilation": self.dilation, "padding": self.padding, "weight_bits": self.weight_bits,
                "k_nonzero": self.k_nonzero, "act": self.act, "out_bits": self.out_bits,
                "sparsity": self.sparsity, "scheme": self.scheme}


@dataclass
class Model:
    """A whole network as the accelerator runs it."""

    name: str
    input: InputQuant
    layers: list[ConvLayer]
    output_upsample: int
    output_scale: float = 1.0
    num_classes: int | None = None
    class_names: tuple[str, ...] = camvid.CLASSES
    class_colors: tuple[tuple[int, int, int], ...] = camvid.COLORS
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.num_classes is None and self.layers:
            self.num_classes = self.layers[-1].out_channels

    def shapes(self, height: int | None = None, width: int | None = None) -> list[tuple[int, int, int]]:
        """Feature-map shapes ``(C, H, W)``: the input first, then each layer's output."""
        h = self.input.height if height is None else height
        w = self.input.width if width is None else width
        shapes = [(self.input.channels, h, w)]
        for layer in self.layers:
            h, w = layer.out_size(h, w)
            shapes.append((layer.out_channels, h, w))
        return shapes

    def input_range(self, index: int) -> tuple[int, int]:
        """Inclusive integer range of the input activation of layer ``index``."""
        if index == 0:
            return act_range("linear", self.input.bits)  # the frame's quantized input is signed
        prev = self.layers[index - 1]
        return act_range(prev.act, prev.out_bits)

    def header(self) -> dict:
        return {"format": "sentei-model", "version": VERSION, "name": self.name,
                "num_classes": self.num_classes, "class_names": list(self.class_names),
                "class_colors": [list(c) for c in self.class_colors],
                "input": self.input.to_json(),
                "output": {"upsample": self.output_upsample, "scale": float(self.output_scale)},
                "layers": [layer.header() for layer in self.layers],
                "metadata": self.metadata}


def conv_out_size(height: int, width: int, kernel: int, stride: int, dilation: int,
                  padding: int) -> tuple[int, int]:
    """Output size of a conv layer (spec section 3): ``floor((H + 2p - d(k-1) - 1) / s) + 1``."""
    span = dilation * (kernel - 1) + 1
    return (height + 2 * padding - span) // stride + 1, (width + 2 * padding - span) // stride + 1


def act_range(act: str, bits: int) -> tuple[int, int]:
    """Inclusive integer range of an activation produced with ``act`` at ``bits``."""
    if act == "relu":
        return 0, 2**bits - 1
    if act == "linear":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return -(2**31), 2**31 - 1


# ---------------------------------------------------------------------------------------
# packing dense weights into the filter-wise form


def pack_dense(weights: np.ndarray, k_nonzero: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pack dense integer weights ``[Cout, Cin, k, k]`` into ``(values, indices)``.

    ``K`` defaults to the largest nonzero count of any filter: filters with fewer nonzeros
    are padded with explicit zero weights at the lowest unused positions, which is exactly
    the work an accelerator with parallel filter lanes spends on an unbalanced layer.
    A filter-wise pruned layer has no padding.
    """
    w = np.asarray(weights)
    cout = w.shape[0]
    flat = w.reshape(cout, -1)
    nnz = np.count_nonzero(flat, axis=1)
    k = int(nnz.max()) if k_nonzero is None else int(k_nonzero)
    k = max(k, 1)
    if k < nnz.max():
        raise ModelFormatError(f"k_nonzero={k} is smaller than a filter's {int(nnz.max())} nonzero weights")
    if k > flat.shape[1]:
        raise ModelFormatError(f"k_nonzero={k} exceeds the filter size {flat.shape[1]}")
    values = np.zeros((cout, k), dtype=np.int8)
    indices = np.zeros((cout, k), dtype=np.uint32)
    for o in range(cout):
        nz = np.flatnonzero(flat[o])
        pad = np.setdiff1d(np.arange(flat.shape[1]), nz, assume_unique=True)[: k - nz.size]
        idx = np.sort(np.concatenate([nz, pad]))
        indices[o] = idx
        values[o] = flat[o, idx]
    return values, indices


# ---------------------------------------------------------------------------------------
# writing


def _layer_arrays(model: Model) -> list[tuple[str, np.ndarray]]:
    arrays = []
    for i, layer in enumerate(model.layers):
        for key in LAYER_ARRAYS:
            value = getattr(layer, key)
            if value is None:
                continue
            arrays.append((f"layers.{i}.{key}", np.ascontiguousarray(value, dtype=LAYER_ARRAYS[key])))
    return arrays


def to_bytes(model: Model) -> bytes:
    """Serialize ``model`` (validated first) to the bytes of a model file."""
    validate(model)
    arrays = _layer_arrays(model)
    table, offset = {}, 0
    for name, arr in arrays:
        raw = arr.tobytes()
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                       "nbytes": len(raw), "crc32": zlib.crc32(raw)}
        offset += _aligned(len(raw))
    header = model.header()
    header["arrays"] = table
    head = json.dumps(header, sort_keys=False, separators=(",", ":")).encode("utf-8")
    prefix = MAGIC + struct.pack("<II", VERSION, len(head)) + head
    out = bytearray(prefix + b"\0" * (_aligned(len(prefix)) - len(prefix)))
    for _, arr in arrays:
        raw = arr.tobytes()
        out += raw + b"\0" * (_aligned(len(raw)) - len(raw))
    return bytes(out)


def dense_weight_count(layers: Iterable[ConvLayer]) -> int:
    """The weights a dense form of ``layers`` holds (ONNX, torch): the sum of Cout*Cin*k*k."""
    return sum(int(layer.out_channels) * int(layer.fan_in) for layer in layers)


def dense_weights_problem(dense: int) -> str | None:
    """None when ``dense`` weights (:func:`dense_weight_count`, or a config's) are within
    :data:`MAX_DENSE_WEIGHTS`, else what is wrong; the one bound of the model file, the training
    configs and the float baselines."""
    if dense > MAX_DENSE_WEIGHTS:
        return f"{dense} dense weights (sum of Cout*Cin*k*k) is more than the limit {MAX_DENSE_WEIGHTS}"
    return None


def save(model: Model, path: str | os.PathLike) -> Path:
    """Validate and write ``model`` atomically (temporary file, then rename)."""
    data = to_bytes(model)
    return atomic_write_bytes(path, data)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ---------------------------------------------------------------------------------------
# reading


def load(path: str | os.PathLike) -> Model:
    """Read and validate a model file; raise :class:`ModelFormatError` naming the bad field."""
    path = Path(path)
    if path.is_dir():
        raise ModelFormatError(f"{path} is a directory, not a model file (pass a .sentei file)")
    data = read_regular_file(path, MAX_FILE_BYTES, "model file", "a .sentei file")
    try:
        return from_bytes(data)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None


def read_regular_file(path, limit: int, what: str, example: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; anything else one
    :class:`SenteiError` line (``/dev/zero`` would be read forever, a FIFO wait for a writer)."""
    import stat as _stat

    st = os.stat(path)  # FileNotFoundError, PermissionError: the CLI names the path
    if _stat.S_ISDIR(st.st_mode):
        raise SenteiError(f"{path} is a directory, not a {what} (pass {example})")
    if not _stat.S_ISREG(st.st_mode):
        raise SenteiError(f"{path} is not a regular file (a device, FIFO or socket), not a {what}; "
                          f"pass {example}")
    if st.st_size > limit:
        raise SenteiError(f"{path}: {st.st_size} bytes is larger than a {what} may be ({limit}); pass {example}")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise SenteiError(f"{path}: larger than a {what} may be ({limit} bytes); pass {example}")
    return data


def parse_json_text(text, what: str) -> Any:
    """``json.loads`` with one :class:`SenteiError` line for what is not JSON, nests too deep
    (RecursionError) or holds an integer too long to convert (ValueError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise SenteiError(f"{what}: nested too deeply to be a valid file") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        detail = "an integer too long" if "int" in str(exc) and "digits" in str(exc) else exc.__class__.__name__
        raise SenteiError(f"{what}: not valid UTF-8 JSON ({detail})") from None


def from_bytes(data: bytes) -> Model:
    """Parse and validate the bytes of a model file."""
    if len(data) < 16:
        raise ModelFormatError(f"file length: {len(data)} bytes is too short for a sentei model (truncated?)")
    if data[:8] != MAGIC:
        raise ModelFormatError("magic: not a sentei model file (expected a .sentei file written by `sentei export`)")
    version, hlen = struct.unpack_from("<II", data, 8)
    if version != VERSION:
        raise ModelFormatError(f"version: format version {version} is not supported by this sentei "
                               f"(reads version {VERSION}); re-export the model or upgrade sentei")
    if not 1 <= hlen <= MAX_HEADER or 16 + hlen > len(data):
        raise ModelFormatError(f"header length: {hlen} bytes does not fit a {len(data)}-byte file (truncated?)")
    try:
        header = parse_json_text(data[16:16 + hlen].decode("utf-8"), "header")
    except (UnicodeDecodeError, SenteiError) as exc:
        raise ModelFormatError(str(exc) if isinstance(exc, SenteiError) else
                               f"header: not valid UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ModelFormatError("header: must be a JSON object")
    base = _aligned(16 + hlen)
    arrays = _read_arrays(header, data, base)
    model = _model_from_header(header, arrays)
    validate(model)
    return model


def _read_arrays(header: dict, data: bytes, base: int) -> dict[str, np.ndarray]:
    table = _get(header, "arrays", dict, "arrays")
    arrays, end = {}, base
    for name, entry in table.items():
        where = f"arrays.{name}"
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{where}: must be an object")
        try:
            dtype = np.dtype(_get(entry, "dtype", str, where))
        except (TypeError, ValueError, SyntaxError):  # numpy parses some strings ('0:', '01') and fails otherwise
            raise ModelFormatError(f"{where}.dtype: unknown dtype {entry.get('dtype')!r}") from None
        if dtype.kind not in "iu" or dtype.itemsize > 4:
            raise ModelFormatError(f"{where}.dtype: {dtype.str} is not an integer type of at most 32 bits")
        shape = _get(entry, "shape", list, where)
        if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 2**24 for s in shape):
            raise ModelFormatError(f"{where}.shape: {shape!r} is not a list of sizes")
        offset = _get_int(entry, "offset", where, 0, 2**40)
        nbytes = _get_int(entry, "nbytes", where, 0, 2**40)
        count = math.prod(shape)  # Python integers: np.prod of [2**24]*4 wraps int64
        if count * dtype.itemsize > len(data) or nbytes != count * dtype.itemsize:
            raise ModelFormatError(f"{where}.nbytes: {nbytes} does not match shape {shape} of {dtype.str}")
        if offset % ALIGN:
            raise ModelFormatError(f"{where}.offset: {offset} is not {ALIGN}-byte aligned")
        start = base + offset
        if start + nbytes > len(data):
            raise ModelFormatError(f"{where}: array runs past the end of the file (truncated?)")
        raw = data[start:start + nbytes]
        crc = _get_int(entry, "crc32", where, 0, 2**32 - 1)
        if zlib.crc32(raw) != crc:
            raise ModelFormatError(f"{where}.crc32: checksum mismatch (the file is corrupted; re-export it)")
        arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        end = max(end, start + _aligned(nbytes))
    if len(data) != end:
        raise ModelFormatError(f"file length: {len(data)} bytes, expected {end} (truncated or trailing data)")
    return arrays


def _get(obj: dict, key: str, typ, where: str):
    if key not in obj:
        raise ModelFormatError(f"{where}.{key}: missing")
    value = obj[key]
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise ModelFormatError(f"{where}.{key}: expected {typ.__name__}, got {type(value).__name__}")
    return value


def _get_int(obj: dict, key: str, where: str, lo: int, hi: int) -> int:
    value = _get(obj, key, int, where)
    if not lo <= value <= hi:
        raise ModelFormatError(f"{where}.{key}: {value} is outside [{lo}, {hi}]")
    return value


def _int_list(obj: dict, key: str, where: str, n: int, lo: int, hi: int) -> tuple[int, ...]:
    values = _get(obj, key, list, where)
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
                                   for v in values):
        raise ModelFormatError(f"{where}.{key}: expected {n} integers in [{lo}, {hi}], got {values!r}")
    return tuple(values)


def _model_from_header(h: dict, arrays: dict[str, np.ndarray]) -> Model:
    if h.get("format") != "sentei-model":
        raise ModelFormatError("format: expected \"sentei-model\"")
    _get_int(h, "version", "header", VERSION, VERSION)
    name = _get(h, "name", str, "header")
    num_classes = _get_int(h, "num_classes", "header", 1, 4096)
    names = _get(h, "class_names", list, "header")
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise ModelFormatError(f"class_names: expected {num_classes} strings")
    colors = _get(h, "class_colors", list, "header")
    if len(colors) != num_classes or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in colors):
        raise ModelFormatError(f"class_colors: expected {num_classes} [r, g, b] triples of 0..255")

    i = _get(h, "input", dict, "header")
    channels = _get_int(i, "channels", "input", 1, 3)
    if channels != 3:
        raise ModelFormatError(f"input.channels: {channels}, version 1 takes RGB frames (3)")
    inp = InputQuant(
        height=_get_int(i, "height", "input", 1, MAX_INPUT_SIDE), width=_get_int(i, "width", "input", 1, MAX_INPUT_SIDE),
        channels=channels, bits=_get_int(i, "bits", "input", 2, 16),
        mul=_int_list(i, "mul", "input", channels, INT32_MIN, INT32_MAX),
        add=_int_list(i, "add", "input", channels, INT32_MIN, INT32_MAX),
        shift=_get_int(i, "shift", "input", 0, 31),
        scale=float(_get(i, "scale", float, "input")) if "scale" in i else None,
        mean=tuple(i["mean"]) if isinstance(i.get("mean"), list) else None,
        std=tuple(i["std"]) if isinstance(i.get("std"), list) else None)

    o = _get(h, "output", dict, "header")
    upsample = _get_int(o, "upsample", "output", 1, 64)
    scale = float(_get(o, "scale", float, "output"))  # positive: validate() checks it

    layer_list = _get(h, "layers", list, "header")
    if not 1 <= len(layer_list) <= 256:
        raise ModelFormatError(f"layers: {len(layer_list)} layers, expected 1..256")
    layers = []
    for n, lh in enumerate(layer_list):
        where = f"layers[{n}]"
        if not isinstance(lh, dict):
            raise ModelFormatError(f"{where}: must be an object")
        if lh.get("type") != "conv":
            raise ModelFormatError(f"{where}.type: {lh.get('type')!r} is not supported (version 1 has \"conv\")")
        act = _get(lh, "act", str, where)
        if act not in ACTS:
            raise ModelFormatError(f"{where}.act: {act!r} is not one of {', '.join(ACTS)}")
        kwargs = {}
        for key in LAYER_ARRAYS:
            if key in ("mult", "shift") and act == "logits":
                if f"layers.{n}.{key}" in arrays:
                    raise ModelFormatError(f"{where}.{key}: a logits layer has no requantization")
                kwargs[key] = None
                continue
            arr = arrays.get(f"layers.{n}.{key}")
            if arr is None:
                raise ModelFormatError(f"arrays.layers.{n}.{key}: missing")
            if arr.dtype != LAYER_ARRAYS[key]:
                raise ModelFormatError(f"arrays.layers.{n}.{key}.dtype: {arr.dtype.str}, "
                                       f"expected {LAYER_ARRAYS[key].str}")
            kwargs[key] = arr
        sparsity = lh.get("sparsity")
        layer = ConvLayer(
            name=_get(lh, "name", str, where),
            in_channels=_get_int(lh, "in_channels", where, 1, 4096),
            out_channels=_get_int(lh, "out_channels", where, 1, 4096),
            kernel=_get_int(lh, "kernel", where, 1, 3), stride=_get_int(lh, "stride", where, 1, 2),
            dilation=_get_int(lh, "dilation", where, 1, 16), padding=_get_int(lh, "padding", where, 0, 16),
            weight_bits=_get_int(lh, "weight_bits", where, 2, 8), act=act,
            out_bits=_get(lh, "out_bits", int, where),  # its range (not for logits): validate(), right after
            sparsity=float(sparsity) if isinstance(sparsity, (int, float)) else None,
            scheme=str(lh.get("scheme", "dense")), **kwargs)
        k_declared = _get_int(lh, "k_nonzero", where, 1, 2**24)
        if layer.values.ndim != 2 or layer.values.shape[1] != k_declared:
            raise ModelFormatError(f"{where}.k_nonzero: {k_declared} but values has shape "
                                   f"{list(layer.values.shape)} (K must be equal for every filter)")
        layers.append(layer)
    return Model(name=name, input=inp, layers=layers, output_upsample=upsample, output_scale=scale,
                 num_classes=num_classes, class_names=tuple(names),
                 class_colors=tuple(tuple(c) for c in colors), metadata=h.get("metadata") or {})


# ---------------------------------------------------------------------------------------
# validation (shared by the writer and the reader)


def check_name(name, where: str, pattern: re.Pattern = NAME_PATTERN, rule: str = NAME_RULE) -> None:
    """Refuse a name outside its alphabet; the message shows it escaped (``ascii()``), never raw."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        shown = ascii(name)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ModelFormatError(f"{where}: {shown} is not a valid name ({rule})")



def validate(model: Model) -> None:
    """Check every invariant of the spec; raise :class:`ModelFormatError` naming the field."""
    if not model.layers:
        raise ModelFormatError("layers: the network has no layers")
    inp = model.input
    if inp.channels != 3 or len(inp.mul) != 3 or len(inp.add) != 3:
        raise ModelFormatError("input: version 1 takes 3-channel RGB frames (mul/add need 3 entries)")
    if not 0 <= inp.shift <= 31:
        raise ModelFormatError(f"input.shift: {inp.shift} is outside [0, 31]")
    if not 2 <= inp.bits <= 16:
        raise ModelFormatError(f"input.bits: {inp.bits} is outside [2, 16]")
    # what the reader enforces, so that a model that saves also loads (and its blob words do not wrap)
    for key, values in (("mul", inp.mul), ("add", inp.add)):
        if not all(INT32_MIN <= int(v) <= INT32_MAX for v in values):
            raise ModelFormatError(f"input.{key}: {list(values)} must be 32-bit signed integers")
    if not (1 <= inp.height <= MAX_INPUT_SIDE and 1 <= inp.width <= MAX_INPUT_SIDE):
        raise ModelFormatError(f"input: {inp.height}x{inp.width} is outside 1..{MAX_INPUT_SIDE} in either dimension")
    check_name(model.name, "name")
    names = set()
    channels, h, w = inp.channels, inp.height, inp.width
    macs = 0
    for n, layer in enumerate(model.layers):
        check_name(layer.name, f"layers[{n}].name")
        where = f"layers[{n}] ({layer.name})"
        if layer.name in names:
            raise ModelFormatError(f"{where}.name: duplicate layer name")
        names.add(layer.name)
        if layer.kernel not in KERNELS:
            raise ModelFormatError(f"{where}.kernel: {layer.kernel}, the accelerator runs k = 1 or 3")
        if layer.stride not in STRIDES:
            raise ModelFormatError(f"{where}.stride: {layer.stride}, the accelerator runs stride 1 or 2")
        if not 1 <= layer.dilation <= MAX_DILATION or (layer.kernel == 1 and layer.dilation != 1):
            raise ModelFormatError(f"{where}.dilation: {layer.dilation} (1..16, and 1 for a 1x1 kernel)")
        if not 0 <= layer.padding <= MAX_PADDING:
            raise ModelFormatError(f"{where}.padding: {layer.padding} is outside [0, 16]")
        if not 1 <= layer.out_channels <= MAX_CHANNELS:
            raise ModelFormatError(f"{where}.out_channels: {layer.out_channels} is outside [1, {MAX_CHANNELS}]")
        if layer.in_channels != channels:
            raise ModelFormatError(f"{where}.in_channels: {layer.in_channels}, but its input has "
                                   f"{channels} channels (shapes do not chain)")
        if not 2 <= layer.weight_bits <= 8:
            raise ModelFormatError(f"{where}.weight_bits: {layer.weight_bits} is outside [2, 8]")
        if layer.act not in ACTS:
            raise ModelFormatError(f"{where}.act: {layer.act!r} is not one of {', '.join(ACTS)}")
        if layer.act != "logits" and not 2 <= layer.out_bits <= 16:
            raise ModelFormatError(f"{where}.out_bits: {layer.out_bits} is outside [2, 16]")
        last = n == len(model.layers) - 1
        if (layer.act == "logits") != last:
            raise ModelFormatError(f"{where}.act: exactly the last layer must be \"logits\"")
        if last and layer.kernel != 1:
            raise ModelFormatError(f"{where}.kernel: the final classifier must be 1x1")
        cout, fan_in = layer.out_channels, layer.fan_in
        if fan_in >= 2**24:
            raise ModelFormatError(f"{where}: Cin*k*k = {fan_in} does not fit the blob's 24-bit index")
        vals, idx = layer.values, layer.indices
        if vals.ndim != 2 or vals.shape[0] != cout or vals.shape[1] < 1:
            raise ModelFormatError(f"{where}.values: shape {list(vals.shape)}, expected [{cout}, K] "
                                   f"with the same K for every filter")
        k = vals.shape[1]
        if idx.shape != vals.shape:
            raise ModelFormatError(f"{where}.indices: shape {list(idx.shape)} differs from values "
                                   f"{list(vals.shape)} (K must be equal for every filter)")
        if k > fan_in:
            raise ModelFormatError(f"{where}.k_nonzero: K = {k} exceeds Cin*k*k = {fan_in}")
        lo, hi = act_range("linear", layer.weight_bits)  # signed W-bit
        v64 = vals.astype(np.int64)
        if v64.min() < lo or v64.max() > hi:
            raise ModelFormatError(f"{where}.values: weights in [{int(v64.min())}, {int(v64.max())}] "
                                   f"exceed {layer.weight_bits}-bit range [{lo}, {hi}]")
        i64 = idx.astype(np.int64)
        if i64.min() < 0 or i64.max() >= fan_in:
            raise ModelFormatError(f"{where}.indices: position {int(i64.max())} out of range "
                                   f"[0, {fan_in}) for Cin*k*k = {fan_in}")
        if k > 1 and np.any(np.diff(i64, axis=1) <= 0):
            bad = int(np.argwhere(np.diff(i64, axis=1) <= 0)[0][0])
            raise ModelFormatError(f"{where}.indices: filter {bad} has repeated or unsorted positions "
                                   f"(must be strictly increasing)")
        if layer.bias.shape != (cout,):
            raise ModelFormatError(f"{where}.bias: shape {list(layer.bias.shape)}, expected [{cout}]")
        if layer.act == "logits":
            if layer.mult is not None or layer.shift is not None:
                raise ModelFormatError(f"{where}.mult: a logits layer has no requantization")
        else:
            if layer.mult is None or layer.mult.shape != (cout,):
                raise ModelFormatError(f"{where}.mult: expected shape [{cout}]")
            if layer.shift is None or layer.shift.shape != (cout,):
                raise ModelFormatError(f"{where}.shift: expected shape [{cout}]")
            m = layer.mult.astype(np.int64)
            if m.min() < 0 or m.max() > INT32_MAX:
                raise ModelFormatError(f"{where}.mult: multipliers must lie in [0, 2^31)")
            s = layer.shift.astype(np.int64)
            if s.min() < 0 or s.max() > MAX_SHIFT:
                raise ModelFormatError(f"{where}.shift: shifts must lie in [0, {MAX_SHIFT}]")
        alo, ahi = model.input_range(n)
        amax = max(abs(alo), abs(ahi))
        worst = np.abs(layer.bias.astype(np.int64)) + np.abs(v64).sum(axis=1) * amax
        if worst.max() > INT32_MAX:
            o = int(worst.argmax())
            raise ModelFormatError(f"{where}: filter {o} can overflow the 32-bit accumulator "
                                   f"(|bias| + sum|w| * {amax} = {int(worst.max())}); lower the bit widths")
        padded = layer.in_channels * (h + 2 * layer.padding) * (w + 2 * layer.padding)
        h, w = layer.out_size(h, w)
        if h < 1 or w < 1:
            raise ModelFormatError(f"{where}: output size {h}x{w} at input "
                                   f"{inp.height}x{inp.width} is empty (shapes do not chain)")
        if max(padded, cout * h * w) > MAX_MAP_ELEMENTS:
            raise ModelFormatError(f"{where}: a feature map of {max(padded, cout * h * w)} values is larger than "
                                   f"the limit {MAX_MAP_ELEMENTS} (C*H*W); use a smaller input or fewer channels")
        macs += k * cout * h * w
        channels = cout
    if macs > MAX_FRAME_MACS:
        raise ModelFormatError(f"layers: {macs} multiply-accumulates per frame is more than the limit "
                               f"{MAX_FRAME_MACS}; use a smaller input, fewer channels or a lower K")
    problem = dense_weights_problem(dense_weight_count(model.layers))
    if problem is not None:
        raise ModelFormatError(f"layers: {problem}; use fewer channels")
    if model.num_classes != channels:
        raise ModelFormatError(f"num_classes: {model.num_classes}, but the classifier has {channels} outputs")
    if len(model.class_names) != channels or len(model.class_colors) != channels:
        raise ModelFormatError(f"class_names/class_colors: expected {channels} entries")
    for c, class_name in enumerate(model.class_names):
        check_name(class_name, f"class_names[{c}]", CLASS_NAME_PATTERN, CLASS_NAME_RULE)
    if not 1 <= model.output_upsample <= 64:
        raise ModelFormatError(f"output.upsample: {model.output_upsample} is outside [1, 64]")
    if not (MIN_OUTPUT_SCALE <= model.output_scale <= MAX_OUTPUT_SCALE):  # NaN fails too
        raise ModelFormatError(f"output.scale: {model.output_scale} must be a positive finite number in "
                               f"[2^-40, 2^40] (float32(logits) * scale must stay finite); re-export the model")
    try:
        json.dumps(model.metadata)
    except (TypeError, ValueError):
        raise ModelFormatError("metadata: must be plain JSON (numbers, strings, lists, objects)") from None


# ---------------------------------------------------------------------------------------
# the hardware's view


BLOB_INPUT_WORDS = 7  # input mul[3], add[3], shift


def _blob_bounds(model: Model) -> list[int]:
    """Word offset of each layer's section in :func:`weight_blob`, then the blob's length."""
    bounds = [2 + BLOB_INPUT_WORDS + len(model.layers)]
    for layer in model.layers:  # bias, mult, shift per filter, then K entries per filter
        bounds.append(bounds[-1] + 3 * layer.out_channels + layer.out_channels * layer.k_nonzero)
    return bounds


def blob_offsets(model: Model) -> list[int]:
    """Word offset of each layer's section in :func:`weight_blob`."""
    return _blob_bounds(model)[:-1]


def blob_words(model: Model) -> int:
    """Length in 32-bit words of :func:`weight_blob` (fixed by the shapes and K per layer)."""
    return _blob_bounds(model)[-1]


def weight_blob(model: Model) -> np.ndarray:
    """The weights as the accelerator loads them: one uint32 array (spec section 4)."""
    *offsets, words = _blob_bounds(model)
    blob = np.zeros(words, dtype=np.uint32)
    blob[0] = BLOB_MAGIC
    blob[1] = len(model.layers)
    q = model.input
    blob[2:5] = np.asarray(q.mul, dtype=np.int32).view(np.uint32)
    blob[5:8] = np.asarray(q.add, dtype=np.int32).view(np.uint32)
    blob[8] = q.shift
    blob[9:9 + len(offsets)] = offsets
    for off, layer in zip(offsets, model.layers):
        c = layer.out_channels
        mult = layer.mult if layer.mult is not None else np.ones(c, np.int32)
        shift = layer.shift if layer.shift is not None else np.zeros(c, np.uint8)
        blob[off:off + c] = layer.bias.astype(np.int32).view(np.uint32)
        blob[off + c:off + 2 * c] = mult.astype(np.int32).view(np.uint32)
        blob[off + 2 * c:off + 3 * c] = shift.astype(np.uint32)
        entries = (layer.indices.astype(np.uint32) << np.uint32(8)) | \
            (layer.values.astype(np.int8).view(np.uint8).astype(np.uint32))
        blob[off + 3 * c:off + 3 * c + entries.size] = entries.reshape(-1)
    return blob


def describe(model: Model) -> dict[str, Any]:
    """Per-layer facts for ``sentei info``: shapes, K, sparsity, memory, MACs."""
    rows, shapes = [], model.shapes()
    for n, layer in enumerate(model.layers):
        cout, h, w = shapes[n + 1]
        k = layer.k_nonzero
        nnz = layer.nonzeros_per_filter()
        index_bits = max(1, int(np.ceil(np.log2(layer.fan_in)))) if layer.fan_in > 1 else 1
        dense_macs = cout * layer.fan_in * h * w
        stored_macs = cout * k * h * w
        rows.append({
            "name": layer.name, "kernel": layer.kernel, "stride": layer.stride, "dilation": layer.dilation,
            "padding": layer.padding, "in": list(shapes[n]), "out": [cout, h, w], "act": layer.act,
            "weight_bits": layer.weight_bits, "out_bits": layer.stored_out_bits,
            "fan_in": layer.fan_in, "k_nonzero": k, "scheme": layer.scheme,
            "sparsity": 1.0 - float(nnz.sum()) / (cout * layer.fan_in),
            "nnz_min": int(nnz.min()), "nnz_max": int(nnz.max()),
            "padding_zeros": int(cout * k - nnz.sum()),
            "index_bits": index_bits,
            "weight_bytes_packed": (cout * k * (layer.weight_bits + index_bits) + 7) // 8,
            "weight_bytes_dense": (cout * layer.fan_in * layer.weight_bits + 7) // 8,
            "macs_dense": dense_macs, "macs_executed": stored_macs,
            "macs_skipped": dense_macs - stored_macs,
        })
    totals = {key: sum(r[key] for r in rows) for key in
              ("weight_bytes_packed", "weight_bytes_dense", "macs_dense", "macs_executed", "macs_skipped")}
    params_dense = sum(r["fan_in"] * r["out"][0] for r in rows)
    nonzero = sum(int(layer.nonzeros_per_filter().sum()) for layer in model.layers)
    totals["weights_dense"] = params_dense
    totals["weights_nonzero"] = nonzero
    totals["sparsity"] = 1.0 - nonzero / params_dense
    totals["blob_bytes"] = 4 * blob_words(model)
    return {"name": model.name, "input": [model.input.channels, model.input.height, model.input.width],
            "num_classes": model.num_classes, "upsample": model.output_upsample,
            "layers": rows, "totals": totals, "metadata": model.metadata}
