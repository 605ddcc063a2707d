"""Config-driven plain FCNs that the accelerator streams, and the checker that refuses the rest.

A network is a chain of ``conv (3x3 or 1x1, stride 1/2, dilation) -> batch-norm -> ReLU``
blocks and a 1x1 classifier with bias whose logits come out at ``1/upsample`` of the input;
bilinear upsampling to the frame happens outside the network, exactly as the host does it
(docs/model-format.md section 5). No skip connections, pooling or deconvolution: nothing the
inter-layer pipeline cannot run.

The network input is the *integer* input activation of the model file (section 2.1) times
its scale, computed from the uint8 frame by :func:`quantize_frames` with the same integer
formula as the reference engine, so training sees exactly what the accelerator sees.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sentei.errors import SenteiError
from sentei.host.modelfile import schema as fmt
from sentei.host.modelfile.schema import InputQuant
from sentei.host.options import Number

DEFAULT_INPUT = {"height": 360, "width": 480, "mean": [0.390, 0.405, 0.414], "std": [0.297, 0.305, 0.301],
                 "scale": 3.0 / 128, "bits": 8, "shift": 16}


def input_quant(model_cfg: dict) -> InputQuant:
    """The model file's input quantization for a model config (``model_cfg["input"]``)."""
    cfg = dict(DEFAULT_INPUT, **model_cfg.get("input", {}))
    return InputQuant.from_normalization(int(cfg["height"]), int(cfg["width"]), cfg["mean"], cfg["std"],
                                         float(cfg["scale"]), bits=int(cfg["bits"]), shift=int(cfg["shift"]))


def quantize_frames(frames: torch.Tensor, q: InputQuant) -> torch.Tensor:
    """uint8-valued frames ``[N, 3, H, W]`` -> integer input activations (int64), spec section 2.1.

    ``(pix * mul + add + R) >> shift`` clamped to the signed ``bits`` range: bit-exact with
    :func:`sentei.host.modelfile.reference.quantize_input`.
    """
    pix = frames.to(torch.int64)
    mul = torch.tensor(q.mul, dtype=torch.int64, device=pix.device).view(1, -1, 1, 1)
    add = torch.tensor(q.add, dtype=torch.int64, device=pix.device).view(1, -1, 1, 1)
    rnd = (1 << (q.shift - 1)) if q.shift > 0 else 0
    y = torch.bitwise_right_shift(pix * mul + add + rnd, q.shift)
    return y.clamp(-(2 ** (q.bits - 1)), 2 ** (q.bits - 1) - 1)


def _integer(value, what: str, minimum: int) -> int:
    """An integer field of a model config, at least ``minimum``; a one-line error naming it otherwise."""
    problem = Number(minimum, integer=True).problem(value)
    if problem is not None:
        raise SenteiError(f"model config: {what} is {value!r}; it must be {problem}")
    return int(value)


def output_stride(model_cfg: dict) -> int:
    """How many input pixels one output pixel spans each way: the product of the layers' strides."""
    return math.prod(spec["stride"] for spec in normalize_layers(model_cfg))


def normalize_layers(model_cfg: dict) -> list[dict]:
    """Layer specs with defaults filled in: name, out, kernel, stride, dilation, padding."""
    if not model_cfg.get("layers"):
        raise SenteiError("model config: 'layers' is empty; list the conv layers (out, kernel, stride, dilation)")
    if not isinstance(model_cfg["layers"], list):
        raise SenteiError("model config: 'layers' must be a list of layers ({out: N, kernel: K, ...})")
    layers = []
    for n, spec in enumerate(model_cfg["layers"]):
        if not isinstance(spec, dict):
            raise SenteiError(f"model config: layer {n} is {spec!r}; write it as {{out: N, kernel: K, stride: S}}")
        spec = dict(spec)
        if "out" not in spec:
            raise SenteiError(f"model config: layer {n} has no 'out' (number of filters)")
        name = str(spec.get("name", f"conv{n + 1}"))
        field = {key: _integer(spec.get(key, default), f"layer {name} {key}", 1)
                 for key, default in (("out", None), ("kernel", 3), ("stride", 1), ("dilation", 1))}
        k, d = field["kernel"], field["dilation"]
        layers.append(dict(name=name, **field,
                           padding=_integer(spec.get("padding", d * (k - 1) // 2), f"layer {name} padding", 0)))
    cls = model_cfg.get("classifier") or {}
    if not isinstance(cls, dict):
        raise SenteiError(f"model config: classifier is {cls!r}; write it as {{name: classifier}}")
    layers.append({"name": str(cls.get("name", "classifier")),
                   "out": _integer(model_cfg.get("num_classes", 11), "num_classes", 2),
                   "kernel": 1, "stride": 1, "dilation": 1, "padding": 0, "classifier": True})
    return layers


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_model_config(model_cfg, where: str = "model config") -> list[dict]:
    """Refuse a model config whose network the model file could not hold, before anything is built.

    The structure (a mapping, ``input`` and ``layers`` of the right types) and the model
    format's limits (sentei.host.modelfile.schema): input sides 1..MAX_INPUT_SIDE, 1..MAX_CHANNELS
    filters and classes, kernels, strides, dilations and paddings the accelerator runs, each
    feature map within MAX_MAP_ELEMENTS and non-empty, the dense weights within
    MAX_DENSE_WEIGHTS and the MACs per frame within MAX_FRAME_MACS -- all in Python integers,
    so a checkpoint or config claiming a billion filters costs nothing. Returns the layer specs
    (:func:`normalize_layers`); a one-line :class:`SenteiError` naming the field otherwise.
    """
    if not isinstance(model_cfg, dict):
        raise SenteiError(f"{where} is a {type(model_cfg).__name__}; it must be a mapping (num_classes, input, "
                          f"layers)")
    inp = model_cfg.get("input", {})
    if inp is None:
        inp = {}
    if not isinstance(inp, dict):
        raise SenteiError(f"{where}: input is a {type(inp).__name__}; it must be a mapping (height, width, ...)")
    cfg = dict(DEFAULT_INPUT, **inp)
    h = _integer(cfg["height"], "input.height", 1)
    w = _integer(cfg["width"], "input.width", 1)
    if h > fmt.MAX_INPUT_SIDE or w > fmt.MAX_INPUT_SIDE:
        raise SenteiError(f"{where}: input {h}x{w} is outside 1..{fmt.MAX_INPUT_SIDE} in either dimension")
    for key in ("mean", "std"):
        v = cfg[key]
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_finite(x) for x in v)
                and (key == "mean" or all(x > 0 for x in v))):
            rule = "three numbers" if key == "mean" else "three positive numbers"
            raise SenteiError(f"{where}: input.{key} is {v!r:.80}; it must be {rule} (R, G, B)")
    if not (_finite(cfg["scale"]) and cfg["scale"] > 0):
        raise SenteiError(f"{where}: input.scale is {cfg['scale']!r:.80}; it must be a positive number")
    bits = _integer(cfg["bits"], "input.bits", 2)
    shift = _integer(cfg["shift"], "input.shift", 0)
    if bits > 16 or shift > 31:
        raise SenteiError(f"{where}: input.bits {bits} (2..16) or input.shift {shift} (0..31) out of range")
    q = input_quant(model_cfg)
    if not all(-(2**31) <= v < 2**31 for v in (*q.mul, *q.add)):
        raise SenteiError(f"{where}: input mean/std/scale give multipliers beyond 32 bits; check input.std "
                          f"and input.scale")
    specs = normalize_layers(model_cfg)
    cin, dense, macs = 3, 0, 0
    for spec in specs:
        name, k, stride, d, pad, out = (spec[key] for key in ("name", "kernel", "stride", "dilation", "padding",
                                                              "out"))
        what = "num_classes" if spec.get("classifier") else f"layer {name} out"
        if out > fmt.MAX_CHANNELS:
            raise SenteiError(f"{where}: {what} {out} is outside [1, {fmt.MAX_CHANNELS}]")
        if k not in fmt.KERNELS:
            raise SenteiError(f"{where}: layer {name} kernel {k}; the accelerator runs 1x1 or 3x3")
        if stride not in fmt.STRIDES:
            raise SenteiError(f"{where}: layer {name} stride {stride}; the accelerator runs stride 1 or 2")
        if d > fmt.MAX_DILATION or (k == 1 and d != 1):
            raise SenteiError(f"{where}: layer {name} dilation {d}; expected 1..{fmt.MAX_DILATION} (1 for 1x1)")
        if pad > fmt.MAX_PADDING:
            raise SenteiError(f"{where}: layer {name} padding {pad}; expected 0..{fmt.MAX_PADDING}")
        padded = cin * (h + 2 * pad) * (w + 2 * pad)
        h, w = fmt.conv_out_size(h, w, k, stride, d, pad)
        if h < 1 or w < 1:
            raise SenteiError(f"{where}: layer {name} output {h}x{w} is empty at the input size")
        if max(padded, out * h * w) > fmt.MAX_MAP_ELEMENTS:
            raise SenteiError(f"{where}: layer {name}: a feature map of {max(padded, out * h * w)} values is larger "
                              f"than the limit {fmt.MAX_MAP_ELEMENTS} (C*H*W); use a smaller input or fewer channels")
        dense += out * cin * k * k
        macs += out * cin * k * k * h * w
        cin = out
    problem = fmt.dense_weights_problem(dense)
    if problem is not None:
        raise SenteiError(f"{where}: {problem}; use fewer channels")
    if macs > fmt.MAX_FRAME_MACS:
        raise SenteiError(f"{where}: {macs} multiply-accumulates per frame is more than the limit "
                          f"{fmt.MAX_FRAME_MACS}; use a smaller input or fewer channels")
    names = model_cfg.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise SenteiError(f"{where}: class_names must be a list of names")
    return specs


class ConvBNReLU(nn.Sequential):
    """``conv (no bias) -> BatchNorm2d -> ReLU``: one streamed layer before folding."""

    def __init__(self, cin: int, spec: dict):
        super().__init__(
            nn.Conv2d(cin, spec["out"], spec["kernel"], stride=spec["stride"], padding=spec["padding"],
                      dilation=spec["dilation"], bias=False),
            nn.BatchNorm2d(spec["out"]),
            nn.ReLU(inplace=True))


class FCN(nn.Module):
    """A plain feed-forward FCN built from a model config.

    Parameters
    ----------
    model_cfg : dict
        ``{"num_classes": 11, "input": {...}, "layers": [{"out", "kernel", "stride",
        "dilation", "padding", "name"}, ...], "classifier": {"name": ...}}``.

    ``forward(frames)`` takes uint8-valued frames, computes the scaled integer input
    (:meth:`prepare`) and returns the logits at ``1/upsample`` resolution;
    ``forward(frames, features=True)`` also returns each block's output.
    """

    def __init__(self, model_cfg: dict):
        super().__init__()
        self.cfg = copy.deepcopy(model_cfg)
        self.specs = normalize_layers(model_cfg)
        self.quant = input_quant(model_cfg)
        self.num_classes = self.specs[-1]["out"]
        blocks, cin = [], 3
        for spec in self.specs[:-1]:
            blocks.append(ConvBNReLU(cin, spec))
            cin = spec["out"]
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, self.num_classes, 1, bias=True)
        self.upsample = math.prod(s["stride"] for s in self.specs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def layer_names(self) -> list[str]:
        return [s["name"] for s in self.specs]

    def convs(self) -> list[tuple[str, nn.Conv2d]]:
        """``(name, conv)`` of every layer in order, the classifier last."""
        return [(s["name"], b[0]) for s, b in zip(self.specs, self.blocks)] + \
            [(self.specs[-1]["name"], self.classifier)]

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8-valued frames ``[N, 3, H, W]`` -> float network input (integer input x scale)."""
        return quantize_frames(frames, self.quant).to(torch.float32) * float(self.quant.scale)

    def forward(self, frames: torch.Tensor, features: bool = False):
        """uint8-valued frames ``[N, 3, H, W]`` -> logits ``[N, classes, H/8, W/8]`` (and block outputs)."""
        x = self.prepare(frames).contiguous(memory_format=torch.channels_last)  # NHWC convs, CPU and CUDA
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        logits = self.classifier(x)
        return (logits, feats) if features else logits


def upsample_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling outside the network (half-pixel centres, as the host does it)."""
    return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


def class_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Labels ``[N, H, W]`` of class scores ``[N, C, H, W]``: the first class of the largest score.

    ``max(dim=1).indices`` is ``argmax(dim=1)`` (both documented to return the first maximal
    index) at a small fraction of its time on the CPU: 1.2 against 29.6 ms for 11 classes at
    360x480 (torch 2.13, 2 threads), where ``argmax`` over a non-innermost dimension is slow.
    """
    return scores.max(dim=1).indices


ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.Sequential, nn.ModuleList)


def check_accelerator(model: nn.Module, height: int | None = None, width: int | None = None) -> None:
    """Refuse a network the accelerator cannot run, naming the first offending layer.

    Checks every module is a conv / batch-norm / ReLU of a plain chain, each conv has
    ``k`` in {1, 3}, stride 1 or 2, dilation 1..16 (1 for 1x1), padding 0..16, square
    kernels, no groups, at most 4096 channels, a 1x1 classifier last, and every feature map
    non-empty at the input size.
    """
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for name, m in model.named_modules():
        if name and not isinstance(m, ALLOWED) and not _is_container(m):
            raise SenteiError(f"layer {name}: {type(m).__name__} cannot run on the accelerator "
                              f"(only conv 1x1/3x3, batch-norm and ReLU in a plain chain)")
    if not convs:
        raise SenteiError("model: no convolution layers")
    layer_names = model.layer_names() if hasattr(model, "layer_names") else [n for n, _ in convs]
    q = getattr(model, "quant", None)
    h = height or (q.height if q else 360)
    w = width or (q.width if q else 480)
    cin = 3
    for (_, m), name in zip(convs, layer_names):
        k = m.kernel_size
        if k[0] != k[1] or k[0] not in fmt.KERNELS:
            raise SenteiError(f"layer {name}: kernel {k[0]}x{k[1]}, the accelerator runs square 1x1 or 3x3")
        if m.stride[0] != m.stride[1] or m.stride[0] not in fmt.STRIDES:
            raise SenteiError(f"layer {name}: stride {tuple(m.stride)}, the accelerator runs stride 1 or 2")
        d = m.dilation[0]
        if m.dilation[0] != m.dilation[1] or not 1 <= d <= fmt.MAX_DILATION or (k[0] == 1 and d != 1):
            raise SenteiError(f"layer {name}: dilation {tuple(m.dilation)}, expected 1..16 (1 for 1x1)")
        p = m.padding
        if isinstance(p, str) or p[0] != p[1] or not 0 <= p[0] <= fmt.MAX_PADDING:
            raise SenteiError(f"layer {name}: padding {p}, expected equal padding 0..16")
        if m.groups != 1:
            raise SenteiError(f"layer {name}: grouped convolution (groups={m.groups}) is not supported")
        if m.in_channels != cin:
            raise SenteiError(f"layer {name}: {m.in_channels} input channels after a layer with {cin} "
                              f"outputs (only a plain chain streams)")
        if not 1 <= m.out_channels <= fmt.MAX_CHANNELS:
            raise SenteiError(f"layer {name}: {m.out_channels} filters, the accelerator takes 1..4096")
        h, w = fmt.conv_out_size(h, w, k[0], m.stride[0], d, p[0])
        if h < 1 or w < 1:
            raise SenteiError(f"layer {name}: output {h}x{w} is empty at the model's input size")
        cin = m.out_channels
    if convs[-1][1].kernel_size[0] != 1:
        raise SenteiError(f"layer {layer_names[-1]}: the classifier must be 1x1")


def _is_container(m: nn.Module) -> bool:
    """Module types that only hold others (the FCN itself, parametrization holders)."""
    return isinstance(m, FCN) or type(m).__name__ in ("ParametrizationList", "ModuleDict") or \
        m.__class__.__module__.startswith("sentei.training")
