"""A tie-heavy model (issue 26): requantization multiplier 1 and shifts 1-2 on linear 16-bit
layers, so that about half of all requantizations land exactly on a half, negative ones
included. The exporter's multipliers almost never tie, so only a model like this one tells
round-half-up from round-half-even or round-toward-zero."""
from __future__ import annotations

import numpy as np

from sentei.host.modelfile import schema as F
from sentei.host.modelfile.synthetic import LayerSpec, random_frame, random_model

SPECS = (LayerSpec(4, stride=2, density=0.5, weight_bits=2, out_bits=16, act="linear"),
         LayerSpec(4, density=0.5, weight_bits=2, out_bits=16, act="linear"))


def tie_model(seed: int = 0, height: int = 8, width: int = 12) -> F.Model:
    model = random_model(seed=seed, height=height, width=width, specs=SPECS, classifier_density=0.5,
                         classifier_bits=2)
    for n, layer in enumerate(model.layers[:-1]):
        layer.mult = np.ones(layer.out_channels, dtype=np.int32)
        layer.shift = np.full(layer.out_channels, 1 + n % 2, dtype=np.uint8)
    F.validate(model)
    return model


def tie_fraction(model: F.Model, frame) -> float:
    """The share of requantizations of ``frame`` that are exact ties."""
    from sentei.host.modelfile import reference

    x = reference.quantize_input(model, frame)
    ties = total = 0
    for layer in model.layers:
        acc = reference.accumulate(layer, x)
        if layer.act != "logits":
            sh = layer.shift.astype(np.int64)[:, None, None]
            prod = acc * layer.mult.astype(np.int64)[:, None, None]
            ties += int(np.count_nonzero((sh > 0) & ((prod & ((1 << sh) - 1)) == (1 << np.maximum(sh - 1, 0)))))
            total += acc.size
        x = reference.requantize(layer, acc)
    return ties / total


def tie_frames(model: F.Model, n: int = 2):
    return [random_frame(seed, model.input.height, model.input.width) for seed in range(n)]
