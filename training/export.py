"""QAT network -> model file (docs/model-format.md), through ``sentei.host.modelfile.schema`` only.

The integer constants come from :meth:`QATNet.integer_layers` (the same numbers its exact
forward pass uses): weights packed per filter by ``format.pack_dense`` (filters with fewer
nonzeros than the layer's largest count are padded with explicit zeros, the price an
unbalanced scheme pays on the accelerator), int32 biases in accumulator units,
requantization ``mult``/``shift`` (round half up), ReLU outputs unsigned ``act_bits``.
"""
from __future__ import annotations

import numpy as np

from sentei.host.data import camvid
from sentei.host.modelfile import schema as fmt
from sentei.training.quantize import QATNet


def to_model(qat: QATNet, name: str, schemes: dict[str, str] | None = None, metadata: dict | None = None,
             class_names=camvid.CLASSES, class_colors=camvid.COLORS) -> fmt.Model:
    """Build the :class:`sentei.host.modelfile.schema.Model` of a QAT network.

    Parameters
    ----------
    qat : QATNet (calibrated).
    name : model name written in the header.
    schemes : pruning scheme per layer name (informational ``scheme`` field); others "dense".
    metadata : free-form JSON (training config, metrics, provenance).
    """
    schemes = schemes or {}
    int_layers, out_scale = qat.integer_layers()
    layers, cin = [], 3
    for spec, il in zip(qat.fcn.specs, int_layers):
        values, indices = fmt.pack_dense(il.weights)
        w = il.weights
        sparsity = 1.0 - float(np.count_nonzero(w)) / w.size
        scheme = schemes.get(il.name, "dense")
        layers.append(fmt.ConvLayer(
            name=il.name, in_channels=cin, out_channels=w.shape[0], kernel=spec["kernel"], stride=spec["stride"],
            dilation=spec["dilation"], padding=spec["padding"], weight_bits=il.weight_bits, act=il.act,
            out_bits=qat.act_bits,  # ignored by the logits layer (int32 out)
            values=values, indices=indices, bias=il.bias.astype(np.int32),
            mult=None if il.mult is None else il.mult.astype(np.int32),
            shift=None if il.shift is None else il.shift.astype(np.uint8),
            sparsity=sparsity, scheme=scheme if sparsity > 0 else "dense"))
        cin = w.shape[0]
    num_classes = int_layers[-1].weights.shape[0]
    model = fmt.Model(name=name, input=qat.quant, layers=layers, output_upsample=qat.upsample,
                      output_scale=float(out_scale), num_classes=num_classes,
                      class_names=tuple(class_names)[:num_classes], class_colors=tuple(class_colors)[:num_classes],
                      metadata=metadata or {})
    fmt.validate(model)
    return model


def export(qat: QATNet, path, name: str, schemes=None, metadata=None):
    """Write the model file atomically; returns the :class:`~sentei.host.modelfile.schema.Model`."""
    model = to_model(qat, name, schemes, metadata)
    fmt.save(model, path)
    return model
