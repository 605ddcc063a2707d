"""The reference engine against hand-worked cases and independent computations."""
import numpy as np
import pytest

from sentei.host.modelfile import reference as R
from sentei.host.modelfile.schema import ConvLayer, InputQuant, Model, pack_dense, validate
from sentei.host.modelfile.synthetic import LayerSpec, random_frame, random_layer, random_model


def _layer(weights, bias, act="relu", mult=None, shift=None, stride=1, dilation=1, padding=0,
           out_bits=8, weight_bits=8):
    w = np.asarray(weights)
    values, indices = pack_dense(w)
    cout, cin, k, _ = w.shape
    return ConvLayer(name="l", in_channels=cin, out_channels=cout, kernel=k, stride=stride, dilation=dilation,
                     padding=padding, weight_bits=weight_bits, act=act, out_bits=out_bits, values=values,
                     indices=indices, bias=np.asarray(bias, np.int32),
                     mult=None if act == "logits" else np.asarray(mult, np.int32),
                     shift=None if act == "logits" else np.asarray(shift, np.uint8))


def test_hand_worked_3x3_with_padding():
    # one input channel 3x3, one filter with two nonzero weights: centre * 2 and top-left * -1
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    w = np.zeros((1, 1, 3, 3), int)
    w[0, 0, 1, 1] = 2
    w[0, 0, 0, 0] = -1
    layer = _layer(w, [10], act="logits", padding=1)
    assert layer.k_nonzero == 2 and layer.indices.tolist() == [[0, 4]]
    acc = R.accumulate(layer, x)
    # out[y,x] = 10 + 2*x[y,x] - x[y-1,x-1] (zero outside)
    expected = [[12, 14, 16], [18, 19, 20], [24, 22, 23]]
    assert acc[0].tolist() == expected


def test_hand_worked_stride_dilation():
    x = np.arange(25).reshape(1, 5, 5)
    w = np.zeros((1, 1, 3, 3), int)
    w[0, 0, 2, 2] = 1  # bottom-right tap, dilation 2 -> offset (+4, +4) before padding 2
    layer = _layer(w, [0], act="logits", stride=2, dilation=2, padding=2)
    acc = R.accumulate(layer, x)
    # output 3x3 (5 + 4 - 5)//2 + 1 = 3; tap reads x[2y + 2, 2x + 2] (zero outside)
    assert acc[0].tolist() == [[12, 14, 0], [22, 24, 0], [0, 0, 0]]


def test_requantization_rounds_half_up_and_saturates():
    layer = _layer(np.ones((5, 1, 1, 1), int), [0] * 5, act="linear", mult=[1] * 5, shift=[1] * 5, out_bits=4)
    acc = np.array([3, -3, -5, 100, -100]).reshape(5, 1, 1)
    # (acc + 1) >> 1: 3 -> 2 (1.5 up), -3 -> -1 (-1.5 up), -5 -> -2, saturate to [-8, 7]
    assert R.requantize(layer, acc).ravel().tolist() == [2, -1, -2, 7, -8]
    relu = _layer(np.ones((2, 1, 1, 1), int), [0, 0], act="relu", mult=[3, 3], shift=[0, 0], out_bits=8)
    assert R.requantize(relu, np.array([-4, 90]).reshape(2, 1, 1)).ravel().tolist() == [0, 255]


def test_input_quantization_formula():
    q = InputQuant(height=1, width=2, mul=(3, -2, 1), add=(-100, 50, 0), shift=2, bits=8)
    frame = np.array([[[0, 255, 7], [200, 0, 255]]], dtype=np.uint8)
    model = Model(name="m", input=q, layers=[], output_upsample=1, num_classes=11)
    got = R.quantize_input(model, frame)
    # (p*mul + add + 2) >> 2, clamp to [-128, 127]
    assert got[:, 0, 0].tolist() == [(-100 + 2) >> 2, (-510 + 50 + 2) >> 2, (7 + 2) >> 2]
    assert got[:, 0, 1].tolist() == [min((600 - 100 + 2) >> 2, 127), (50 + 2) >> 2, (255 + 2) >> 2]


def _im2col_accumulate(layer, x):
    """An independent dense computation: im2col matmul on the unpacked weights."""
    k, s, d, p = layer.kernel, layer.stride, layer.dilation, layer.padding
    cin, h, w = x.shape
    ho, wo = layer.out_size(h, w)
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    cols = np.empty((cin, k, k, ho, wo), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            cols[:, ky, kx] = xp[:, ky * d: ky * d + s * ho: s, kx * d: kx * d + s * wo: s][:, :ho, :wo]
    dense = layer.dense_weights().reshape(layer.out_channels, -1).astype(np.int64)
    return dense @ cols.reshape(-1, ho * wo) + layer.bias.astype(np.int64)[:, None]


@pytest.mark.parametrize("spec", [
    LayerSpec(6, kernel=3, stride=1, dilation=1, padding=1, density=0.3),
    LayerSpec(6, kernel=3, stride=2, dilation=1, padding=0, density=1.0),
    LayerSpec(5, kernel=3, stride=1, dilation=3, padding=3, density=0.2, weight_bits=4),
    LayerSpec(4, kernel=3, stride=2, dilation=2, padding=1, density=0.5, weight_bits=2),
    LayerSpec(7, kernel=1, stride=2, padding=0, density=0.4),
])
def test_sparse_gather_equals_dense_im2col(spec):
    rng = np.random.default_rng(7)
    layer = random_layer(rng, "l", 5, spec, (0, 255))
    x = rng.integers(0, 256, size=(5, 11, 13))
    acc = R.accumulate(layer, x)
    assert np.array_equal(acc.reshape(layer.out_channels, -1), _im2col_accumulate(layer, x))


def test_against_torch_float64_conv():
    torch = pytest.importorskip("torch")
    model = random_model(seed=11, height=18, width=22)
    frame = random_frame(1, 18, 22)
    _, acts = R.run(model, frame, return_all=True)
    for layer, x, y in zip(model.layers, acts[:-1], acts[1:]):
        ref = torch.nn.functional.conv2d(
            torch.from_numpy(x.astype(np.float64))[None], torch.from_numpy(layer.dense_weights().astype(np.float64)),
            torch.from_numpy(layer.bias.astype(np.float64)), stride=layer.stride, padding=layer.padding,
            dilation=layer.dilation)[0].numpy()
        acc = R.accumulate(layer, x)
        assert np.array_equal(acc, ref.astype(np.int64))  # exact: float64 holds these integers
        assert np.array_equal(R.requantize(layer, acc), y)


def test_quantized_layer_tracks_the_float_layer_within_half_a_step():
    """Quantize a real-valued conv layer as the exporter does; the integer output, dequantized,
    stays within half an output step (plus the multiplier's relative error) of the float result."""
    rng = np.random.default_rng(5)
    cin, cout = 4, 6
    s_in, s_out = 0.05, 0.11
    s_w = rng.uniform(0.002, 0.01, size=cout)
    w_int = rng.integers(-127, 128, size=(cout, cin, 3, 3))
    w_int[rng.random(w_int.shape) < 0.6] = 0
    x_int = rng.integers(0, 256, size=(cin, 9, 10))
    bias_real = rng.normal(0, 0.5, size=cout)
    bias_int = np.round(bias_real / (s_in * s_w)).astype(np.int32)
    shift = 30
    mult = np.round(s_in * s_w / s_out * 2**shift).astype(np.int32)
    layer = _layer(w_int, bias_int, act="relu", mult=mult, shift=[shift] * cout, padding=1)
    got = R.conv(layer, x_int).astype(np.float64) * s_out
    # the float computation, on dequantized values (numpy, independent of the engine)
    xr = np.pad(x_int * s_in, ((0, 0), (1, 1), (1, 1)))
    wr = w_int * s_w[:, None, None, None]
    real = np.zeros((cout, 9, 10))
    for ky in range(3):
        for kx in range(3):
            real += np.einsum("oc,chw->ohw", wr[:, :, ky, kx], xr[:, ky:ky + 9, kx:kx + 10])
    real = np.maximum(real + (bias_int * s_in * s_w)[:, None, None], 0)
    expected = np.minimum(real, 255 * s_out)
    rel = np.abs(mult / 2**shift - s_in * s_w / s_out) / (s_in * s_w / s_out)
    bound = s_out / 2 + expected * rel.max() + 1e-9
    assert np.all(np.abs(got - expected) <= bound)
    assert np.count_nonzero(got) > 10  # not all clipped away


def test_run_shapes_and_labels():
    model = random_model(seed=2, height=24, width=32)
    frame = random_frame(4, 24, 32)
    logits, acts = R.run(model, frame, return_all=True)
    assert logits.dtype == np.int32 and logits.shape == (11, 6, 8)
    assert [a.shape for a in acts] == model.shapes()
    labels = R.predict(model, frame)
    assert labels.shape == (24, 32) and labels.dtype == np.uint8
    assert np.array_equal(labels, R.labels_from_logits(model, logits))


def test_bilinear_upsampling_matches_half_pixel_convention():
    maps = np.array([[[0.0, 4.0], [8.0, 12.0]]], dtype=np.float32)
    up = R.upsample_bilinear(maps, 4, 4)[0]
    # half-pixel centres: source coords -0.25, 0.25, 0.75, 1.25 -> clamped to 0, .25, .75, 1
    assert up[0].tolist() == [0.0, 1.0, 3.0, 4.0]
    assert up[:, 0].tolist() == [0.0, 2.0, 6.0, 8.0]
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 5, 7)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(m)[None], size=(40, 56), mode="bilinear",
                                          align_corners=False)[0].numpy()
    assert np.allclose(R.upsample_bilinear(m, 40, 56), ref, atol=1e-5)


def test_argmax_ties_go_to_the_lowest_class():
    model = random_model(seed=0, height=8, width=8)
    logits = np.zeros((11, 2, 2), dtype=np.int32)
    logits[3] = 5
    logits[7] = 5
    assert np.all(R.labels_from_logits(model, logits) == 3)


def test_random_models_are_valid_and_not_saturated():
    for seed in range(4):
        model = random_model(seed=seed, height=16, width=20)
        validate(model)
        _, acts = R.run(model, random_frame(seed, 16, 20), return_all=True)
        for layer, a in zip(model.layers[:-1], acts[1:-1]):
            hi = 2**layer.out_bits - 1
            assert 0.02 < np.mean((a > 0) & (a < hi))  # activations spread inside the range
