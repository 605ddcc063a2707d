"""Rules that a broken copy used to pass (issue 26, "the tests' blind spots"): each test here
pins one arithmetic or timing rule with an oracle of its own, written out from the spec, so that
the engine it checks cannot agree with itself. benchmarks/mutation_check.py breaks each rule in a
scratch copy of the tree and runs the test that must catch it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from sentei.errors import HardwareTimeoutError, ModelFormatError
from sentei.host.modelfile import schema as F
from sentei.host.modelfile import reference
from sentei.host.modelfile.synthetic import random_frame

from .conftest import H, W, tiny_model


# --- input quantization: an oracle in plain Python integers (spec section 2.1) -------------


def _input_quant_oracle(q) -> np.ndarray:
    """``[3, 256]``: ``clamp(floor((pix * mul + add + 2^(shift-1)) / 2^shift), lo, hi)``, signed bits."""
    lo, hi = -(2 ** (q.bits - 1)), 2 ** (q.bits - 1) - 1
    half = 2 ** (q.shift - 1) if q.shift else 0
    return np.array([[min(max((pix * q.mul[c] + q.add[c] + half) // 2 ** q.shift, lo), hi)
                      for pix in range(256)] for c in range(3)], dtype=np.int64)


def _tie_heavy_input(model):
    """Input constants that reach both clamps and land on exact halves (ties) often."""
    q = model.input
    q.mul, q.add, q.shift, q.bits = (3, 5, 1), (-300, -641, 17), 1, 8  # shift 1: every odd sum is a tie
    return model


def test_reference_input_quantization_matches_the_oracle():
    model = _tie_heavy_input(tiny_model())
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    got = reference.quantize_input(model, ramp)[:, 0, :]
    np.testing.assert_array_equal(got, _input_quant_oracle(model.input))
    assert got.min() == -128 and got.max() == 127  # both bounds reached


def test_emulator_input_quantization_matches_the_oracle():
    from sentei.host.emulator.engine import Emulator

    model = _tie_heavy_input(tiny_model())
    emu = Emulator(model)
    np.testing.assert_array_equal(emu._lut.astype(np.int64), _input_quant_oracle(model.input))
    frame = random_frame(0, H, W)  # and through a whole run: the first layer sees the oracle's input
    np.testing.assert_array_equal(emu.run(frame), reference.run(model, frame))


def test_qat_input_quantization_matches_the_oracle():
    torch = pytest.importorskip("torch")
    from sentei.training.models import quantize_frames

    model = _tie_heavy_input(tiny_model())
    ramp = torch.arange(256).view(1, 1, 1, 256).repeat(1, 3, 1, 1)
    got = quantize_frames(ramp, model.input)[0, :, 0, :].numpy()
    np.testing.assert_array_equal(got, _input_quant_oracle(model.input))


# --- the QAT exact path rounds requantization ties half up, as the reference does -----------


def _tie_heavy_qat(torch):
    """A QAT network whose exported requantization multipliers are exactly 1/2 and 1/4 (``mult``
    2^30, shifts 31 and 32: the same as multiplier 1, shifts 1 and 2), ternary weights (2 bits)
    and 16-bit activations: every odd accumulator of the first layer, and every one = 2 mod 4 of
    the second, is an exact tie. (The exporter's multipliers of a trained network almost never tie.)"""
    from sentei.training.models import FCN
    from sentei.training.quantize import QATNet

    cfg = {"num_classes": 3, "input": {"height": H, "width": W},
           "layers": [{"name": "conv1", "out": 4, "stride": 2}, {"name": "conv2", "out": 4}]}
    fcn = FCN(cfg).eval()
    g = torch.Generator().manual_seed(0)
    s_in = float(fcn.quant.scale)  # 3/128: exact in float32
    units = []
    for i, block in enumerate(fcn.blocks):
        conv, bn = block[0], block[1]
        w = torch.randint(-1, 2, conv.weight.shape, generator=g).float()
        w.view(w.shape[0], -1)[:, 0] = 1.0  # each filter's largest |w| is 1: s_w = 2^-(i+1) exactly
        conv.weight.data.copy_(w * 2.0 ** -(i + 1))
        unit = s_in * 2.0 ** -(i + 1)  # accumulator unit s_in * s_w
        bn.eps = 0.0  # folded weights are the conv's, biases bias / unit integers
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.data.fill_(1.0)
        bn.bias.data.copy_(torch.randint(-3, 4, (w.shape[0],), generator=g).float() * unit)
        units.append(unit)
        s_in = unit * 2 ** (i + 1)  # s_out: M = unit / s_out = 1/2, then 1/4
    qat = QATNet(fcn, weight_bits=2, act_bits=16).eval()
    qat.act_scale.data.copy_(torch.tensor([u * 2 ** (i + 1) for i, u in enumerate(units)]))
    qat.calibrated.fill_(True)
    return qat


def test_qat_exact_path_rounds_ties_like_the_reference():
    torch = pytest.importorskip("torch")
    from sentei.training import compare, export

    qat = _tie_heavy_qat(torch)
    model = export.to_model(qat, "qat-ties", class_names=("a", "b", "c"), class_colors=((0, 0, 0),) * 3)
    assert [(int(l.mult[0]), int(l.shift[0])) for l in model.layers[:2]] == [(2**30, 31), (2**30, 32)]
    ties = 0
    for seed in range(3):
        frame = random_frame(seed, H, W)
        x = reference.quantize_input(model, frame)
        for layer in model.layers[:2]:  # positive exact ties (negative ones are clamped to 0 by the ReLU)
            acc = reference.accumulate(layer, x)
            prod = acc * layer.mult.astype(np.int64)[:, None, None]
            sh = layer.shift.astype(np.int64)[:, None, None]
            ties += int(np.count_nonzero((prod > 0) & ((prod & ((1 << sh) - 1)) == (1 << (sh - 1)))))
            x = reference.requantize(layer, acc)
        rows, agree = compare.compare(qat, model, frame, exact=True)  # every layer's integers, logits included
        assert all(r.exact == 1.0 and r.max_abs == 0 for r in rows), compare.format_rows(rows, agree)
        # (not the labels: small integer logits tie across classes often, and the float upsampling
        # of compare and of the reference order their operations differently)
    assert ties >= 100, f"only {ties} positive ties: the test no longer tests rounding"


# --- the validator's accumulator bound: at the limit, and one past it ---------------------


def _first_layer_worst(model) -> int:
    layer = model.layers[0]
    alo, ahi = model.input_range(0)
    amax = max(abs(alo), abs(ahi))
    return int((np.abs(layer.bias.astype(np.int64)) + np.abs(layer.values.astype(np.int64)).sum(axis=1) * amax).max())


def test_accumulator_bound_is_exactly_int32():
    model = tiny_model()
    layer = model.layers[0]
    layer.bias = layer.bias.astype(np.int32)
    layer.bias[0] = 0
    rest = _first_layer_worst(model)  # filter 0 without its bias: far below 2^31 - 1
    other = int(np.abs(layer.values.astype(np.int64)).sum(axis=1)[0] * 128)
    layer.bias[0] = F.INT32_MAX - other  # filter 0 at exactly 2^31 - 1: allowed
    assert rest < F.INT32_MAX // 2 < _first_layer_worst(model) == F.INT32_MAX
    F.validate(model)
    layer.bias[0] += 1  # one past it: refused (the next layer's range unchanged)
    with pytest.raises(ModelFormatError, match="can overflow the 32-bit accumulator"):
        F.validate(model)


# --- the reference's resampling order: rows first, then columns, in float32 -----------------


def test_resampling_is_rows_then_columns_in_float32():
    rng = np.random.default_rng(3)
    maps = (rng.standard_normal((2, 5, 7)) * 1e3).astype(np.float32)
    ys, xs = reference.bilinear_axis(13, 5), reference.bilinear_axis(17, 7)
    got = reference.resample(maps, ys, xs)
    want = np.empty_like(got)
    f32 = np.float32
    for c in range(2):
        for i in range(13):
            for j in range(17):
                def row(x):  # one row sample, float32 at every step
                    a = f32(maps[c, ys[0][i], x]) * (f32(1) - ys[2][i])
                    return f32(a + f32(maps[c, ys[1][i], x]) * ys[2][i])
                a = row(xs[0][j]) * (f32(1) - xs[2][j])
                want[c, i, j] = f32(a + row(xs[1][j]) * xs[2][j])
    np.testing.assert_array_equal(got, want)  # bit for bit: columns first differs in the last bits


# --- distillation: the temperature softens both, and T^2 scales the loss -----------------


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_distillation_kl_softens_and_scales_by_t_squared(temperature):
    torch = pytest.importorskip("torch")
    from sentei.training.distill import kd_kl

    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 11, 4, 4, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(2, 11, 4, 4, generator=g, dtype=torch.float64) * 3
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 11  # one void pixel left out
    got = float(kd_kl(student, teacher, labels, temperature))
    s, t = student.numpy() / temperature, teacher.numpy() / temperature
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True) - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True))
    kl = (p * (np.log(p) - log_q)).sum(1)
    keep = labels.numpy() != 11
    want = kl[keep].mean() * temperature**2
    assert got == pytest.approx(want, rel=1e-6)


# --- the driver's deadline: a hung accelerator is given up within its timeout ----------------


def test_driver_gives_up_within_its_timeout(stranded):
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay
    from sentei.host.runtime.segmenter import Segmenter

    model = tiny_model()
    overlay = EmulatedOverlay(model, hardware="reference", hang=True)
    t0 = time.monotonic()
    with pytest.raises(HardwareTimeoutError, match="within 0.3 s"):  # at LOAD_WEIGHTS, as it starts
        Segmenter(model, overlay=overlay, timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 5, f"gave up after {elapsed:.2f} s with a 0.3 s timeout"
