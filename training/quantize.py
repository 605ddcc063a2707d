"""Quantization-aware training to the integer semantics of the model file.

:class:`QATNet` wraps a (pruned) :class:`~sentei.training.models.FCN`. Batch-norm is folded
into each conv with its running statistics frozen; weights are quantized symmetrically per
output filter (per tensor for the classifier, whose logits share one ``output.scale``),
biases to accumulator units, activations to unsigned ``act_bits`` with a learned scale per
layer (LSQ-style: gradients reach the scale through the straight-through rounding).

The forward pass computes in the integer domain of docs/model-format.md: the layer input
is the integer activation, the accumulator is ``conv(q, w_q) + b_q`` and the output is
``clamp(floor(acc * M + 1/2), 0, 2^B - 1)`` with ``M = s_in s_w / s_out``. Training uses
straight-through gradients (weights through ``torch.fake_quantize_per_channel_affine``;
activations through a floor-based straight-through rounding, because the file rounds half
up where torch's fake-quantize ops round half to even); ``exact=True`` (inference) replaces ``M`` by the exported
``mult / 2^shift`` and computes in float64/int64, so it reproduces the reference engine's
integers (exported by :mod:`sentei.training.export`) bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sentei.errors import SenteiError
from sentei.training.models import FCN, quantize_frames

BIAS_LIMIT = 2**24


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    """floor() forward, identity gradient."""
    return x + (torch.floor(x) - x).detach()


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    """Symmetric fake quantization with torch's op (straight-through), returned in integer units.

    ``torch.fake_quantize_per_channel_affine`` (per output filter) or ``..._per_tensor_affine``
    (a 0-d ``scale``) gives ``scale * clamp(round(w / scale), -qmax, qmax)`` with the
    straight-through gradient; divided by the scale again (and the last ulp rounded away) it
    is the integer weights the model file stores.
    """
    if scale.dim() == 0:
        fq = torch.fake_quantize_per_tensor_affine(w, scale.reshape(1).float(),
                                                   torch.zeros(1, dtype=torch.int32, device=w.device), -qmax, qmax)
        units = fq / scale
    else:
        zero = torch.zeros(scale.shape[0], dtype=torch.int32, device=w.device)
        fq = torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -qmax, qmax)
        units = fq / scale.view(-1, *([1] * (w.dim() - 1)))
    return units + (torch.round(units) - units).detach()  # exact integers forward, same gradient


def requant_params(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real multipliers ``M > 0`` -> ``(mult, shift)`` with ``mult / 2^shift ~ M``, ``mult`` in [2^30, 2^31)."""
    m = np.asarray(m, dtype=np.float64)
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise SenteiError("requantization multiplier must be positive and finite (a dead activation scale?)")
    exp = np.floor(np.log2(m)).astype(np.int64)
    shift = 30 - exp
    mult = np.round(m * np.exp2(shift.astype(np.float64))).astype(np.int64)
    over = mult >= 2**31
    mult[over] = (mult[over] + 1) // 2
    shift[over] -= 1
    if np.any(shift > 62):  # tiny multipliers: fewer significant bits
        mult = np.where(shift > 62, np.round(m * 2.0**62).astype(np.int64), mult)
        shift = np.minimum(shift, 62)
    if np.any(shift < 0):
        raise SenteiError(f"requantization multiplier {float(m.max()):.3g} is too large for the model file")
    return mult.astype(np.int32), shift.astype(np.uint8)


@dataclass
class IntLayer:
    """One layer's integer constants (dense weights, before packing)."""

    name: str
    weights: np.ndarray  # int64 [Cout, Cin, k, k]
    bias: np.ndarray  # int64 [Cout]
    mult: np.ndarray | None
    shift: np.ndarray | None
    act: str
    out_bits: int
    weight_bits: int


def per_layer_bits(weight_bits, names: list[str]) -> list[int]:
    """Weight bits of each layer ``names``: one width, or ``{layer: bits, "default": bits}``;
    a layer name the network does not have is refused (it would silently get the default)."""
    if not isinstance(weight_bits, dict):
        return [int(weight_bits)] * len(names)
    unknown = sorted(set(weight_bits) - set(names) - {"default"})
    if unknown:
        raise SenteiError(f"compress.weight_bits: no layer {unknown[0]!r} in the network; its layers are "
                          f"{', '.join(names)} (default: the others)")
    default = int(weight_bits.get("default", 8))
    return [int(weight_bits.get(n, default)) for n in names]


class QATNet(nn.Module):
    """Fake-quantized FCN with folded batch-norm (see the module docstring).

    Parameters
    ----------
    fcn : FCN
        The float network (masks may be registered on its convs; they stay in force).
    weight_bits : int or dict
        Weight width for every layer, or ``{"default": 8, "conv1": 8, ...}``.
    act_bits : int
        Width of every ReLU activation (unsigned, 8..16).
    """

    def __init__(self, fcn: FCN, weight_bits=8, act_bits: int = 8):
        super().__init__()
        self.fcn = fcn
        names = fcn.layer_names()
        self.weight_bits = per_layer_bits(weight_bits, names)
        for n, b in zip(names, self.weight_bits):
            if not 2 <= b <= 8:
                raise SenteiError(f"layer {n}: weight bits {b} outside 2..8 (the model file stores int8)")
        if not 2 <= act_bits <= 16:
            raise SenteiError(f"activation bits {act_bits} outside 2..16")
        self.act_bits = int(act_bits)
        self.act_scale = nn.Parameter(torch.ones(len(fcn.blocks)))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self._exact_cache = None

    # --- plumbing --------------------------------------------------------------------
    @property
    def quant(self):
        return self.fcn.quant

    @property
    def upsample(self) -> int:
        return self.fcn.upsample

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.fcn.modules():  # folded batch-norm: statistics stay frozen
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        self._exact_cache = None
        return self

    def folded(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv ``i`` with its batch-norm folded: ``(weight [Cout, Cin, k, k], bias [Cout])``."""
        if i < len(self.fcn.blocks):
            conv, bn = self.fcn.blocks[i][0], self.fcn.blocks[i][1]
            g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            return conv.weight * g.view(-1, 1, 1, 1), bn.bias - bn.running_mean * g
        c = self.fcn.classifier
        return c.weight, c.bias

    @torch.no_grad()
    def calibrate(self, frames_batches, quantile: float = 0.9999) -> None:
        """Set each activation scale from the float network's outputs on a few batches."""
        self.fcn.eval()
        highs = [0.0] * len(self.fcn.blocks)
        for frames in frames_batches:
            _, feats = self.fcn(frames, features=True)
            for i, f in enumerate(feats):
                flat = f.detach().float().reshape(-1)
                if flat.numel() > 2_000_000:
                    flat = flat[torch.randint(0, flat.numel(), (2_000_000,), device=flat.device)]
                highs[i] = max(highs[i], float(torch.quantile(flat, quantile)))
        qmax = 2 ** self.act_bits - 1
        self.act_scale.data.copy_(torch.tensor([max(h, 1e-3) / qmax for h in highs]))
        self.calibrated.fill_(True)
        self._exact_cache = None

    # --- forward ---------------------------------------------------------------------
    def forward(self, frames: torch.Tensor, exact: bool = False, return_acts: bool = False):
        """uint8-valued frames ``[N, 3, H, W]`` -> real-valued logits at ``1/upsample``.

        ``return_acts`` also returns the integer activations (input first, logits last).
        """
        if exact:
            return self._forward_exact(frames, return_acts)
        if not bool(self.calibrated):
            raise SenteiError("QAT network is not calibrated: call calibrate() on a few batches first")
        q = quantize_frames(frames, self.quant).to(torch.float32)
        s_in = torch.tensor(float(self.quant.scale), device=q.device)
        acts = [q]
        specs = self.fcn.specs
        with torch.autocast(device_type=q.device.type, enabled=False):
            for i, spec in enumerate(specs):
                w_f, b_f = self.folded(i)
                w_f, b_f = w_f.float(), b_f.float()
                qmax = 2 ** (self.weight_bits[i] - 1) - 1
                last = i == len(specs) - 1
                amax = w_f.abs().amax() if last else w_f.abs().amax(dim=(1, 2, 3))
                s_w = (amax / qmax).clamp_min(1e-12).detach()
                w_q = fake_quant_weight(w_f, s_w, qmax)
                unit = s_in * s_w
                b_q = torch.clamp(ste_round(b_f / unit), -BIAS_LIMIT, BIAS_LIMIT)
                acc = F.conv2d(q, w_q, None, spec["stride"], spec["padding"], spec["dilation"]) + b_q.view(1, -1, 1, 1)
                if last:
                    acts.append(acc)
                    logits = acc * unit
                    return (logits, acts) if return_acts else logits
                s_out = self.act_scale[i].abs().clamp_min(1e-8)
                m = (unit / s_out).view(1, -1, 1, 1)
                q = torch.clamp(ste_floor(acc * m + 0.5), 0, 2 ** self.act_bits - 1)
                acts.append(q)
                s_in = s_out
        raise AssertionError("unreachable")

    @torch.no_grad()
    def integer_layers(self) -> tuple[list[IntLayer], float]:
        """The integer constants of every layer and the output scale (what the exporter writes)."""
        layers, s_in = [], float(self.quant.scale)
        specs = self.fcn.specs
        out_scale = None
        for i, spec in enumerate(specs):
            w_f, b_f = self.folded(i)
            w_f = w_f.detach().double().cpu()
            b_f = b_f.detach().double().cpu()
            qmax = 2 ** (self.weight_bits[i] - 1) - 1
            last = i == len(specs) - 1
            amax = w_f.abs().amax() if last else w_f.abs().amax(dim=(1, 2, 3))
            s_w = torch.clamp(amax.float() / qmax, min=1e-12).double()  # the training path's float32 scale
            s_w = s_w.expand(w_f.shape[0]) if last else s_w
            w_q = torch.clamp(torch.round(w_f / s_w.view(-1, 1, 1, 1)), -qmax, qmax)
            unit = s_in * s_w
            b_q = torch.clamp(torch.round(b_f / unit), -BIAS_LIMIT, BIAS_LIMIT)
            if last:
                mult = shift = None
                s_out = None
                out_scale = float(unit[0])
                act = "logits"
            else:
                s_out = float(self.act_scale[i].detach().abs().clamp_min(1e-8))
                mult, shift = requant_params((unit / s_out).numpy())
                act = "relu"
            layers.append(IntLayer(name=spec["name"], weights=w_q.numpy().astype(np.int64),
                                   bias=b_q.numpy().astype(np.int64), mult=mult, shift=shift, act=act,
                                   out_bits=self.act_bits if act == "relu" else 32,
                                   weight_bits=self.weight_bits[i]))
            if s_out is not None:
                s_in = s_out
        return layers, out_scale

    @torch.no_grad()
    def _forward_exact(self, frames: torch.Tensor, return_acts: bool):
        if self._exact_cache is None or self._exact_cache[0] != frames.device:
            layers, out_scale = self.integer_layers()
            dev = frames.device
            cache = []
            for il in layers:
                w = torch.from_numpy(il.weights).to(dev, torch.float64)
                b = torch.from_numpy(il.bias).to(dev, torch.float64)
                mult = None if il.mult is None else torch.from_numpy(il.mult.astype(np.int64)).to(dev)
                shift = None if il.shift is None else torch.from_numpy(il.shift.astype(np.int64)).to(dev)
                cache.append((w, b, mult, shift))
            self._exact_cache = (frames.device, cache, out_scale)
        _, cache, out_scale = self._exact_cache
        q = quantize_frames(frames, self.quant).to(torch.float64)
        acts = [q.to(torch.int64)]
        hi = 2 ** self.act_bits - 1
        for spec, (w, b, mult, shift) in zip(self.fcn.specs, cache):
            acc = F.conv2d(q, w, None, spec["stride"], spec["padding"], spec["dilation"]) + b.view(1, -1, 1, 1)
            acc = torch.round(acc).to(torch.int64)
            if mult is None:
                acts.append(acc)
                logits = acc.to(torch.float32) * np.float32(out_scale)
                return (logits, acts) if return_acts else logits
            sh = shift.view(1, -1, 1, 1)
            rnd = torch.where(sh > 0, torch.bitwise_left_shift(torch.ones_like(sh), (sh - 1).clamp_min(0)),
                              torch.zeros_like(sh))
            r = torch.bitwise_right_shift(acc * mult.view(1, -1, 1, 1) + rnd, sh)
            qi = r.clamp(0, hi)
            acts.append(qi)
            q = qi.to(torch.float64)
        raise AssertionError("unreachable")
