"""Checkpoints are untrusted input (issue 26, "one line and exit 2"): a checkpoint with missing
keys, wrong types, an empty or mismatched state dict, or absurd widths and input sizes is refused
in one line, exit status 2, before any network is built -- no traceback, no huge allocation.
(test_training_faults.py: a checkpoint that would run code when unpickled.)"""
from __future__ import annotations

import copy
import resource
import time

import pytest

from sentei.host.modelfile import schema as F

from .conftest import H, W, assert_one_line_error, files_under, make_split, run_main

torch = pytest.importorskip("torch", reason="checkpoints need PyTorch (pip install 'sentei[train]')")

MODEL = {"num_classes": 11, "input": {"height": H, "width": W},
         "layers": [{"name": "conv1", "out": 8, "stride": 2}, {"name": "conv2", "out": 8}]}
COMPRESS = {"scheme": "filterwise", "sparsity": 0.5, "overrides": {"conv1": 0.0, "classifier": 0.0},
            "weight_bits": 8, "act_bits": 8}


def _teacher() -> dict:
    from sentei.training.models import FCN

    torch.manual_seed(0)
    return {"format": "sentei-checkpoint", "kind": "teacher", "config": {"name": "tiny", "model": copy.deepcopy(MODEL)},
            "model": FCN(MODEL).state_dict(), "epoch": 3, "val": {"miou": 0.1}}


def _compressed() -> dict:
    from sentei.training import train
    from sentei.training.models import FCN

    torch.manual_seed(0)
    fcn = FCN(MODEL)
    train.make_sparsifier(COMPRESS).prepare(fcn)
    qat = train.make_qat(fcn, COMPRESS)
    return {"format": "sentei-checkpoint", "kind": "compressed", "phase": "qat",
            "config": {"name": "tiny-c", "model": copy.deepcopy(MODEL), "compress": dict(COMPRESS)},
            "compress": copy.deepcopy(COMPRESS),
            "model": qat.state_dict(), "epoch": 1, "val": {"miou": 0.1}, "sparsity_fraction": 1.0}


def _layers(*outs, kernel=3):
    return [{"name": f"conv{i + 1}", "out": out, "kernel": kernel} for i, out in enumerate(outs)]


def _set(*keys, value):
    """A change to a checkpoint: ``ckpt[k0][k1]... = value`` (``...`` removes the key)."""
    def change(ckpt):
        *path, last = keys
        target = ckpt
        for key in path:
            target = target[key]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return change


def _state(change):
    def apply(ckpt):
        change(ckpt["model"])
    return apply


def _first(sd):
    return next(iter(sd))


# name -> (change, fragment of the one-line message)
TEACHER_CASES = {
    "no-config": (_set("config", value=...), "'config'"),
    "config-not-a-dict": (_set("config", value=[1, 2]), "'config'"),
    "no-model-config": (_set("config", "model", value=...), "config.model"),
    "model-config-a-string": (_set("config", "model", value="fcn"), "config.model"),
    "no-state-dict": (_set("model", value=...), "'model'"),
    "state-dict-a-list": (_set("model", value=[1, 2, 3]), "'model'"),
    "state-dict-a-tensor": (_set("model", value=torch.zeros(3)), "'model'"),
    "empty-state-dict": (_set("model", value={}), "state dict ('model') is empty"),
    "missing-key": (_state(lambda sd: sd.pop("classifier.weight")), "missing classifier.weight"),
    "unexpected-key": (_state(lambda sd: sd.update(extra=torch.zeros(2))), "unexpected 'extra'"),
    "wrong-shape": (_state(lambda sd: sd.update({"blocks.0.0.weight": torch.zeros(8, 3, 1, 1)})),
                    "blocks.0.0.weight: shape [8, 3, 1, 1], expected [8, 3, 3, 3]"),
    "not-a-tensor": (_state(lambda sd: sd.update({"blocks.0.1.bias": [0.0] * 8})), "blocks.0.1.bias: a list"),
    "int-for-float": (_state(lambda sd: sd.update({"blocks.0.1.bias": torch.zeros(8, dtype=torch.int64)})),
                      "blocks.0.1.bias: torch.int64"),
    "unknown-kind": (_set("kind", value="student"), "kind 'student'"),
    "epoch-a-string": (_set("epoch", value="three"), "epoch"),
    "val-a-number": (_set("val", value=0.5), "val"),
    "layers-a-string": (_set("config", "model", "layers", value="conv"), "layers"),
    "width-absurd": (_set("config", "model", "layers", value=_layers(1_000_000_000)),
                     f"out 1000000000 is outside [1, {F.MAX_CHANNELS}]"),
    "width-negative": (_set("config", "model", "layers", value=_layers(-8)), "out"),
    "width-a-float": (_set("config", "model", "layers", value=_layers(8.5)), "out"),
    "classes-absurd": (_set("config", "model", "num_classes", value=10**12), "num_classes"),
    "dense-weights": (_set("config", "model", "layers", value=_layers(*[4096] * 5, kernel=1)),
                      f"limit {F.MAX_DENSE_WEIGHTS}"),
    "kernel-7": (_set("config", "model", "layers", value=_layers(8, kernel=7)), "kernel 7"),
    "input-absurd": (_set("config", "model", "input", value={"height": 10**9, "width": 10**9}),
                     f"outside 1..{F.MAX_INPUT_SIDE}"),
    "input-a-string": (_set("config", "model", "input", value={"height": "tall", "width": W}), "input.height"),
    "input-huge-map": (_set("config", "model", "input", value={"height": 8192, "width": 8192}),
                       f"limit {F.MAX_MAP_ELEMENTS}"),
    "input-empty-map": (lambda c: c["config"]["model"].update(input={"height": 2, "width": 2},
                                                                layers=[{"out": 8, "padding": 0}]),
                        "is empty at the input size"),
    "input-std-zero": (_set("config", "model", "input", value={"height": H, "width": W, "std": [0, 1, 1]}),
                       "input.std"),
    "input-mean-short": (_set("config", "model", "input", value={"height": H, "width": W, "mean": [0.5]}),
                         "input.mean"),
}

COMPRESSED_CASES = {
    "no-compress": (_set("compress", value=...), "'compress'"),
    "compress-a-list": (_set("compress", value=["filterwise"]), "'compress'"),
    "unknown-phase": (_set("phase", value="sing"), "phase 'sing'"),
    "weight-bits-a-string": (_set("compress", "weight_bits", value="eight"), "compress.weight_bits"),
    "group-size-zero": (_set("compress", "group_size", value=0), "compress.group_size"),
    "qat-missing-act-scale": (_state(lambda sd: sd.pop("act_scale")), "missing act_scale"),
    "qat-wrong-act-scale": (_state(lambda sd: sd.update(act_scale=torch.ones(5))), "act_scale: shape [5]"),
    "a-teacher-state-dict": (_set("model", value=_teacher()["model"]), "missing"),
    "sparsity-fraction-a-string": (_set("sparsity_fraction", value="all"), "sparsity_fraction"),
    "width-absurd": (_set("config", "model", "layers", value=_layers(1_000_000_000)), "outside [1, 4096]"),
}


def _refused(capsys, argv, *fragments):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    status, _, err = run_main(argv, capsys)
    elapsed = time.perf_counter() - t0
    assert_one_line_error(status, err, *fragments)
    assert elapsed < 10, f"{elapsed:.1f} s"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB"
    return err


def _broken(cases: dict, build, case: str, path):
    """``build()`` with ``cases[case]``'s change, saved at ``path``; ``(path, fragment)``."""
    change, fragment = cases[case]
    ckpt = build()
    change(ckpt)
    torch.save(ckpt, path)
    return path, fragment


def test_the_valid_checkpoints_build():
    """The unbroken checkpoints of this file load and build (each case below breaks one thing)."""
    from sentei.training import train
    from sentei.training.quantize import QATNet

    for ckpt, kind in ((_teacher(), train.FCN), (_compressed(), QATNet)):
        assert isinstance(train.build_from_checkpoint(train.check_checkpoint(copy.deepcopy(ckpt), "x.pt")), kind)


@pytest.mark.parametrize("case", sorted(TEACHER_CASES))
def test_a_broken_teacher_checkpoint_is_one_line(case, tmp_path, capsys):
    path, fragment = _broken(TEACHER_CASES, _teacher, case, tmp_path / "teacher.pt")
    err = _refused(capsys, ["export", "--onnx", tmp_path / "t.onnx", "--model", path], str(path), fragment)
    assert "sentei train" in err  # what to pass instead
    assert not (tmp_path / "t.onnx").exists()
    _refused(capsys, ["compress", "--synthetic", "--teacher", path, "--out", tmp_path / "c"], fragment)
    assert files_under(tmp_path / "c") == []


@pytest.mark.parametrize("case", ["missing-key", "width-absurd", "input-absurd"])
def test_a_broken_checkpoint_through_eval_and_bench(case, tmp_path, capsys):
    path, fragment = _broken(TEACHER_CASES, _teacher, case, tmp_path / "teacher.pt")
    data = make_split(tmp_path / "d", "val", {"a": 1})
    _refused(capsys, ["eval", "--backend", "torch", "--model", path, "--data", data], fragment)
    _refused(capsys, ["bench", "--model", path, "--backend", "torch", "--frames", "1"], fragment)


@pytest.mark.parametrize("case", sorted(COMPRESSED_CASES))
def test_a_broken_compressed_checkpoint_is_one_line(case, tmp_path, capsys):
    path, fragment = _broken(COMPRESSED_CASES, _compressed, case, tmp_path / "best.pt")
    _refused(capsys, ["export", path, "-o", tmp_path / "m.sentei"], str(path), fragment)
    assert not (tmp_path / "m.sentei").exists()


def test_the_check_runs_before_anything_is_built(monkeypatch):
    """The structure is checked before a network exists: an absurd width never reaches FCN."""
    from sentei.errors import SenteiError
    from sentei.training import models, train

    ckpt = _teacher()
    ckpt["config"]["model"]["layers"] = _layers(*[4096] * 5, kernel=1)
    built = []
    monkeypatch.setattr(models.FCN, "__init__", lambda self, *a, **k: built.append(a) or (_ for _ in ()).throw(
        AssertionError("FCN built")))
    with pytest.raises(SenteiError, match="dense weights"):
        train.check_checkpoint(ckpt, "x.pt")
    assert built == []


def test_bundled_checkpoints_pass_the_check():
    from sentei.host.modelfile import bundled
    from sentei.training import train

    for name in ("teacher", "sentei-camvid-fw90-qat"):
        path, _ = bundled.resolve(name, kind="torch-checkpoint")
        ckpt = train.load_checkpoint(path)  # checked on load
        assert ckpt["kind"] in ("teacher", "compressed")


# --- export --onnx: the dense weights it would build are bounded first ----------------------


def test_onnx_export_of_a_model_claiming_huge_dense_weights_is_one_line(tmp_path, capsys):
    from sentei.host.modelfile.synthetic import LayerSpec, random_model

    from .conftest import unvalidated_bytes

    wide = (LayerSpec(4096, kernel=1, density=1 / 3), LayerSpec(4096, kernel=3, density=1 / 36864))
    path = tmp_path / "wide.sentei"
    path.write_bytes(unvalidated_bytes(random_model(seed=0, height=8, width=8, specs=wide)))
    _refused(capsys, ["export", "--onnx", tmp_path / "w.onnx", "--model", path], "dense weights",
             f"limit {F.MAX_DENSE_WEIGHTS}")
    assert not (tmp_path / "w.onnx").exists()


def test_onnx_module_bounds_dense_weights_before_allocating(monkeypatch):
    """baseline.build_module (the ONNX and torch baselines of a model file) counts the dense
    weights it would build before the first layer, even for a model that skipped validation."""
    from sentei.errors import SenteiError
    from sentei.host.modelfile.synthetic import random_model
    from sentei.training import baseline

    model = random_model(seed=0, height=H, width=W)
    dense = sum(layer.out_channels * layer.fan_in for layer in model.layers)
    monkeypatch.setattr(F, "MAX_DENSE_WEIGHTS", dense)
    baseline.build_module(model)  # at the limit: built
    monkeypatch.setattr(F, "MAX_DENSE_WEIGHTS", dense - 1)
    monkeypatch.setattr(baseline, "folded_conv", lambda *a: pytest.fail("a layer was built before the check"))
    with pytest.raises(SenteiError, match=f"{dense} dense weights"):
        baseline.build_module(model)
