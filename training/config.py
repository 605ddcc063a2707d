"""Run configurations: reading the YAML file, and the keys of its ``data``, ``train`` and
``compress`` sections with the values each may take.

:func:`check_config` refuses a config before a run starts (no run directory, no epoch): an
unknown key (a misspelt one would otherwise be ignored), a value of the wrong type or out of
range, a missing ``model`` section. The command line's options take the same rules
(:func:`option`). No PyTorch here: the commands register their options with it.
:func:`existing_file` refuses a missing file or a folder (configs here, checkpoints in ``train``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from sentei.errors import SenteiError
from sentei.host.modelfile.schema import SCHEMES
from sentei.host.options import Choice, Number, Section, Text, as_option, key, table
from sentei.host.options import fill as fill_keys
from sentei.training.pruning_names import GROUP_LAYOUTS, RANKINGS  # the commands take them from here too


@dataclass(frozen=True)
class Wrapped:
    """A rule around a :class:`Number` ``rule``: an option's text is parsed as that number."""

    rule: Number

    def parse(self, text: str):
        return self.rule.parse(text)


@dataclass(frozen=True)
class Nullable(Wrapped):
    """``rule``, or null (the default)."""

    def problem(self, value) -> str | None:
        return None if value is None else self.rule.problem(value)


@dataclass(frozen=True)
class PerLayer(Wrapped):
    """``rule`` for every layer, or a mapping ``{layer name: value}`` (``default``: the others)."""

    def problem(self, value) -> str | None:
        values = value.values() if isinstance(value, dict) else [value]
        if any(self.rule.problem(v) for v in values):
            return f"{self.rule.describe()}, or a mapping {{layer: value}}"
        return None


@dataclass(frozen=True)
class Mapping(Wrapped):
    """A mapping ``{name: value}`` (null: none), each value by ``rule``."""

    def problem(self, value) -> str | None:
        if value is None or isinstance(value, dict) and not any(self.rule.problem(v) for v in value.values()):
            return None
        return f"a mapping {{layer: {self.rule.describe()}}}"


@dataclass(frozen=True)
class Pair(Wrapped):
    """Two values by ``rule``, the first not above the second when ``ordered`` (null: the default)."""

    ordered: bool = False
    what: str = "[low, high]"

    def problem(self, value) -> str | None:
        if value is None:
            return None
        if isinstance(value, (list, tuple)) and len(value) == 2 and not any(self.rule.problem(v) for v in value) \
                and not (self.ordered and float(value[0]) > float(value[1])):
            return None
        order = ", the first not above the second" if self.ordered else ""
        return f"a pair {self.what}, each {self.rule.describe()}{order}"


POSITIVE = Number(0, low_open=True)
AMP = Choice(("bf16", "fp32", False))  # bfloat16 autocast on CUDA, or none


# ---------------------------------------------------------------------------------------
# the schema: one dataclass per section, one field per key with its one default, its rule
# and the example its error message shows. The defaults are the recipe of the shipped configs
# (training/configs/*.yaml); a config that leaves a key out gets it from here, and the run's
# config.yaml and checkpoints record every value (resolve_config).


@dataclass(frozen=True)
class Common:
    """The keys of both ``train`` and ``compress``."""

    batch_size: int = key(8, Number(1, integer=True))
    lr: float = key(0.003, POSITIVE)
    weight_decay: float = key(0.0001, Number(0))
    warmup: float = key(0.02, Number(0, 1, high_open=True))  # fraction of the run
    eval_every: int = key(10, Number(1, integer=True))
    seed: int = key(0, Number(0, integer=True))
    amp: object = key("bf16", AMP)


@dataclass(frozen=True)
class Train(Common):
    """``train:`` -- the dense teacher's run."""

    epochs: int = key(300, Number(1, integer=True))


@dataclass(frozen=True)
class Schedule:
    """``compress.schedule:`` -- fractions of ``prune_epochs`` (a oneshot takes ``type`` and ``start`` only)."""

    type: str = key("cubic", Choice(("cubic", "oneshot")))
    start: float = key(0.0, Number(0, 1))
    end: float = key(0.6, Number(0, 1))
    initial: float = key(0.0, Number(0, 1, high_open=True))


ONESHOT_KEYS = ("type", "start")


@dataclass(frozen=True)
class Distill:
    """``compress.distill:`` (sentei.training.distill.Distillation has the same defaults)."""

    enabled: bool = key(True, Choice((True, False)))
    alpha: float = key(0.7, Number(0, 1))
    temperature: float = key(2.0, POSITIVE)
    hint_layer: object = key(None, Nullable(Number(0, integer=True)), 3)
    hint_weight: float = key(0.0, Number(0))


@dataclass(frozen=True)
class Compress(Common):
    """``compress:`` -- pruning, distillation and QAT of a teacher."""

    lr: float = key(0.001, POSITIVE)
    name: object = key(None, Text(nullable=True), "sentei-camvid-fw90")
    scheme: str = key("filterwise", Choice(SCHEMES))
    sparsity: float = key(0.9, Number(0, 1, high_open=True))
    overrides: object = key(None, Mapping(Number(0, 1, high_open=True)), "{conv1: 0.0}")
    group_size: int = key(144, Number(1, integer=True))
    group_layout: str = key("flat", Choice(GROUP_LAYOUTS), "channels")
    ranking: str = key("global", Choice(RANKINGS), "layer")
    n: int = key(2, Number(1, integer=True))
    m: int = key(4, Number(2, integer=True))
    patterns: int = key(8, Number(1, 126, integer=True))  # pattern: library size
    pattern_size: int = key(4, Number(1, 9, integer=True))  # pattern: entries kept of a 3x3 kernel
    clusters: int = key(8, Number(1, integer=True))  # smallworld: groups of filters and input channels
    rewire: float = key(0.1, Number(0, 1))  # smallworld: probability of a long link
    schedule: dict = key({}, Section(Schedule), "{type: cubic, start: 0.0, end: 0.6}")
    prune_epochs: int = key(500, Number(0, integer=True))
    qat_epochs: int = key(120, Number(1, integer=True))
    qat_lr: float = key(0.0002, POSITIVE)
    distill: dict = key({}, Section(Distill), "{enabled: true, alpha: 0.7}")
    weight_bits: object = key(8, PerLayer(Number(2, 8, integer=True)))
    act_bits: int = key(8, Number(8, 16, integer=True))
    model_file: str = key("model.sentei", Text())
    ema: object = key(None, Nullable(Number(0, 1, high_open=True)), 0.999)  # null: no weight average
    mask_every: int = key(4, Number(1, integer=True))


@dataclass(frozen=True)
class Augment:
    """``data.augment:`` (sentei.training.data.Augment has the same defaults)."""

    scale: list = key([0.8, 1.6], Pair(POSITIVE, ordered=True, what="[min zoom, max zoom]"))
    flip: bool = key(True, Choice((True, False)))
    brightness: float = key(0.25, Number(0, 1))
    contrast: float = key(0.25, Number(0, 1))
    saturation: float = key(0.25, Number(0, 1))
    crop: object = key(None, Pair(Number(8, integer=True), what="[height, width]"), "[240, 320]")


@dataclass(frozen=True)
class Data:
    """``data:`` -- where the frames come from and how they are augmented."""

    root: object = key(None, Text(nullable=True), "/data/camvid")
    train_split: str = key("train", Text())
    val_split: str = key("val", Text())
    synthetic_frames: int = key(24, Number(1, integer=True))
    augment: dict = key({}, Section(Augment), "{scale: [0.8, 1.6], flip: true}")


SCHEMAS = {"train": Train, "compress": Compress, "data": Data}

# what the code took for an absent key before the schema (issue 28), where that differs from the
# schema's default: a run or checkpoint written before it that leaves the key out was made with
# this value (resolve_config(..., legacy=True) reads them so)
LEGACY = {"train": {"epochs": 200, "eval_every": 5},
          "compress": {"eval_every": 5, "group_size": 8, "prune_epochs": 100, "qat_epochs": 30,
                       "schedule": {"end": 0.5}}}


def defaults(schema) -> dict:
    """Every key of ``schema`` at its default (sections filled in)."""
    return fill({}, schema)


def fill(values: dict | None, schema, legacy: dict | None = None) -> dict:
    """``values`` (a checked section) with every key it leaves out at its default (``legacy``:
    these instead); a new dict, the given one untouched. A oneshot schedule keeps only its keys."""
    out = fill_keys(values, schema, legacy)
    schedule = out.get("schedule")
    if schema is Compress and isinstance(schedule, dict) and schedule["type"] == "oneshot":
        out["schedule"] = {k: v for k, v in schedule.items() if k in ONESHOT_KEYS}
    return out


def resolve_config(cfg: dict, section: str, legacy: bool = False) -> dict:
    """``cfg`` (checked by :func:`check_config`) with its ``data`` and ``section`` sections holding
    every key, the ones it leaves out at the schema's defaults (``legacy``: at what the code took
    before the schema, for a run or checkpoint written then); a new dict."""
    out = copy.deepcopy(cfg)
    for name in ("data", section):
        out[name] = fill(cfg.get(name), SCHEMAS[name], LEGACY.get(name) if legacy else None)
    return out


def settings(section: dict, name: str, legacy: bool = False) -> dict:
    """One section (``train``, ``compress``, ``data``) at full keys: a checkpoint's ``compress``."""
    return fill(section, SCHEMAS[name], LEGACY.get(name) if legacy else None)


COMMON = table(Common)
TRAIN = table(Train)
SCHEDULE = table(Schedule)
DISTILL = table(Distill)
COMPRESS = table(Compress)
AUGMENT = table(Augment)
DATA = table(Data)
SECTIONS = {"train": TRAIN, "compress": COMPRESS}


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; more is not one
TOP_LEVEL = ("name", "model", "data", "train", "compress", "command", "teacher")  # a run's config.yaml adds the last two


def _NoAliasSafeLoader():  # noqa: N802 (returns a class; "Safe" for the static scan)
    """PyYAML's safe loader without aliases: ``*name`` is refused where it appears (an alias
    bomb -- nine anchors of nine aliases -- is a few lines that expand to 10^9 entries when the
    run's metadata is written)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "an alias (*name): configs do not use anchors "
                                                  "and aliases; write the values out", mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_config(path) -> dict:
    """A YAML (or JSON) config file as a dict; one-line errors for what is not one."""
    import yaml

    from sentei.host.modelfile.schema import read_regular_file

    path = existing_file(path, "config", "a YAML file")
    data = read_regular_file(path, MAX_CONFIG_BYTES, "config", "a YAML file")
    try:
        cfg = yaml.load(data.decode("utf-8"), Loader=_NoAliasSafeLoader())  # noqa: S506 (a safe loader, aliases refused)
    except UnicodeDecodeError:
        raise SenteiError(f"config {path}: not a text file (not UTF-8); pass a YAML config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or exc.__class__.__name__
        raise SenteiError(f"config {path}: not valid YAML{where} ({what}); fix the file") from None
    except RecursionError:
        raise SenteiError(f"config {path}: nested too deeply to be a config; fix the file") from None
    except ValueError:  # an integer of thousands of digits
        raise SenteiError(f"config {path}: a number too long to be a setting; fix the file") from None
    if not isinstance(cfg, dict):
        raise SenteiError(f"{path}: a config must be a mapping with model/data/train sections")
    unknown = sorted(str(k) for k in cfg if k not in TOP_LEVEL)
    if unknown:
        raise SenteiError(f"config {path}: unknown top-level key {unknown[0]!r}; the known keys are "
                          f"{', '.join(sorted(TOP_LEVEL))}")
    return cfg


def existing_file(path, what: str, example: str) -> Path:
    """``path``, refused when it is missing or a folder (``what``: config, checkpoint; pass ``example``)."""
    path = Path(path)
    if not path.exists():
        raise SenteiError(f"{what} not found: {path}")
    if path.is_dir():
        raise SenteiError(f"{what} {path}: a folder; pass {example}")
    return path


def check_config(cfg: dict, section: str, where="config") -> None:
    """Refuse ``cfg`` for a run of ``section`` (``train`` or ``compress``) before any work.

    ``where`` names the config in the messages (its path). ``train`` needs a ``model`` section;
    ``compress`` takes the teacher's.
    """
    if section == "train" and not isinstance(cfg.get("model"), dict):
        raise SenteiError(f"{where}: no 'model:' section (num_classes, input, layers); a teacher config needs "
                          f"one, e.g. training/configs/camvid-fcn7.yaml")
    for name in ("model", "data", section):
        if name in cfg and cfg[name] is None:  # `data:` with nothing under it: an empty section
            cfg[name] = {}
        if cfg.get(name) is not None and not isinstance(cfg[name], dict):
            raise SenteiError(f"{where}: '{name}:' must be a mapping of keys, not {cfg[name]!r}")
    check_keys(cfg.get("data") or {}, DATA, f"{where}: data")
    check_keys(cfg.get(section) or {}, SECTIONS[section], f"{where}: {section}")
    _check_names(cfg, section, where)
    if section == "train":  # the network within the model format's limits, before anything is built
        from sentei.training.models import check_model_config

        check_model_config(cfg["model"], f"{where}: model")
    if section == "compress":
        comp = cfg.get("compress") or {}
        from sentei.training.pruning import make_schedule  # (torch: compress has it; registration does not)

        try:  # the schedule's own rules (a oneshot takes only start; cubic needs start < end): the
            # given keys over the schema's (fill drops a oneshot's extra keys, which are refused here)
            make_schedule({**fill(comp, Compress)["schedule"], **(comp.get("schedule") or {})})
        except SenteiError as exc:
            raise SenteiError(f"{where}: compress.schedule: {exc}") from None
        if comp.get("scheme") == "nm" and not int(comp.get("n", 2)) < int(comp.get("m", 4)):
            raise SenteiError(f"{where}: compress n {comp.get('n', 2)}, m {comp.get('m', 4)}: N:M needs N < M, "
                              f"e.g. n: 2, m: 4")


def _check_names(cfg: dict, section: str, where: str) -> None:
    """The names a run writes into its model file, refused before the run, not after it
    (the model file's rules: sentei.host.modelfile.schema.check_name)."""
    from sentei.errors import ModelFormatError
    from sentei.host.modelfile.schema import CLASS_NAME_PATTERN, CLASS_NAME_RULE, check_name

    checks = [(cfg.get("name"), "name"), ((cfg.get(section) or {}).get("name"), f"{section}.name")]
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    layers = model.get("layers") if isinstance(model.get("layers"), list) else []
    checks += [(layer.get("name"), f"model.layers[{n}].name") for n, layer in enumerate(layers)
               if isinstance(layer, dict) and "name" in layer]
    try:
        for value, key in checks:
            if value is not None:
                check_name(value, key)
        for c, value in enumerate(model.get("class_names") or []):
            check_name(value, f"model.class_names[{c}]", CLASS_NAME_PATTERN, CLASS_NAME_RULE)
    except ModelFormatError as exc:
        raise SenteiError(f"{where}: {exc}") from None


def check_keys(values: dict, keys: dict, where: str) -> None:
    """Every key of ``values`` known in ``keys`` (``KEY: (rule, example)``) and allowed by its rule."""
    unknown = sorted(str(k) for k in set(values) - set(keys))
    if unknown:
        raise SenteiError(f"{where}: unknown key {unknown[0]!r}; the known keys are {', '.join(sorted(keys))}")
    for key, value in values.items():
        rule, example = keys[key]
        problem = rule.problem(value)
        if problem:
            raise SenteiError(f"{where}.{key} {value!r} must be {problem}, e.g. {example}")
        if isinstance(value, str) and hasattr(rule, "parse"):
            values[key] = rule.parse(value)  # lr: 1e-3 (YAML: a string) -> 0.001
        if isinstance(rule, Section):
            values[key] = value if value is not None else {}  # `distill:` with nothing under it
            check_keys(values[key], rule.keys, f"{where}.{key}")


# what a resumed run may take from its new command line instead of its own: where the data and
# the checkpoints lie (a run carried to another machine), the command line itself, and how often
# val is scored (which changes the choice of best.pt, not the training)
RESUME_FREE = {("command",), ("data", "root"), ("teacher", "path"), ("from", "path"),
               ("train", "eval_every"), ("compress", "eval_every")}
_UNSET = "(not set)"


def first_difference(run: dict, new: dict, path: tuple = ()):
    """The first key (a path of keys, in ``run``'s order) where the config a run was started with and
    a new one differ, leaving out :data:`RESUME_FREE`; ``(path, run's value, new value)``, or None."""
    if path in RESUME_FREE:
        return None
    if isinstance(run, dict) and isinstance(new, dict):
        for key in [*run, *(k for k in new if k not in run)]:
            found = first_difference(run.get(key, _UNSET), new.get(key, _UNSET), (*path, key))
            if found is not None:
                return found
        return None
    sequence = (list, tuple)  # a YAML list and a parsed pair are the same value
    if isinstance(run, sequence) and isinstance(new, sequence) and len(run) == len(new):
        for i, (a, b) in enumerate(zip(run, new)):
            found = first_difference(a, b, (*path, i))
            if found is not None:
                return found
        return None
    return None if run == new else (path, run, new)


def option(section: str, key: str):
    """argparse type for the option that sets ``key`` of ``section``: the config's rule for it."""
    rule, example = SECTIONS[section][key]
    return as_option(getattr(rule, "rule", rule), example)  # the number itself: an option is never null
