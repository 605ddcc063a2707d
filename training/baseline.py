"""The network of a model file as a float PyTorch module: the GPU/CPU baseline of ``sentei bench``.

:func:`build_module` turns a :class:`sentei.host.modelfile.schema.Model` into a plain chain of
dense ``nn.Conv2d`` (the pruned weights with their zeros, so the baseline does the dense
work a GPU library does), with the same kernel, stride, dilation and padding, the same
ReLU, and the input normalization that the model file's input quantization implies.

Float equivalence, not bit-exactness: each layer's requantization factor
``mult / 2^shift`` is positive, so it is folded into the layer's weights and bias
(``relu(s*z) = s*relu(z)`` for ``s > 0``); every activation then lives in the integer
units of the next layer, and the upper saturation of ``B``-bit activations is kept as a
clamp. The classifier's weights carry ``output.scale``, so the module returns real-valued
logits (small enough for fp16). Bilinear upsampling and the argmax stay outside the
module (:func:`labels`), as in the host and in the ONNX file for TensorRT.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from sentei.errors import SenteiError
from sentei.host.modelfile.schema import InputQuant, Model, act_range
from sentei.training.models import class_argmax, upsample_logits


class InputNormalize(nn.Module):
    """uint8-range pixels ``[N, 3, H, W]`` (float) -> the input activation in integer units.

    ``a0 = (pix * mul + add) / 2^shift * unit``, the input quantization ``q`` (a model file's
    or a training network's :class:`~sentei.host.modelfile.schema.InputQuant`) without its rounding and
    clamp; ``unit`` 1 keeps integer units (the model file's network), ``q.scale`` gives the
    real values a float network takes (the teacher).
    """

    def __init__(self, q: InputQuant, unit: float = 1.0):
        super().__init__()
        scale = 2.0 ** -q.shift * float(unit)
        self.register_buffer("mul", torch.tensor(q.mul, dtype=torch.float32).view(1, -1, 1, 1) * scale)
        self.register_buffer("add", torch.tensor(q.add, dtype=torch.float32).view(1, -1, 1, 1) * scale)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * self.mul + self.add


class Saturate(nn.Module):
    """ReLU with the upper clamp of an unsigned ``B``-bit activation (or the signed range of ``linear``)."""

    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = float(lo), float(hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a 16-bit activation's 65535 is above fp16's largest value (65504): clamp at what the dtype holds
        info = torch.finfo(x.dtype)
        return torch.clamp(x, max(self.lo, info.min), min(self.hi, info.max))

    def extra_repr(self) -> str:
        return f"lo={self.lo:g}, hi={self.hi:g}"


def folded_conv(layer, scale: np.ndarray) -> nn.Conv2d:
    """Dense ``nn.Conv2d`` of one model-file layer with per-filter ``scale`` folded into weight and bias."""
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, bias=True)
    weight = layer.dense_weights().astype(np.float64) * scale[:, None, None, None]
    bias = layer.bias.astype(np.float64) * scale
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    return conv


def build_module(model: Model, saturate: bool = True) -> nn.Sequential:
    """The float PyTorch form of ``model``: pixels ``[N, 3, H, W]`` in 0..255 -> logits ``[N, C, h, w]``.

    Parameters
    ----------
    model : sentei.host.modelfile.schema.Model
        A validated model file.
    saturate : bool, optional
        Keep the upper clamp of each activation (``True``, closest to the integer
        network); ``False`` gives plain ReLUs.

    Returns
    -------
    torch.nn.Sequential
        ``InputNormalize``, then per layer a dense ``Conv2d`` and its activation; in
        eval mode, fp32, on the CPU.
    """
    from sentei.host.modelfile import schema as fmt

    problem = fmt.dense_weights_problem(fmt.dense_weight_count(model.layers))
    if problem is not None:  # what the float module would hold, counted before the first layer
        raise SenteiError(f"{model.name}: {problem}; a float module of it would not fit")
    parts: list[nn.Module] = [InputNormalize(model.input)]
    for layer in model.layers:
        if layer.act == "logits":
            scale = np.full(layer.out_channels, float(model.output_scale))
            parts.append(folded_conv(layer, scale))
            continue
        scale = layer.mult.astype(np.float64) / np.exp2(layer.shift.astype(np.float64))
        parts.append(folded_conv(layer, scale))
        lo, hi = act_range(layer.act, layer.out_bits)
        if layer.act == "relu" and not saturate:
            parts.append(nn.ReLU(inplace=True))
        elif saturate:
            parts.append(Saturate(lo, hi))
    return nn.Sequential(*parts).eval()


def teacher_module(fcn) -> nn.Sequential:
    """A float training network (the dense teacher, :class:`~sentei.training.models.FCN`) as a
    plain chain for timing and ONNX: pixels ``[N, 3, H, W]`` in 0..255 -> logits.

    Batch-norm folded into each convolution (what inference libraries do), the input
    quantization as in :class:`InputNormalize` (no rounding: a float baseline, not the
    teacher's exact numbers), the classifier last; eval mode, fp32, on the CPU.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fcn = fcn.eval()
    parts: list[nn.Module] = [InputNormalize(fcn.quant, unit=float(fcn.quant.scale))]
    for block in fcn.blocks:
        conv, bn = block[0], block[1]
        parts += [fuse_conv_bn_eval(conv, bn), nn.ReLU(inplace=True)]
    parts.append(copy.deepcopy(fcn.classifier))
    return nn.Sequential(*parts).cpu().float().eval()


def frame_to_tensor(frame: np.ndarray, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` -> float pixels ``[1, 3, H, W]`` on ``device``, laid out NHWC
    (``channels_last`` strides: a permuted view of the HWC frame, which ``.to`` keeps)."""
    frame = np.ascontiguousarray(frame)
    if not frame.flags.writeable:  # torch.from_numpy wants a writable array (PIL's are read-only)
        frame = frame.copy()
    t = torch.from_numpy(frame).to(device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).to(dtype)


def labels(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Logits ``[1, C, h, w]`` -> label map ``[height, width]`` (bilinear, half-pixel centres, argmax)."""
    return class_argmax(upsample_logits(logits.float(), height, width))[0].to(torch.uint8)


def export_onnx(module: nn.Module, path, input_size: tuple[int, int], opset: int = 13) -> None:
    """Write ``module`` as an ONNX file with input ``pixels [1, 3, H, W]`` and output ``logits``.

    For ``trtexec --onnx=PATH --fp16`` on a Jetson. Uses the TorchScript-based exporter
    (``dynamo=False``), which needs the ``onnx`` package but not ``onnxscript``; the file is
    written to a temporary name and renamed.

    Parameters
    ----------
    module : torch.nn.Module
        Typically :func:`build_module` of a model file.
    path : str or os.PathLike
        Output file.
    input_size : (int, int)
        ``(height, width)`` of the input.
    opset : int, optional
        ONNX opset. 13, the oldest that holds every operator of these networks (Conv, Mul,
        Add, Clip with tensor bounds, Relu), is read by TensorRT 8.0 and later (JetPack 4.6 on),
        where 17 needs TensorRT 8.5 (JetPack 5.1).
    """
    import importlib.util
    import io

    from sentei.atomic_write import atomic_write_bytes

    if importlib.util.find_spec("onnx") is None:
        raise SenteiError("ONNX export needs the onnx package, which torch's exporter requires "
                          "(pip install 'sentei[onnx]')")
    height, width = input_size
    dummy = torch.zeros(1, 3, int(height), int(width))
    module = module.eval().cpu().float()
    buf = io.BytesIO()
    import inspect

    # the TorchScript exporter: the default before torch 2.5 had the `dynamo` switch, chosen after
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(module, (dummy,), buf, opset_version=opset, input_names=["pixels"],
                      output_names=["logits"], **legacy)
    atomic_write_bytes(path, buf.getvalue())
