"""QAT -> model file: the exact path is the reference engine bit for bit; the fake-quantized
forward agrees with it on >= 99.5 % of pixels."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.host.modelfile import schema as fmt  # noqa: E402
from sentei.host.modelfile import reference  # noqa: E402
from sentei.training import compare, export, quantize, train  # noqa: E402


def test_requant_params_approximate_the_multiplier():
    m = np.array([1e-6, 0.003, 0.5, 0.99999999, 1.7, 3e-12])
    mult, shift = quantize.requant_params(m)
    assert np.all(mult >= 1) and np.all(mult.astype(np.int64) < 2**31) and np.all(shift <= 62)
    approx = mult.astype(np.float64) / np.exp2(shift.astype(np.float64))
    np.testing.assert_allclose(approx[:5], m[:5], rtol=2**-29)


def test_exact_path_is_the_reference_engine(tiny_runs):
    _, cdir, data, _ = tiny_runs
    net = train.build_from_checkpoint(train.load_checkpoint(cdir / "best.pt"))
    model = fmt.load(cdir / "model.sentei")
    for i in range(3):
        frame = data.val.frames[i].permute(1, 2, 0).numpy()
        rows, agree = compare.compare(net, model, frame, exact=True)
        assert all(r.exact == 1.0 and r.max_abs == 0 for r in rows), compare.format_rows(rows, agree)
        assert agree == 1.0


def test_fake_quant_agrees_with_reference_on_995_percent(tiny_runs):
    _, cdir, data, _ = tiny_runs
    net = train.build_from_checkpoint(train.load_checkpoint(cdir / "best.pt")).eval()
    model = fmt.load(cdir / "model.sentei")
    same = total = 0
    for i in range(len(data.val)):
        frame = data.val.frames[i].permute(1, 2, 0).numpy()
        with torch.no_grad():
            logits = net(data.val.frames[i:i + 1].float(), exact=False)
        up = torch.nn.functional.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=False)
        ours = up.argmax(1)[0].numpy()
        same += int((ours == reference.predict(model, frame)).sum())
        total += ours.size
    assert same / total >= 0.995


def test_exported_file_layers(tiny_runs):
    _, cdir, _, result = tiny_runs
    model = fmt.load(cdir / "model.sentei")
    assert [layer.name for layer in model.layers] == ["conv1", "conv2", "conv3", "conv4", "classifier"]
    assert [layer.scheme for layer in model.layers] == ["dense", "filterwise", "filterwise", "filterwise", "dense"]
    for layer in model.layers[1:4]:
        nnz = layer.nonzeros_per_filter()
        # filter-wise: every filter stores exactly K = floor(0.25 * fan_in) weights, no padding
        assert layer.k_nonzero == int(0.25 * layer.fan_in)
        assert nnz.max() <= layer.k_nonzero and layer.sparsity >= 0.75
    assert model.layers[-1].act == "logits" and model.output_upsample == 8
    assert result["nnz_spread"] <= 2 and result["min_pruned_sparsity"] >= 0.75


def test_unbalanced_scheme_is_padded_to_the_largest_filter():
    torch.manual_seed(0)
    from sentei.training import pruning
    from sentei.training.models import FCN

    from .conftest import TINY

    fcn = FCN(TINY)
    sp = pruning.Sparsifier(pruning.Unstructured(), 0.8, {"conv1": 0.0}).prepare(fcn)
    sp.step(1.0)
    qat = quantize.QATNet(fcn)
    qat.calibrate([torch.randint(0, 256, (2, 3, 32, 48)).float()])
    model = export.to_model(qat, "u", {n: "unstructured" for n, _ in sp.layers})
    for layer in model.layers[1:]:
        nnz = layer.nonzeros_per_filter()
        assert layer.k_nonzero == nnz.max()
        assert layer.k_nonzero * layer.out_channels - nnz.sum() == fmt.describe(model)["layers"][
            model.layers.index(layer)]["padding_zeros"]
    assert any(layer.nonzeros_per_filter().min() < layer.k_nonzero for layer in model.layers[1:])


def test_four_bit_weights():
    torch.manual_seed(1)
    from sentei.training.models import FCN

    from .conftest import TINY

    qat = quantize.QATNet(FCN(TINY), weight_bits={"default": 4, "conv1": 8, "classifier": 8})
    qat.calibrate([torch.randint(0, 256, (2, 3, 32, 48)).float()])
    model = export.to_model(qat, "w4")
    assert [layer.weight_bits for layer in model.layers] == [8, 4, 4, 4, 8]
    assert int(np.abs(model.layers[2].values).max()) <= 7
    frame = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rows, agree = compare.compare(qat, model, frame, exact=True)
    assert all(r.max_abs == 0 for r in rows) and agree == 1.0
