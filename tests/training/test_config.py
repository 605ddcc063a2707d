"""The config schema (training/config.py): one default per key, the shipped configs resolved to the
recipe they state, old runs and checkpoints read with the defaults they were made with, and a
wrong value refused in one line that names its key."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from sentei.errors import SenteiError  # noqa: E402
from sentei.training import config as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "training" / "configs").glob("*.yaml")) + sorted((ROOT / "host" / "bundled").glob("*.yaml"))

# what each shipped config resolves to (the values its runs took before the schema as well)
TEACHER = {"batch_size": 8, "lr": 0.003, "weight_decay": 0.0001, "warmup": 0.02, "eval_every": 10, "seed": 0,
           "amp": "bf16", "epochs": 300}
FW90 = {"batch_size": 8, "lr": 0.001, "weight_decay": 0.0001, "warmup": 0.02, "eval_every": 10, "seed": 0,
        "amp": "bf16", "name": "sentei-camvid-fw90", "scheme": "filterwise", "sparsity": 0.9,
        "overrides": {"conv1": 0.0, "conv2": 0.0, "classifier": 0.0}, "group_size": 144, "group_layout": "flat",
        "ranking": "global", "n": 2, "m": 4, "schedule": {"type": "cubic", "start": 0.0, "end": 0.6, "initial": 0.0},
        "prune_epochs": 500, "qat_epochs": 120, "qat_lr": 0.0002,
        "distill": {"enabled": True, "alpha": 0.7, "temperature": 2.0, "hint_layer": None, "hint_weight": 0.0},
        "weight_bits": 8, "act_bits": 8, "model_file": "model.sentei", "ema": None, "mask_every": 4}
DATA = {"root": None, "train_split": "train", "val_split": "val", "synthetic_frames": 24,
        "augment": {"scale": [0.8, 1.6], "flip": True, "brightness": 0.25, "contrast": 0.25, "saturation": 0.25,
                    "crop": None}}


def resolved(path: Path) -> tuple[str, dict]:
    cfg = C.load_config(path)
    section = "compress" if "compress" in cfg else "train"
    C.check_config(cfg, section, str(path))
    return section, C.resolve_config(cfg, section)


@pytest.mark.parametrize("name, section, expected", [
    ("training/configs/camvid-fcn7.yaml", "train", TEACHER),
    ("training/configs/camvid-fcn7w.yaml", "train", TEACHER),
    ("training/configs/camvid-fw90.yaml", "compress", FW90),
    ("host/bundled/teacher.yaml", "train", dict(TEACHER, epochs=400)),
])
def test_a_shipped_config_resolves_to_its_recipe(name, section, expected):
    got_section, cfg = resolved(ROOT / name)
    assert got_section == section
    assert {k: cfg[section][k] for k in expected} == expected  # (other schemes' keys at their defaults)
    assert dict(cfg["data"], root=None) == DATA  # (a bundled run's config names where its data lay)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_resolving_keeps_every_value_a_shipped_config_gives(path):
    """The schema only fills in what a config leaves out: a shipped run is the same run."""
    raw = C.load_config(path)
    section, cfg = resolved(path)
    C.check_config(raw, section)  # (parses 1e-3 strings as the resolved config has them)

    def given(a, b, where):
        for key, value in a.items():
            if isinstance(value, dict) and key in ("data", section, "schedule", "distill", "augment"):
                given(value, b[key], f"{where}.{key}")
            else:
                assert b[key] == value, f"{where}.{key}"

    given(raw, cfg, path.name)


def test_the_defaults_are_the_shipped_recipe():
    """A config that leaves a key out gets the value the shipped configs state (issue 28: eval_every
    was 10/5/10, epochs 300/200, group_size 144/8 in config/train/bundle)."""
    assert C.defaults(C.Train) == TEACHER
    compress = C.defaults(C.Compress)
    assert {k: compress[k] for k in FW90} == dict(FW90, name=None, overrides=None)
    assert C.defaults(C.Data) == DATA
    assert C.defaults(C.Schedule) == {"type": "cubic", "start": 0.0, "end": 0.6, "initial": 0.0}


def test_defaults_agree_with_the_classes_that_read_the_sections():
    pytest.importorskip("torch")
    import dataclasses

    from sentei.training.data import Augment
    from sentei.training.distill import Distillation

    assert dataclasses.asdict(Distillation()) == C.defaults(C.Distill)
    augment = dataclasses.asdict(Augment())
    assert dict(augment, scale=list(augment["scale"])) == C.defaults(C.Augment)
    # every key the command line sets takes the config's rule (one table, not two)
    assert set(C.TRAIN) == {f.name for f in dataclasses.fields(C.Train)}
    assert C.COMPRESS["group_size"][1] == 144 and C.COMPRESS["ema"][1] == 0.999  # examples of the messages


def test_resolving_fills_sections_and_leaves_the_given_config_alone():
    cfg = {"data": {"augment": {"flip": False}}, "compress": {"schedule": {"type": "oneshot", "start": 0.3},
                                                              "distill": None}}
    C.check_config(cfg, "compress")
    before = copy.deepcopy(cfg)
    out = C.resolve_config(cfg, "compress")
    assert cfg == before
    assert out["data"]["augment"] == dict(DATA["augment"], flip=False)
    assert out["compress"]["schedule"] == {"type": "oneshot", "start": 0.3}  # a oneshot takes no end
    assert out["compress"]["distill"]["alpha"] == 0.7
    assert C.resolve_config(out, "compress") == out  # idempotent


def test_a_run_made_before_the_schema_reads_with_the_defaults_it_ran_with():
    """A checkpoint or run config that leaves a key out ran with the code's default of then:
    group_size 8, 100 + 30 epochs, evaluations every 5, a cubic ramp ending at 0.5."""
    old = C.settings({"scheme": "groupwise"}, "compress", legacy=True)
    assert (old["group_size"], old["prune_epochs"], old["qat_epochs"], old["eval_every"]) == (8, 100, 30, 5)
    assert old["schedule"]["end"] == 0.5 and old["group_layout"] == "flat"
    assert C.settings({}, "train", legacy=True)["epochs"] == 200
    # resuming such a run under a config that also leaves group_size out is refused, not run at 144
    was = C.resolve_config({"compress": {"scheme": "groupwise"}}, "compress", legacy=True)
    now = C.resolve_config({"compress": {"scheme": "groupwise"}}, "compress")
    assert C.first_difference(was, now)[0][:2] == ("compress", "group_size")
    assert C.first_difference(was, now)[1:] == (8, 144)


def test_an_old_groupwise_checkpoint_builds_with_its_own_group_size():
    torch = pytest.importorskip("torch")  # noqa: F841
    from sentei.training import train

    assert train.make_sparsifier({"scheme": "groupwise", "sparsity": 0.5}).scheme.group_size == 8
    assert train.make_sparsifier({"scheme": "groupwise", "sparsity": 0.5, "group_size": 144}).scheme.group_size == 144


@pytest.mark.parametrize("section, values, key, must", [
    ("train", {"epochs": "many"}, "train.epochs", "an integer of at least 1"),
    ("train", {"eval_every": 2.5}, "train.eval_every", "an integer of at least 1"),
    ("train", {"amp": "fp16"}, "train.amp", "one of bf16, fp32, false"),
    ("compress", {"group_size": True}, "compress.group_size", "an integer of at least 1"),
    ("compress", {"group_layout": 3}, "compress.group_layout", "one of"),
    ("compress", {"schedule": {"end": "late"}}, "compress.schedule.end", "a number in [0, 1]"),
    ("compress", {"distill": {"alpha": [1]}}, "compress.distill.alpha", "a number in [0, 1]"),
    ("data", {"augment": {"crop": 240}}, "data.augment.crop", "a pair [height, width]"),
])
def test_a_wrong_type_is_one_line_naming_its_key(section, values, key, must):
    cfg = {"model": {"layers": [{"name": "conv1", "out": 8}]}, "data": {}, "train": {}, "compress": {}}
    cfg[section] = values
    run = "compress" if section == "compress" else "train"
    with pytest.raises(SenteiError) as err:
        C.check_config(cfg, run, "my.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"my.yaml: {key} ") and f"must be {must}" in text, text


def test_an_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(SenteiError, match=r"my.yaml: compress: unknown key 'group_sise'; the known keys are "
                                          r"act_bits, amp, batch_size, .*group_size"):
        C.check_config({"compress": {"group_sise": 8}}, "compress", "my.yaml")
