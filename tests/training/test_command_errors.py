"""Bad input to the training commands: one line naming the problem and the fix, exit status 2,
and nothing left behind (no run directory, no replaced file); the config's keys and values."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from sentei.cli import main  # noqa: E402
from sentei.errors import SenteiError  # noqa: E402
from sentei.host.modelfile import schema as fmt  # noqa: E402
from sentei.host.modelfile import bundled  # noqa: E402
from sentei.training import train  # noqa: E402
from sentei.training.commands import CONFIGS  # noqa: E402
from sentei.training.config import check_config, load_config  # noqa: E402

from tests.reliability.conftest import assert_one_line_error, run_main  # noqa: E402

from .conftest import compress_config, tiny_config  # noqa: E402


def refused(capsys, argv, message):
    """``sentei argv`` exits 2 with one line that holds ``message`` (the reliability suite's checks)."""
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, message)


def train_config(**train_keys) -> bytes:
    cfg = tiny_config(epochs=1)
    cfg["train"].update(train_keys)
    return yaml.safe_dump(cfg).encode()


@pytest.mark.parametrize("config, options, message", [
    (b"model: [\n", [], "not valid YAML at line 2, column 1"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", [], "not a text file (not UTF-8); pass a YAML config"),
    (yaml.safe_dump({"train": {"epochs": 1}}).encode(), [], "no 'model:' section"),
    (train_config(lr="abc"), [], "train.lr 'abc' must be a positive number, e.g. 0.003"),
    (train_config(batch_size=-1), [], "train.batch_size -1 must be an integer of at least 1"),
    (train_config(amp="fp16"), [], "train.amp 'fp16' must be one of bf16, fp32, false"),
    (train_config(learning_rate=0.1), [], "train: unknown key 'learning_rate'; the known keys are amp, batch_size, "
                                          "epochs, eval_every, lr, seed, warmup, weight_decay"),
    (train_config(), ["--device", "tpu"], "--device tpu: not a device this can train on; pass cpu, cuda"),
    (train_config(), ["--lr", "-1"], "argument --lr: -1 must be a positive number"),
    (train_config(), ["--lr", "nan"], "argument --lr: nan must be a positive number"),
    (train_config(), ["--lr", "0"], "argument --lr: 0 must be a positive number"),
    (train_config(), ["--resume"], "--resume: no checkpoint"),
    (train_config(), ["--crop", "64x48"], "crop 64x48 (--crop, data.augment.crop) is larger than the 32x48 frames; "
                                          "crop at most 32x48"),
    (train_config(), ["--crop", "16"], "--crop '16': expected HxW"),
    (yaml.safe_dump(dict(tiny_config(1), data={"synthetic_frames": 16})).encode(), ["--crop", "20x24"],
     "crop 20x24 (--crop, data.augment.crop): its sides must be multiples of the network's output stride 8, "
     "e.g. 16x24"),
    (yaml.safe_dump(dict(tiny_config(1), data={"augment": {"scale": [1.5, 0.8]}})).encode(), [],
     "data.augment.scale [1.5, 0.8] must be a pair [min zoom, max zoom], each a positive number, the first not "
     "above the second"),
    (yaml.safe_dump(dict(tiny_config(1), data={"augment": {"crop": [240]}})).encode(), [],
     "data.augment.crop [240] must be a pair [height, width], each an integer of at least 8"),
    (yaml.safe_dump(dict(tiny_config(1), data={"augment": {"zoom": [1, 2]}})).encode(), [],
     "data.augment: unknown key 'zoom'; the known keys are brightness, contrast, crop, flip, saturation, scale"),
    (yaml.safe_dump(dict(tiny_config(1), data={"trian_split": "train"})).encode(), [],
     "data: unknown key 'trian_split'"),
    (yaml.safe_dump(dict(tiny_config(1), model=dict(tiny_config(1)["model"], input=dict(
        tiny_config(1)["model"].get("input") or {}, height=10 ** 9)))).encode(), [],
     "is outside 1..8192 in either dimension"),
], ids=["yaml", "binary", "no-model", "lr-text", "batch-size", "amp", "unknown-key", "device", "lr-negative",
        "lr-nan", "lr-zero", "resume", "crop-too-large", "crop-form", "crop-stride-no-augment-section", "scale-order", "crop-pair", "augment-key",
        "data-key", "absurd-input"])
def test_train_refuses_before_making_the_run_directory(tmp_path, capsys, config, options, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(config)
    out = tmp_path / "runs" / "run"
    refused(capsys, ["train", "--synthetic", "--config", str(path), "--out", str(out), *options], message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("keys, options, message", [
    ({"amp": "fp16"}, [], "compress.amp 'fp16' must be one of bf16, fp32, false"),
    ({"learning_rate": 0.1}, [], "compress: unknown key 'learning_rate'; the known keys are act_bits, amp,"),
    ({"distill": {"alhpa": 0.5}}, [], "compress.distill: unknown key 'alhpa'; the known keys are alpha,"),
    ({"prune_epochs": 0}, [], "compress.prune_epochs 0: pruning to 75 % zeros needs at least one epoch"),
    ({"weight_bits": {"conv9": 4}}, [], "compress.weight_bits: no layer 'conv9' in the network; its layers are conv1,"),
    ({}, ["--group-size", "0"], "argument --group-size: 0 must be an integer of at least 1"),
    ({}, ["--scheme", "groupwise", "--group-size", "6", "--group-layout", "channels"],
     "layer conv2: groupwise: 8 input channels are not a multiple of the group size 6; pick G dividing Cin"),
    ({}, ["--scheme", "groupwise", "--group-size", "7"], "layer conv2: groupwise: filter size 72 is not a multiple"),
    ({}, ["--group-layout", "taps"], "argument --group-layout: invalid choice: 'taps'"),
    ({"group_layout": "kang"}, [], "compress.group_layout 'kang' must be one of flat, channels"),
    ({}, ["--ranking", "local"], "argument --ranking: invalid choice: 'local'"),
    ({}, ["--group-layout", "channels"], "--group-layout channels with scheme filterwise: it is the groupwise "
                                         "scheme's; drop --group-layout, or pick --scheme groupwise"),
    ({}, ["--scheme", "groupwise", "--ranking", "layer"], "--ranking layer with scheme groupwise: it is the "
                                                          "unstructured scheme's"),
    ({}, ["--dense", "convX"], "unknown layer(s) ['convX']"),
    ({}, ["--resume"], "--resume: no checkpoint"),
    ({}, ["--weight-bits", "9"], "argument --weight-bits: 9 must be an integer from 2 to 8, e.g. 8"),
    ({}, ["--scheme", "filterwise", "--nm", "2:4"], "--nm with --scheme filterwise: N:M is the nm scheme's"),
    ({}, ["--scheme", "nm", "--sparsity", "0.9"], "--sparsity 0.9 with N:M: N:M fixes the sparsity at 1 - N/M"),
    ({}, ["--distill", "--no-distill"], "argument --no-distill: not allowed with argument --distill"),
    ({}, ["--device", "mps"], "--device mps: compress scores the exact integer network in float64, which MPS lacks"),
    ({}, ["--name", "x\n#error"], "compress.name: 'x\\n#error' is not a valid name"),
], ids=["amp", "unknown-key", "distill-key", "no-prune-epochs", "bits-layer", "group-size", "group-channels",
        "group-flat", "group-layout", "group-layout-key", "ranking", "layout-scheme", "ranking-scheme", "dense",
        "resume", "weight-bits", "nm-scheme", "nm-sparsity", "distill-both", "mps", "name"])
def test_compress_refuses_before_making_the_run_directory(tiny_runs, tmp_path, capsys, keys, options, message):
    tdir = tiny_runs[0]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(compress_config(epochs=(1, 1), **keys)))
    out = tmp_path / "runs" / "run"
    refused(capsys, ["compress", "--synthetic", "--teacher", str(tdir / "teacher.pt"), "--config", str(path),
                     "--out", str(out), "--device", "cpu", *options], message)
    assert not (tmp_path / "runs").exists()


def test_a_run_failing_before_its_first_checkpoint_removes_only_the_folders_it_made(tiny_runs, tmp_path, capsys,
                                                                                     monkeypatch):
    def fail(*args, **kwargs):
        raise SenteiError("out of memory")

    monkeypatch.setattr(train._Loop, "epoch", fail)
    env = train.setup_env("cpu")
    cfg = tiny_config(epochs=1)
    data = tiny_runs[2]  # the same synthetic split as the config's
    with pytest.raises(SenteiError, match="out of memory"):
        train.train_teacher(cfg, tmp_path / "a" / "b", env, data)
    assert not (tmp_path / "a").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(SenteiError, match="out of memory"):
        train.train_teacher(cfg, mine, env, data)
    assert mine.is_dir()  # there before the run: not the run's to remove
    tdir = tiny_runs[0]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(compress_config(epochs=(1, 1))))
    refused(capsys, ["compress", "--synthetic", "--teacher", str(tdir / "teacher.pt"), "--config", str(path),
                     "--out", str(tmp_path / "c"), "--device", "cpu"], "out of memory")
    assert not (tmp_path / "c").exists()


def test_export_refuses_to_replace_its_checkpoint(tiny_runs, tmp_path, capsys):
    ckpt = tmp_path / "q.pt"
    shutil.copy(tiny_runs[1] / "best.pt", ckpt)
    before = ckpt.read_bytes()
    refused(capsys, ["export", str(ckpt), "-o", str(ckpt)], f"-o {ckpt} is also the input {ckpt}")
    assert ckpt.read_bytes() == before


def test_export_takes_bundled_checkpoint_names(tmp_path, capsys):
    out = tmp_path / "fw90.sentei"
    assert main(["export", "sentei-camvid-fw90-qat", "-o", str(out)]) == 0
    shipped = fmt.load(bundled.resolve_model("sentei-camvid-fw90"))
    for a, b in zip(fmt.load(out).layers, shipped.layers):  # the bundled model file is this checkpoint's export
        assert np.array_equal(a.values, b.values)
    refused(capsys, ["export", "teacher", "-o", str(tmp_path / "t.sentei")], "teacher: a teacher checkpoint in float")
    assert not (tmp_path / "t.sentei").exists()


def _torch_dict(path):
    torch.save({"a": 1}, path)


def _pickle(path):  # protocol 4: torch warns before it refuses
    path.write_bytes(pickle.dumps({"a": np.zeros(2)}, protocol=4))


def _text(path):
    path.write_text("hello\n")


@pytest.mark.parametrize("write", [_torch_dict, _pickle, _text])
def test_a_foreign_pt_file_is_one_line_without_warnings(tmp_path, capsys, recwarn, write):
    path = tmp_path / "foreign.pt"
    write(path)
    refused(capsys, ["export", str(path), "-o", str(tmp_path / "m.sentei")],
            f"{path}: not a sentei checkpoint (not a PyTorch file, or one written by something else); pass a "
            f"checkpoint written by sentei train/compress\n")
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_weight_bits_apply_to_every_layer_as_the_help_says(capsys):
    from sentei.training.models import FCN
    from sentei.training.quantize import QATNet

    assert QATNet(FCN(tiny_config()["model"]), weight_bits=4).weight_bits == [4] * 5  # conv1 .. classifier
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert "weight width of every layer, conv1 and the classifier included" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_pass_the_checks(path):
    cfg = load_config(path)
    check_config(cfg, "compress" if "compress" in cfg else "train")


def test_config_checks_beyond_single_values():
    cfg = tiny_config()
    cfg["train"]["lr"] = "1e-3"  # YAML 1.1 reads 1e-3 as a string
    check_config(cfg, "train")
    assert cfg["train"]["lr"] == 0.001
    with pytest.raises(SenteiError, match="a oneshot schedule takes only start, not end"):
        check_config(compress_config(schedule={"type": "oneshot", "end": 0.5}), "compress")
    with pytest.raises(SenteiError, match="compress.schedule: cubic schedule: need 0 <= start < end"):
        check_config(compress_config(schedule={"type": "cubic", "start": 0.7, "end": 0.6}), "compress")
    with pytest.raises(SenteiError, match="N:M needs N < M"):
        check_config(compress_config("nm", n=4, m=4), "compress")
    with pytest.raises(SenteiError, match=r"'train:' must be a mapping of keys, not 5"):
        check_config(dict(tiny_config(), train=5), "train")


def test_an_empty_section_is_an_empty_mapping():
    """`data:` or `distill:` with nothing under it (YAML null) is {} -- the commands then set keys in it."""
    cfg = dict(tiny_config(epochs=1), data=None)
    check_config(cfg, "train")
    assert cfg["data"] == {}
    comp = compress_config()
    comp["compress"]["distill"] = None
    comp["compress"]["schedule"] = None
    check_config(comp, "compress")
    assert comp["compress"]["distill"] == {} and comp["compress"]["schedule"] == {}


def test_a_failed_run_removes_its_own_folders_only(tmp_path):
    """A run that fails before its first checkpoint removes its run directory and the parents it
    made while they are empty; a sibling run started in the same new parent is left alone."""
    env = train.setup_env("cpu")

    @train.removed_if_failed
    def run(run_dir, env):
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "train.log").write_text("started\n")
        sibling.mkdir(parents=True)
        (sibling / "last.pt").write_bytes(b"another run's checkpoint")
        raise RuntimeError("failed before the first epoch")

    sibling = tmp_path / "new" / "deeper" / "y"
    with pytest.raises(RuntimeError):
        run(tmp_path / "new" / "deeper" / "x", env)
    assert not (tmp_path / "new" / "deeper" / "x").exists()
    assert (sibling / "last.pt").read_bytes() == b"another run's checkpoint"
    sibling_parent = tmp_path / "alone"
    sibling = tmp_path / "elsewhere" / "z"
    with pytest.raises(RuntimeError):
        run(sibling_parent / "a" / "b", env)
    assert not sibling_parent.exists()  # every folder it made, once empty, is gone
