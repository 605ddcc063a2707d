"""`sentei models | info | segment | eval` end to end on random models and generated data."""
import json

import numpy as np
import pytest
from PIL import Image

from sentei import cli
from sentei.errors import SenteiError
from sentei.host.modelfile import schema as F
from sentei.host.data import metrics
from sentei.host.modelfile import reference
from sentei.host.modelfile.synthetic import random_frame, random_model


@pytest.fixture
def model_file(tmp_path):
    return F.save(random_model(seed=5, height=24, width=32), tmp_path / "m.sentei")


@pytest.fixture
def dataset(tmp_path, model_file):
    """A 3-frame split whose labels are the model's own predictions, with known edits."""
    model = F.load(model_file)
    root = tmp_path / "data"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    preds = []
    for i in range(3):
        frame = random_frame(100 + i, 24, 32)
        pred = reference.predict(model, frame)
        gt = pred.copy()
        if i == 1:
            gt[:4] = 11  # void rows: ignored
        if i == 2:
            gt[-4:] = (gt[-4:] + 1) % 11  # wrong rows: errors the mIoU must count
        Image.fromarray(frame).save(root / "val" / f"f{i}.png")
        Image.fromarray(gt).save(root / "valannot" / f"f{i}.png")
        preds.append((pred, gt))
    conf = sum(metrics.confusion(p, g, 11) for p, g in preds)
    return root, metrics.miou(conf), conf


def test_info_reports_k_and_memory(model_file, tmp_path, capsys):
    out = tmp_path / "info.json"
    assert cli.main(["info", "--model", str(model_file), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    facts = json.loads(out.read_text())
    model = F.load(model_file)
    assert [r["k_nonzero"] for r in facts["layers"]] == [layer.k_nonzero for layer in model.layers]
    assert "weight memory" in text and "skipped" in text
    assert facts["totals"]["weight_bytes_packed"] < facts["totals"]["weight_bytes_dense"]


def test_models_lists_without_crashing(capsys):
    assert cli.main(["models"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("backend", ["reference", "emu"])
def test_eval_counts_errors_and_ignores_void(model_file, dataset, tmp_path, capsys, backend):
    root, expected, conf = dataset
    out = tmp_path / "metrics.json"
    assert cli.main(["eval", "--model", str(model_file), "--data", str(root), "--split", "val",
                     "--backend", backend, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 3
    assert result["miou"] == pytest.approx(expected)
    assert 0.0 < result["miou"] < 1.0  # the wrong rows cost something; the rest is exact
    assert f"mIoU {100 * expected:.2f}" in capsys.readouterr().out


def test_eval_refuses_a_label_map_of_another_size(model_file, dataset, tmp_path, capsys):
    root, _, _ = dataset
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(root / "valannot" / "f1.png")  # frame f1 is 32x24
    out = tmp_path / "metrics.json"
    assert cli.main(["eval", "--model", str(model_file), "--data", str(root), "--backend", "reference",
                     "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'valannot' / 'f1.png'}: label map is 20x10 but its frame f1.png is 32x24" in err
    assert not out.exists()


def test_eval_on_a_missing_split_is_one_line(model_file, tmp_path, capsys):
    assert cli.main(["eval", "--model", str(model_file), "--data", str(tmp_path), "--split", "test"]) == 2
    assert "split folder not found" in capsys.readouterr().err


def test_segment_writes_labels_and_overlay(model_file, tmp_path, capsys):
    frame = random_frame(9, 48, 64)  # another size: resized to the model's 24x32, labels back to 48x64
    Image.fromarray(frame).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert cli.main(["segment", str(tmp_path / "a.png"), "--model", str(model_file), "--out", str(out),
                     "--backend", "reference"]) == 0
    labels = np.asarray(Image.open(out / "a_labels.png"))
    overlay = np.asarray(Image.open(out / "a_overlay.png"))
    assert labels.shape == (48, 64) and overlay.shape == (48, 64, 3)
    model = F.load(model_file)
    from sentei.host.data.preprocess import prepare_frame, resize_labels
    expected = resize_labels(reference.predict(model, prepare_frame(frame, 24, 32)), 48, 64)
    assert np.array_equal(labels, expected)
    assert "ms" in capsys.readouterr().out


def test_segment_bad_image_writes_nothing(model_file, tmp_path, capsys):
    good = tmp_path / "a.png"
    Image.fromarray(random_frame(1, 24, 32)).save(good)
    bad = tmp_path / "b.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    assert cli.main(["segment", str(good), str(bad), "--model", str(model_file), "--out", str(out)]) == 2
    assert "b.png: not a readable image" in capsys.readouterr().err
    assert not out.exists()


def test_eval_torch_on_a_model_file_says_so(model_file, dataset, capsys):
    pytest.importorskip("torch")
    root, _, _ = dataset
    assert cli.main(["eval", "--model", str(model_file), "--data", str(root), "--backend", "torch"]) == 2
    assert "is a model file, not a PyTorch checkpoint" in capsys.readouterr().err


def test_a_model_file_name_stands_for_its_bundled_checkpoint(monkeypatch, tmp_path):
    """Where a checkpoint is wanted (`--backend torch`), a bundled model file's name -- or the
    default -- resolves to the QAT checkpoint its entry names; without one the error says
    which checkpoints there are and that the model file runs on --backend emu."""
    from sentei.host.modelfile import bundled

    for name in ("m.sentei", "m-qat.pt", "other.sentei", "teacher.pt"):
        (tmp_path / name).write_bytes(b"x")
    manifest = {"default": "m", "models": {
        "m": {"file": "m.sentei", "kind": "model-file", "checkpoint": "m-qat"},
        "m-qat": {"file": "m-qat.pt", "kind": "torch-checkpoint"},
        "other": {"file": "other.sentei", "kind": "model-file"},
        "teacher": {"file": "teacher.pt", "kind": "torch-checkpoint"}}}
    (tmp_path / "models.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(bundled, "MANIFEST", tmp_path / "models.json")
    monkeypatch.setattr(bundled, "BUNDLED", tmp_path)
    assert bundled.resolve(None, kind="torch-checkpoint") == (tmp_path / "m-qat.pt", "torch-checkpoint")
    assert bundled.resolve("m", kind="torch-checkpoint")[0] == tmp_path / "m-qat.pt"
    assert bundled.resolve("m")[0] == tmp_path / "m.sentei"  # a model file where one is wanted
    with pytest.raises(SenteiError, match=r"^other is a model file, not a PyTorch checkpoint: --backend torch "
                                          r"runs a \.pt checkpoint or a bundled one \(m-qat, teacher\); run"):
        bundled.resolve("other", kind="torch-checkpoint")


def test_a_file_is_taken_for_what_it_holds_not_its_name(model_file, tmp_path):
    """A model file named .pt is a model file; a torch.save archive named .sentei is a checkpoint."""
    from sentei.host.modelfile import bundled

    renamed = tmp_path / "model.pt"
    renamed.write_bytes(model_file.read_bytes())
    assert bundled.resolve(renamed) == (renamed, "model-file")
    archive = tmp_path / "ckpt.sentei"
    archive.write_bytes(b"PK\x03\x04" + bytes(60))
    assert bundled.resolve(archive)[1] == "torch-checkpoint"
    (tmp_path / "folder.sentei").mkdir()
    assert bundled.resolve(tmp_path / "folder.sentei")[1] == "model-file"  # format.load then says "a directory"
    assert cli.main(["info", "--model", str(renamed)]) == 0


@pytest.mark.parametrize("argv, message", [
    (["info", "--json", "{dir}"], "--json {dir}: a folder is where a file is needed"),
    (["info", "--json", ""], "--json: empty path"),
    (["eval", "--data", "{dir}", "--json", "{dir}"], "--json {dir}: a folder is where a file is needed"),
    (["segment", "x.png", "--out", ""], "--out: empty path"),
    (["segment", "x.png", "--out", "{file}"], "--out {file}: a file is where a folder is needed"),
    (["demo", "--out", "{file}"], "--out {file}: a file is where a folder is needed"),
    (["perf", "--json", "{dir}"], "--json {dir}: a folder is where a file is needed"),
    (["overlay", "csim", "--json", "{dir}"], "--json {dir}: a folder is where a file is needed"),
    (["overlay", "csim", "--workdir", "{file}"], "--workdir {file}: a file is where a folder is needed"),
    (["overlay", "codegen", "--out", ""], "--out: empty path"),
    (["bench", "--json", "{dir}"], "--json {dir}: a folder is where a file is needed"),
    (["bench", "--trtexec-log", "{dir}/nope.log"], "no such file: {dir}/nope.log"),
    (["bench", "--trtexec-log", "{file}"], "--trtexec-log {file}: no trtexec performance summary"),
    (["bench-report", "r.json", "--out", "{file}"], "--out {file}: a file is where a folder is needed"),
])
def test_outputs_and_inputs_are_checked_before_the_work(tmp_path, capsys, argv, message):
    """A model that does not exist is looked for later: the output's error comes first."""
    names = {"dir": tmp_path, "file": tmp_path / "f.txt"}
    names["file"].write_text("x")
    argv = [a.format(**names) for a in argv]
    if argv[0] != "bench-report":
        argv += ["--model", str(tmp_path / "missing.sentei")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err and err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_trtexec_is_looked_for_before_the_benchmark(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)  # no trtexec on this machine
    assert cli.main(["bench", "--trtexec=--onnx=m.onnx", "--model", str(tmp_path / "missing.sentei")]) == 2
    assert "trtexec is not on PATH" in capsys.readouterr().err


def test_info_json_never_replaces_the_model(model_file, capsys):
    before = model_file.read_bytes()
    assert cli.main(["info", "--model", str(model_file), "--json", str(model_file)]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert model_file.read_bytes() == before


def test_bench_report_never_replaces_a_report(tmp_path, capsys):
    (tmp_path / "benchmarks.md").write_text("{}")
    assert cli.main(["bench-report", str(tmp_path / "benchmarks.md"), "--out", str(tmp_path)]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert (tmp_path / "benchmarks.md").read_text() == "{}"
