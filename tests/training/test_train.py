"""Commands end to end on synthetic data: train, compress, export, compare, the torch engine,
checkpoints (atomic, weights-only, resumable), and config paths kept inside the run."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.cli import main  # noqa: E402
from sentei.errors import SenteiError  # noqa: E402
from sentei.host import format as fmt  # noqa: E402
from sentei.training import train  # noqa: E402
from sentei.training.engine import TorchEngine  # noqa: E402

from .conftest import compress_config, tiny_config  # noqa: E402


def test_teacher_run_files_and_slim_checkpoint(tiny_runs):
    tdir, _, _, _ = tiny_runs
    for name in ("last.pt", "best.pt", "teacher.pt", "train.log", "config.yaml", "metrics.json"):
        assert (tdir / name).exists(), name
    slim = train.load_checkpoint(tdir / "teacher.pt")
    assert set(slim) == {"format", "kind", "config", "model", "epoch", "val"}
    assert all(v.dtype != torch.float16 for v in slim["model"].values())
    metrics = json.loads((tdir / "metrics.json").read_text())
    assert metrics["val"]["miou"] > 0.12  # above chance (about 0.05) after a few seconds of training
    history = train.load_checkpoint(tdir / "last.pt")["history"]
    assert history[-1]["ce"] < 0.6 * history[0]["ce"]


def test_compressed_run_learns_and_selects_in_qat(tiny_runs):
    _, cdir, _, result = tiny_runs
    assert result["val"]["miou"] > 0.1
    best = train.load_checkpoint(cdir / "best.pt")
    assert best["phase"] == "qat"
    log = (cdir / "train.log").read_text()
    assert "QAT: calibrated" in log and "phase prune" in log


def test_torch_engine_predicts_labels(tiny_runs):
    tdir, cdir, data, _ = tiny_runs
    for path in (tdir / "teacher.pt", cdir / "best.pt"):
        eng = TorchEngine(path, device="cpu")
        assert eng.input_size == (32, 48) and len(eng.class_names) == 11
        frame = data.val.frames[0].permute(1, 2, 0).numpy()
        labels = eng.predict(frame)
        assert labels.shape == (32, 48) and labels.dtype == np.uint8 and labels.max() < 11
        with pytest.raises(SenteiError, match="the model takes 32x48"):
            eng.predict(np.zeros((10, 10, 3), np.uint8))


def test_export_and_compare_commands(tiny_runs, tmp_path, capsys):
    from PIL import Image

    tdir, cdir, data, _ = tiny_runs
    out = tmp_path / "m.sentei"
    assert main(["export", str(cdir / "best.pt"), "-o", str(out), "--name", "tiny"]) == 0
    model = fmt.load(out)
    assert model.name == "tiny"
    shipped = fmt.load(cdir / "model.sentei")
    for a, b in zip(model.layers, shipped.layers):  # the same integers as the run's own export
        assert np.array_equal(a.values, b.values) and np.array_equal(a.bias, b.bias)
    img = tmp_path / "f.png"
    Image.fromarray(data.val.frames[0].permute(1, 2, 0).numpy()).save(img)
    capsys.readouterr()
    assert main(["compare", "--model", str(out), "--checkpoint", str(cdir / "best.pt"), "--image", str(img),
                 "--exact"]) == 0
    text = capsys.readouterr().out
    assert "every layer bit-exact" in text and "classifier" in text
    assert main(["export", str(tdir / "teacher.pt"), "-o", str(tmp_path / "t.sentei")]) == 2
    assert not (tmp_path / "t.sentei").exists()


def test_resume_after_a_crash_is_bit_identical(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    env = train.setup_env("cpu")
    cfg = tiny_config(epochs=3)
    data = train.load_data(cfg, env, synthetic=True)
    train.train_teacher(cfg, tmp_path / "straight", env, data)
    calls = {"n": 0}
    real = train._Loop.after_epoch

    def crash_after_two(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train._Loop, "after_epoch", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train.train_teacher(cfg, tmp_path / "crashed", env, data)
    monkeypatch.setattr(train._Loop, "after_epoch", real)
    assert train.load_checkpoint(tmp_path / "crashed" / "last.pt")["epoch"] == 1
    train.train_teacher(cfg, tmp_path / "crashed", env, data, resume=True)
    a = train.load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = train.load_checkpoint(tmp_path / "crashed" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    path = tmp_path / "c.pt"
    train.save_checkpoint({"format": train.CHECKPOINT_FORMAT, "kind": "teacher", "x": torch.ones(2)}, path)
    assert list(tmp_path.iterdir()) == [path]
    assert torch.equal(train.load_checkpoint(path)["x"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": train.CHECKPOINT_FORMAT, "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SenteiError, match="not a sentei checkpoint"):
        train.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(SenteiError, match="not found"):
        train.load_checkpoint(tmp_path / "missing.pt")


def test_config_paths_stay_inside_the_run(tmp_path):
    assert train.inside(tmp_path, "model.sentei") == (tmp_path / "model.sentei").resolve()
    for bad in ("../x.sentei", "/etc/passwd", "a/../../x"):
        with pytest.raises(SenteiError, match="outside the run directory"):
            train.inside(tmp_path, bad)


@pytest.mark.slow
@pytest.mark.parametrize("scheme, extra", [("groupwise", {"group_size": 8}), ("unstructured", {}),
                                           ("nm", {"n": 2, "m": 4})])
def test_every_scheme_exports(tiny_runs, tmp_path, scheme, extra):
    tdir, _, data, _ = tiny_runs
    cfg = compress_config(scheme, 0.75 if scheme != "nm" else 0.5, epochs=(2, 1), **extra)
    cfg["model"] = tiny_config()["model"]
    result = train.compress(cfg, tdir / "teacher.pt", tmp_path, train.setup_env("cpu"), data)
    model = fmt.load(tmp_path / "model.sentei")
    assert {layer.scheme for layer in model.layers[1:-1]} == {scheme}
    assert result["min_pruned_sparsity"] >= (0.5 if scheme == "nm" else 0.6)
    if scheme in ("groupwise", "nm"):
        assert result["nnz_spread"] <= 2  # balanced by construction (up to quantization zeros)


def test_cli_refuses_without_data(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "1"]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_train_with_ddp(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("torchrun") is None and not (os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                              "torchrun"))):
        pytest.skip("torchrun is not installed")
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "sentei", "train",
                           "--synthetic", "--size", "32x48", "--epochs", "2", "--eval-every", "1", "--device", "cpu",
                           "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert log.count("teacher epoch") == 2  # rank 0 alone writes
    assert train.load_checkpoint(tmp_path / "ddp" / "teacher.pt")["kind"] == "teacher"
