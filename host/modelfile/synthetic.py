"""Random but valid models and frames, for tests and benchmarks (no training, no data set).

These are *not* trained networks: nothing here should be shipped or reported as accuracy.
Weights are full-range seeded random integers (every bit of every field is exercised), the
requantization constants are chosen so that activations spread over their range instead
of saturating, and the filter-wise invariant holds by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sentei.host.data.camvid import CLASSES as CAMVID_CLASSES, COLORS as CAMVID_COLORS
from sentei.host.modelfile.schema import ConvLayer, InputQuant, Model, act_range


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one conv layer of a synthetic model."""

    out_channels: int
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    padding: int | None = None  # None: "same" padding d*(k-1)//2
    density: float = 1.0  # fraction of Cin*k*k kept per filter (K = round(density * fan_in))
    weight_bits: int = 8
    out_bits: int = 8
    act: str = "relu"


TINY = (LayerSpec(8, stride=2, density=0.5), LayerSpec(8, dilation=2, density=0.25),
        LayerSpec(16, stride=2, density=0.3, weight_bits=4), LayerSpec(16, kernel=1, density=0.5))


def shipped_specs(sparsity: float = 0.9) -> tuple[LayerSpec, ...]:
    """The conv body of the shipped CamVid network (training/configs/camvid-fcn7.yaml).

    3->32 s2 (kept dense), 32->64 s2, 64->64, 64->128 s2, 128->128 d2, 128->128 d4,
    128->128 d8, each later layer keeping ``1 - sparsity`` of its weights per filter.
    """
    d = 1.0 - sparsity
    return (LayerSpec(32, stride=2), LayerSpec(64, stride=2, density=d), LayerSpec(64, density=d),
            LayerSpec(128, stride=2, density=d), LayerSpec(128, dilation=2, density=d),
            LayerSpec(128, dilation=4, density=d), LayerSpec(128, dilation=8, density=d))


def shipped_model(sparsity: float = 0.9, height: int = 360, width: int = 480, seed: int = 0) -> "Model":
    """A random (untrained) model of the shipped architecture, for timing and resource figures."""
    model = random_model(seed=seed, height=height, width=width, specs=shipped_specs(sparsity),
                         name=f"synthetic-fcn7-fw{round(sparsity * 100)}-{height}x{width}")
    model.metadata["architecture"] = "the shipped FCN (training/configs/camvid-fcn7.yaml), random weights"
    return model


def random_layer(rng: np.random.Generator, name: str, cin: int, spec: LayerSpec, in_range: tuple[int, int],
                 balanced: bool = True, act: str | None = None) -> ConvLayer:
    """One random layer with K = round(density * Cin*k*k) weights per filter."""
    act = act or spec.act
    k = spec.kernel
    fan_in = cin * k * k
    kk = max(1, min(fan_in, int(round(spec.density * fan_in))))
    lo, hi = act_range("linear", spec.weight_bits)
    cout = spec.out_channels
    values = np.zeros((cout, kk), dtype=np.int8)
    indices = np.zeros((cout, kk), dtype=np.uint32)
    for o in range(cout):
        indices[o] = np.sort(rng.choice(fan_in, size=kk, replace=False))
        v = rng.integers(lo, hi + 1, size=kk)
        v[v == 0] = hi  # stored weights are nonzero, except the padding of unbalanced layers
        if not balanced:
            v[rng.integers(0, kk + 1):] = 0
        values[o] = v
    amax = max(abs(in_range[0]), abs(in_range[1]))
    bias = rng.integers(-amax * hi * 2, amax * hi * 2 + 1, size=cout).astype(np.int32)
    mult = shift = None
    if act != "logits":
        out_lo, out_hi = act_range(act, spec.out_bits)
        target = (out_hi - min(out_lo, 0)) / 4.0
        acc_std = np.sqrt(kk) * (hi / 1.7) * (amax / 2.5)
        shift = rng.integers(20, 28, size=cout).astype(np.uint8)
        scale = target / acc_std * rng.uniform(0.5, 2.0, size=cout)
        mult = np.maximum(1, np.round(scale * 2.0 ** shift.astype(np.float64))).astype(np.int64)
        mult = np.minimum(mult, 2**31 - 1).astype(np.int32)
    pad = spec.dilation * (k - 1) // 2 if spec.padding is None else spec.padding
    return ConvLayer(name=name, in_channels=cin, out_channels=cout, kernel=k, stride=spec.stride,
                     dilation=spec.dilation, padding=pad, weight_bits=spec.weight_bits, act=act,
                     out_bits=spec.out_bits, values=values, indices=indices, bias=bias, mult=mult,
                     shift=shift, sparsity=1.0 - kk / fan_in, scheme="filterwise" if kk < fan_in else "dense")


def random_model(seed: int = 0, height: int = 24, width: int = 32, specs=TINY, num_classes: int = 11,
                 classifier_density: float = 1.0, classifier_bits: int = 8, input_bits: int = 8,
                 balanced: bool = True, name: str | None = None) -> Model:
    """A random valid model: ``specs`` then a 1x1 logits classifier with ``num_classes`` outputs."""
    rng = np.random.default_rng(seed)
    inp = InputQuant.from_normalization(height, width, mean=(0.39, 0.40, 0.41), std=(0.30, 0.31, 0.30),
                                        scale=3.0 / 2 ** (input_bits - 1), bits=input_bits)
    layers, cin = [], 3
    in_range = act_range("linear", input_bits)
    for n, spec in enumerate(specs):
        layer = random_layer(rng, f"conv{n + 1}", cin, spec, in_range, balanced=balanced)
        layers.append(layer)
        cin, in_range = spec.out_channels, act_range(layer.act, layer.out_bits)
    head = LayerSpec(num_classes, kernel=1, density=classifier_density, weight_bits=classifier_bits)
    layers.append(random_layer(rng, "classifier", cin, head, in_range, balanced=balanced, act="logits"))
    stride = int(np.prod([s.stride for s in specs]))
    names = CAMVID_CLASSES if num_classes == len(CAMVID_CLASSES) else tuple(f"class{i}" for i in range(num_classes))
    colors = CAMVID_COLORS if num_classes == len(CAMVID_COLORS) else tuple(
        tuple(int(c) for c in rng.integers(0, 256, size=3)) for _ in range(num_classes))
    return Model(name=name or f"random-{seed}", input=inp, layers=layers, output_upsample=stride,
                 output_scale=1.0 / 4096, num_classes=num_classes, class_names=names, class_colors=colors,
                 metadata={"synthetic": True, "seed": seed, "note": "random weights, not a trained model"})


def random_frame(seed: int, height: int, width: int) -> np.ndarray:
    """A full-range random uint8 RGB frame ``[height, width, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
