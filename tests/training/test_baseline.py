"""The float PyTorch baseline of a model file tracks the integer network it was built from."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.errors import SenteiError  # noqa: E402
from sentei.host import reference  # noqa: E402
from sentei.host.synthetic import LayerSpec, random_frame, random_model  # noqa: E402
from sentei.training import baseline  # noqa: E402

# strides, a dilation of 4, a 4-bit layer and a signed (linear) activation
SPECS = (LayerSpec(8, stride=2, density=0.4), LayerSpec(12, dilation=4, density=0.3, weight_bits=4),
         LayerSpec(12, stride=2, density=0.5, act="linear"), LayerSpec(16, kernel=1, density=0.6))


@pytest.fixture(scope="module")
def model():
    return random_model(11, 40, 56, specs=SPECS)


def forward(module, frame, dtype=torch.float32):
    with torch.inference_mode():
        return module.to(dtype)(baseline.frame_to_tensor(frame, dtype=dtype)).double().numpy()[0]


def test_module_structure_is_dense_with_the_zeros(model):
    module = baseline.build_module(model)
    convs = [m for m in module if isinstance(m, torch.nn.Conv2d)]
    assert [(c.stride[0], c.dilation[0], c.padding[0], c.kernel_size[0]) for c in convs] == \
        [(layer.stride, layer.dilation, layer.padding, layer.kernel) for layer in model.layers]
    layer, conv = model.layers[1], convs[1]
    dense = layer.dense_weights()
    zeros = dense == 0
    assert zeros.mean() == pytest.approx(1 - layer.k_nonzero / layer.fan_in, abs=1e-9)
    w = conv.weight.detach().numpy()
    assert np.all(w[zeros] == 0) and np.all(w[~zeros] != 0)
    scale = layer.mult.astype(np.float64) / np.exp2(layer.shift.astype(np.float64))
    np.testing.assert_allclose(w, dense * scale[:, None, None, None], rtol=1e-6)


def test_logits_track_the_integer_network(model):
    module = baseline.build_module(model)
    for seed in range(3):
        frame = random_frame(seed, 40, 56)
        want = reference.run(model, frame).astype(np.float64) * model.output_scale
        got = forward(module, frame)
        assert got.shape == want.shape
        # only the integer rounding of each layer separates the two
        assert np.abs(got - want).mean() < 0.02 * np.abs(want).mean()
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


def test_labels_agree_with_the_reference(model):
    module = baseline.build_module(model)
    frame = random_frame(7, 40, 56)
    with torch.inference_mode():
        lab = baseline.labels(module(baseline.frame_to_tensor(frame)), 40, 56).numpy()
    assert lab.dtype == np.uint8 and lab.shape == (40, 56)
    assert (lab == reference.predict(model, frame)).mean() > 0.95


def test_saturation_matters(model):
    frame = random_frame(1, 40, 56)
    want = reference.run(model, frame).astype(np.float64) * model.output_scale
    clamped = np.abs(forward(baseline.build_module(model), frame) - want).mean()
    relu_only = np.abs(forward(baseline.build_module(model, saturate=False), frame) - want).mean()
    assert relu_only > 2 * clamped  # random weights saturate: dropping the clamp drifts away


def test_fp16_stays_finite_and_close(model):
    frame = random_frame(2, 40, 56)
    fp32 = forward(baseline.build_module(model), frame)
    try:
        fp16 = forward(baseline.build_module(model), frame, torch.float16)
    except RuntimeError as exc:  # a CPU build without half convolutions
        pytest.skip(f"no fp16 conv on this CPU build: {exc}")
    assert np.isfinite(fp16).all()
    assert np.abs(fp16 - fp32).mean() < 0.05 * np.abs(fp32).mean()


def test_export_onnx_without_onnx_says_what_to_install(model, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    with pytest.raises(SenteiError, match=r"pip install .sentei\[onnx\]."):
        baseline.export_onnx(baseline.build_module(model), tmp_path / "m.onnx", (40, 56))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx package")
def test_export_onnx_writes_a_checked_graph(model, tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    baseline.export_onnx(baseline.build_module(model), path, (40, 56))
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["pixels"]
    assert [o.name for o in graph.graph.output] == ["logits"]


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx package")
def test_export_onnx_command(model, tmp_path, capsys):
    from sentei import cli
    from sentei.host import format

    path = format.save(model, tmp_path / "m.sentei")
    assert cli.main(["export", "--onnx", str(tmp_path / "m.onnx"), "--model", str(path)]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert cli.main(["export", "--onnx", str(tmp_path / "n.onnx"), "-o", str(tmp_path / "x.sentei")]) == 2
    assert "drop the checkpoint and -o" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()
