"""python -m sentei.training.bundle: a finished run becomes a bundled model with figures measured
by the package's own commands, nothing half-installed on a refusal, and a rename that leaves no
dangling reference."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.host.modelfile import schema as fmt  # noqa: E402
from sentei.host.modelfile import bundled as bundled_models  # noqa: E402  (the fixture is `bundled`)
from sentei.training import bundle  # noqa: E402


@pytest.fixture
def camvid(tiny_runs, tmp_path):
    """A CamVid-layout val split of four synthetic frames."""
    from PIL import Image

    _, _, data, _ = tiny_runs
    root = tmp_path / "camvid"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    for i in range(4):
        Image.fromarray(data.val.frames[i].permute(1, 2, 0).numpy()).save(root / "val" / f"f{i}.png")
        Image.fromarray(data.val.labels[i].numpy().astype(np.uint8)).save(root / "valannot" / f"f{i}.png")
    return root


@pytest.fixture
def finished(tiny_runs, tmp_path):
    """The tiny compressed run as `sentei compress` leaves it: with its metrics.json."""
    from sentei.atomic_write import write_json

    _, cdir, _, result = tiny_runs
    run = tmp_path / "compressed"
    shutil.copytree(cdir, run)
    write_json(run / "metrics.json", result)
    return run


@pytest.fixture
def bundled(tiny_runs, finished, camvid, tmp_path, monkeypatch):
    """The tiny teacher and its compressed run bundled into an empty folder (the registry pointed at it)."""
    tdir, cdir = tiny_runs[0], finished
    dest = tmp_path / "bundled"
    dest.mkdir()
    assert bundle.main(["teacher", str(tdir), "--name", "teacher", "--data", str(camvid),
                        "--trained-on", "test CPU", "--into", str(dest)]) == 0
    assert bundle.main(["model", str(cdir), "--name", "tiny-fw", "--teacher", "teacher", "--data", str(camvid),
                        "--trained-on", "test CPU", "--into", str(dest), "--default"]) == 0
    monkeypatch.setattr(bundled_models, "BUNDLED", dest)
    monkeypatch.setattr(bundled_models, "MANIFEST", dest / "models.json")
    return dest


def eval_miou(model, data, backend):
    from sentei import cli

    return cli.main(["eval", "--model", model, "--data", str(data), "--split", "val", "--backend", backend])


def test_bundled_run_publishes_its_own_figures(bundled, camvid, tiny_runs, finished, capsys):
    cdir = finished
    manifest = json.loads((bundled / "models.json").read_text())
    assert manifest["default"] == "tiny-fw"
    assert sorted(manifest["models"]) == ["teacher", "tiny-fw", "tiny-fw-qat"]
    assert sorted(p.name for p in bundled.iterdir()) == sorted(
        ["models.json", "teacher.pt", "teacher.yaml", "teacher.log", "teacher.json", "tiny-fw.sentei",
         "tiny-fw-qat.pt", "tiny-fw.yaml", "tiny-fw.log", "tiny-fw.json"])  # no staging folder left behind
    entry = manifest["models"]["tiny-fw"]
    info = json.loads((bundled / "tiny-fw.json").read_text())
    model = fmt.load(bundled_models.resolve_model(None))
    assert model.name == "tiny-fw"
    d = fmt.describe(model)
    assert entry["metrics"]["weight_bytes"] == d["totals"]["weight_bytes_packed"] == info["weight_bytes"]
    assert entry["metrics"]["total_sparsity"] == pytest.approx(d["totals"]["sparsity"])
    pruned = [layer for layer in d["layers"] if layer["scheme"] != "dense"]
    assert entry["metrics"]["pruned_layer_sparsity_min"] == min(layer["sparsity"] for layer in pruned)
    assert info["nnz_spread"] == 0 and all(info["layers"][r["name"]]["k_nonzero"] == r["k_nonzero"] for r in pruned)
    # the mIoU it publishes is sentei eval's on the bundled files, both engines agreeing
    capsys.readouterr()
    assert eval_miou("tiny-fw", camvid, "emu") == 0
    assert f"mIoU {100 * entry['metrics']['val_miou']:.2f}" in capsys.readouterr().out
    assert info["eval"]["miou"] == info["eval_torch"]["miou"] == entry["metrics"]["val_miou"]
    assert info["eval"]["command"] == "sentei eval --model tiny-fw --data CAMVID --split val --backend emu"
    teacher = manifest["models"]["teacher"]
    assert entry["metrics"]["val_miou_teacher"] == teacher["metrics"]["val_miou"]
    assert info["miou_below_teacher_val"] == round(100 * (teacher["metrics"]["val_miou"] - entry["metrics"]["val_miou"]), 2)
    assert info["target_met"] == (info["miou_below_teacher_val"] <= 0.8)
    assert "'teacher'" in entry["description"] and "filterwise" in entry["description"]
    # a modeled frame rate belongs to one version of the performance model: the details say which, the
    # manifest (what sentei models prints) carries none
    assert not any("fps" in key for key in entry["metrics"])
    assert info["perf"]["frames_per_s"] > 0 and len(info["perf"]["perf_model"]["sha256"]) == 64
    # the checkpoint is the run's best without what only resuming needs; the teacher is the run's product
    qat = torch.load(bundled / "tiny-fw-qat.pt", weights_only=True)
    best = torch.load(cdir / "best.pt", weights_only=True)
    assert "optimizer" not in qat and "optimizer" in best and qat["epoch"] == best["epoch"]
    assert all(torch.equal(qat["model"][k], best["model"][k]) for k in best["model"])
    assert (bundled / "tiny-fw.log").read_text() == (cdir / "train.log").read_text()
    tinfo = json.loads((bundled / "teacher.json").read_text())
    assert tinfo["eval"]["backend"] == "torch" and tinfo["eval"]["miou"] == teacher["metrics"]["val_miou"]
    assert tinfo["selected_epoch"] == json.loads((tiny_runs[0] / "metrics.json").read_text())["best_epoch"]


def test_refusals_change_nothing(bundled, camvid, tiny_runs, finished, tmp_path, capsys):
    tdir, cdir = tiny_runs[0], finished
    before = {p.name: p.read_bytes() for p in bundled.iterdir()}

    def refused(argv, words):
        capsys.readouterr()
        assert bundle.main(argv + ["--data", str(camvid), "--trained-on", "x", "--into", str(bundled)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bundle: error:") and "\n" not in err and words in err, err
        assert {p.name: p.read_bytes() for p in bundled.iterdir()} == before

    refused(["model", str(cdir), "--name", "tiny-fw", "--teacher", "teacher"], "--replace")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(cdir, unfinished)
    (unfinished / "metrics.json").unlink()
    refused(["model", str(unfinished), "--name", "x", "--teacher", "teacher"], "has not finished")
    refused(["model", str(cdir), "--name", "x", "--teacher", "tiny-fw"], "not a bundled teacher")
    refused(["teacher", str(cdir), "--name", "t2"], "no teacher.pt")
    # a teacher that is not the one the run was distilled from
    other = tmp_path / "other-teacher"
    shutil.copytree(tdir, other)
    ck = torch.load(other / "teacher.pt", weights_only=True)
    ck["val"] = dict(ck["val"], miou=0.123)
    torch.save(ck, other / "teacher.pt")
    assert bundle.main(["teacher", str(other), "--name", "other", "--data", str(camvid), "--trained-on", "x",
                        "--into", str(bundled)]) == 0
    before = {p.name: p.read_bytes() for p in bundled.iterdir()}
    refused(["model", str(cdir), "--name", "x", "--teacher", "other"], "distilled from a teacher")


def test_rename_carries_every_reference(bundled, tiny_runs, camvid):
    tdir, _, _, _ = tiny_runs
    bundle.rename("teacher", "teacher-small", bundled)
    manifest = json.loads((bundled / "models.json").read_text())
    assert "teacher" not in manifest["models"] and not list(bundled.glob("teacher.*"))
    entry = manifest["models"]["teacher-small"]
    assert (bundled / entry["file"]).is_file() and entry["file"] == "teacher-small.pt"
    info = json.loads((bundled / entry["metrics"]["details"]).read_text())
    assert info["name"] == "teacher-small" and (bundled / info["config"]).is_file() and (bundled / info["log"]).is_file()
    student = json.loads((bundled / "tiny-fw.json").read_text())
    assert student["teacher"] == "teacher-small"
    assert "'teacher-small'" in manifest["models"]["tiny-fw"]["description"]
    assert bundled_models.resolve("teacher-small", "torch-checkpoint")[0] == bundled / "teacher-small.pt"
    # the name is free again for a new teacher; the renamed one cannot be overwritten by a rename
    assert bundle.main(["teacher", str(tdir), "--name", "teacher", "--data", str(camvid), "--trained-on", "x",
                        "--into", str(bundled)]) == 0
    with pytest.raises(bundle.SenteiError, match="already bundled"):
        bundle.rename("teacher", "teacher-small", bundled)
    with pytest.raises(bundle.SenteiError, match="not bundled"):
        bundle.rename("nothing", "x", bundled)


def test_generic_command_names_the_data_and_the_runs_folder():
    cmd = ("sentei compress --data /work/shared/data/camvid --teacher runs/w/teacher/teacher.pt --out runs/w/fw90 "
           "--dense conv1,conv2,classifier --seed 0")
    assert bundle.generic_command(cmd) == ("sentei compress --data CAMVID --teacher RUN/teacher/teacher.pt "
                                                  "--out RUN/fw90 --dense conv1,conv2,classifier --seed 0")
    assert bundle.generic_command("sentei train --data d --out teacher") == \
        "sentei train --data CAMVID --out RUN/teacher"


def test_a_model_bundled_without_its_checkpoint(bundled, camvid, finished, capsys):
    """--without-checkpoint: the checkpoint is still measured against the model file, but neither
    it nor a -qat entry ships; replacing a model that shipped one removes both."""
    assert bundle.main(["model", str(finished), "--name", "slim", "--teacher", "teacher", "--data", str(camvid),
                        "--trained-on", "test CPU", "--into", str(bundled), "--without-checkpoint"]) == 0
    manifest = json.loads((bundled / "models.json").read_text())
    assert "slim" in manifest["models"] and "slim-qat" not in manifest["models"]
    assert "checkpoint" not in manifest["models"]["slim"] and not (bundled / "slim-qat.pt").exists()
    info = json.loads((bundled / "slim.json").read_text())
    assert "qat_checkpoint" not in info and "not bundled" in info["export"]
    assert info["eval_torch"]["miou"] == info["eval"]["miou"] and "RUN/compressed/best.pt" in info["eval_torch"]["command"]
    assert not [p for p in bundled.iterdir() if p.name.startswith(".bundle-")]
    capsys.readouterr()
    assert eval_miou("slim", camvid, "emu") == 0
    assert bundle.main(["model", str(finished), "--name", "tiny-fw", "--teacher", "teacher", "--data", str(camvid),
                        "--trained-on", "test CPU", "--into", str(bundled), "--without-checkpoint", "--replace"]) == 0
    manifest = json.loads((bundled / "models.json").read_text())
    assert "tiny-fw-qat" not in manifest["models"] and not (bundled / "tiny-fw-qat.pt").exists()
    assert "checkpoint" not in manifest["models"]["tiny-fw"]
