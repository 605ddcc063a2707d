"""The float PyTorch baseline of a model file tracks the integer network it was built from."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.errors import SenteiError  # noqa: E402
from sentei.host.modelfile import reference  # noqa: E402
from sentei.host.modelfile.synthetic import LayerSpec, random_frame, random_model  # noqa: E402
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


def test_fp16_holds_a_16_bit_activation():
    """A 16-bit ReLU layer's upper clamp (65535) is above fp16's largest value (65504): the
    half module clamps at what it can hold instead of failing to convert the bound."""
    wide = random_model(3, 16, 20, specs=(LayerSpec(6, density=0.5, out_bits=16), LayerSpec(6, density=0.5)))
    module = baseline.build_module(wide).half()
    x = torch.full((1, 6, 4, 4), 60000.0, dtype=torch.float16)
    assert torch.equal(module[2](x), x) and module[2].hi == 65535  # module[2]: conv1's Saturate
    assert torch.isinf(module[2](torch.full((1,), float("inf"), dtype=torch.float16))).sum() == 0
    try:
        fp16 = forward(baseline.build_module(wide), random_frame(4, 16, 20), torch.float16)
    except RuntimeError as exc:
        if "Half" in str(exc) and "overflow" in str(exc):
            raise
        pytest.skip(f"no fp16 conv on this CPU build: {exc}")
    assert np.isfinite(fp16).all()


def test_bench_module_runs_channels_last_and_frees_itself(model):
    """The torch engine lays weights and input out NHWC alike (no per-call weight re-layout),
    says so, and drops its module when closed (the next run's device memory peak)."""
    from sentei.host.bench import backends

    engine = backends.open_engine("torch", None, model, "cpu", "fp32")
    conv = engine.module[1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = baseline.frame_to_tensor(random_frame(5, 40, 56))
    assert x.is_contiguous(memory_format=torch.channels_last)  # the input as NHWC as the weights
    labels, accel = engine.infer(random_frame(5, 40, 56))
    assert labels.shape == (40, 56) and accel > 0
    assert engine.info()["memory_format"] == "channels_last"
    reference_labels = reference.predict(model, random_frame(5, 40, 56))
    assert (labels == reference_labels).mean() > 0.95
    engine.close()
    assert engine.module is None


def test_bench_refuses_a_gpu_index_the_machine_lacks(model, monkeypatch):
    from sentei.host.bench import backends

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SenteiError, match=r"^--device cuda:2: this machine has 2 visible GPU\(s\), cuda:0 to cuda:1$"):
        backends.open_engine("torch", None, model, "cuda:2", "fp32")


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
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [13]  # TensorRT >= 8.0
    assert [i.name for i in graph.graph.input] == ["pixels"]
    assert [o.name for o in graph.graph.output] == ["logits"]


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx package")
def test_export_onnx_command(model, tmp_path, capsys):
    from sentei import cli
    from sentei.host.modelfile import schema

    path = schema.save(model, tmp_path / "m.sentei")
    assert cli.main(["export", "--onnx", str(tmp_path / "m.onnx"), "--model", str(path)]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert cli.main(["export", "--onnx", str(tmp_path / "n.onnx"), "-o", str(tmp_path / "x.sentei")]) == 2
    assert "drop the checkpoint and -o" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


def test_teacher_module_folds_batch_norm_and_keeps_the_input_scale(tiny_runs):
    """The dense teacher as a plain chain: after the input step it computes the teacher's own
    logits (batch-norm folded, to float rounding); the input step is the teacher's input
    quantization without its rounding (within half a step)."""
    from sentei.training import train

    tdir, _, data, _ = tiny_runs
    fcn = train.build_from_checkpoint(train.load_checkpoint(tdir / "teacher.pt")).eval()
    module = baseline.teacher_module(fcn)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    frames = data.val.frames[:2]
    with torch.inference_mode():
        x = fcn.prepare(frames)
        torch.testing.assert_close(module[1:](x), fcn(frames), atol=1e-4, rtol=1e-4)
        step = float(fcn.quant.scale)
        assert (module[0](frames.float()) - x).abs().max() <= 0.5 * step + 1e-6
        agree = (module(frames.float()).argmax(1) == fcn(frames).argmax(1)).float().mean()
    assert agree > 0.97


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx package")
def test_export_onnx_of_the_teacher_checkpoint(tiny_runs, tmp_path, capsys):
    import onnx

    from sentei import cli

    tdir, cdir, _, _ = tiny_runs
    assert cli.main(["export", "--onnx", str(tmp_path / "t.onnx"), "--model", str(tdir / "teacher.pt")]) == 0
    graph = onnx.load(str(tmp_path / "t.onnx"))
    onnx.checker.check_model(graph)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("Conv") == 5 and "BatchNormalization" not in ops  # 4 convs and the classifier, BN folded
    assert cli.main(["export", "--onnx", str(tmp_path / "c.onnx"), "--model", str(cdir / "best.pt")]) == 2
    assert "a compressed checkpoint; export its model file first" in capsys.readouterr().err
    assert not (tmp_path / "c.onnx").exists()


def test_bench_times_the_teacher_like_the_model_file_network(tiny_runs):
    """`sentei bench --backend torch --model teacher.pt`: the folded teacher on the bench's
    module engine (accelerator-only time, any device and precision); a QAT checkpoint runs its
    exact integer path on the CPU in fp32 and says how to time it elsewhere."""
    from sentei.host.bench import backends

    tdir, cdir, data, _ = tiny_runs
    frame = data.val.frames[0].permute(1, 2, 0).numpy()
    for precision in ("fp32", "fp16"):
        engine = backends.open_engine("torch", str(tdir / "teacher.pt"), None, "cpu", precision)
        labels, accel = engine.infer(frame)
        assert labels.shape == (32, 48) and labels.dtype == np.uint8 and accel > 0
        assert "dense float teacher" in engine.info()["module"]
    qat = backends.open_engine("torch", str(cdir / "best.pt"), None, "cpu", "fp32")
    assert qat.infer(frame)[1] is None  # no separate accelerator time on the exact path
    with pytest.raises(SenteiError, match="exact integer path, on the CPU in fp32 only"):
        backends.open_engine("torch", str(cdir / "best.pt"), None, "cpu", "fp16")


def test_the_dense_weight_bound_is_one_function(monkeypatch):
    """The model file, the training configs and the float baseline bound the dense weights
    through one function (sentei.host.modelfile.schema.dense_weights_problem; issue 28): no other
    module compares a count with MAX_DENSE_WEIGHTS, and build_module counts through dense_weight_count."""
    import ast
    from pathlib import Path

    from sentei.host.modelfile import schema as fmt

    root = Path(__file__).resolve().parents[2]
    compares = []
    for folder in ("sentei", "host", "training", "overlay"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare) and "MAX_DENSE_WEIGHTS" in ast.unparse(node):
                    inside = [f.name for f in functions if f.lineno <= node.lineno <= f.end_lineno]
                    compares.append((str(path.relative_to(root)), inside[-1] if inside else None))
    assert compares == [("host/modelfile/schema.py", "dense_weights_problem")]
    model = random_model(3, 16, 24, specs=SPECS)
    assert fmt.dense_weight_count(model.layers) == sum(int(np.prod(l.dense_weights().shape)) for l in model.layers)
    counted = []
    real = fmt.dense_weight_count
    monkeypatch.setattr(fmt, "dense_weight_count", lambda layers: counted.append(1) or real(layers))
    baseline.build_module(model)
    assert counted == [1]
