"""Run configurations: reading the YAML file, and the keys of its ``data``, ``train`` and
``compress`` sections with the values each may take.

:func:`check_config` refuses a config before a run starts (no run directory, no epoch): an
unknown key (a misspelt one would otherwise be ignored), a value of the wrong type or out of
range, a missing ``model`` section. The command line's options take the same rules
(:func:`option`). No PyTorch here: the commands register their options with it.
:func:`existing_file` refuses a missing file or a folder (configs here, checkpoints in ``train``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sentei.errors import SenteiError
from sentei.host.format import SCHEMES
from sentei.host.options import Number, as_option
from sentei.training.pruning_names import GROUP_LAYOUTS, RANKINGS  # the commands take them from here too


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple

    def problem(self, value) -> str | None:
        if any(value == v and type(value) is type(v) for v in self.values):
            return None
        return "one of " + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in self.values)


@dataclass(frozen=True)
class Text:
    """A string (``nullable``: or null)."""

    nullable: bool = False

    def problem(self, value) -> str | None:
        return None if isinstance(value, str) or (self.nullable and value is None) else "a string"


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
class Section:
    """A mapping with these keys (``KEY: (rule, example)``), all optional."""

    keys: dict

    def problem(self, value) -> str | None:
        return None if value is None or isinstance(value, dict) else "a mapping {key: value, ...}"


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

COMMON = {"batch_size": (Number(1, integer=True), 8), "lr": (POSITIVE, 0.003),
          "weight_decay": (Number(0), 0.0001), "warmup": (Number(0, 1, high_open=True), 0.02),
          "eval_every": (Number(1, integer=True), 10), "seed": (Number(0, integer=True), 0), "amp": (AMP, "bf16")}

TRAIN = dict(COMMON, epochs=(Number(1, integer=True), 300))

SCHEDULE = {"type": (Choice(("cubic", "oneshot")), "cubic"), "start": (Number(0, 1), 0.0),
            "end": (Number(0, 1), 0.6), "initial": (Number(0, 1, high_open=True), 0.0)}

DISTILL = {"enabled": (Choice((True, False)), True), "alpha": (Number(0, 1), 0.7),
           "temperature": (POSITIVE, 2.0), "hint_layer": (Nullable(Number(0, integer=True)), None),
           "hint_weight": (Number(0), 0.0)}

COMPRESS = dict(
    COMMON, name=(Text(nullable=True), "sentei-camvid-fw90"),
    scheme=(Choice(SCHEMES), "filterwise"),
    sparsity=(Number(0, 1, high_open=True), 0.9), overrides=(Mapping(Number(0, 1, high_open=True)), "{conv1: 0.0}"),
    group_size=(Number(1, integer=True), 144), group_layout=(Choice(GROUP_LAYOUTS), "channels"), ranking=(Choice(RANKINGS), "layer"), n=(Number(1, integer=True), 2), m=(Number(2, integer=True), 4),
    schedule=(Section(SCHEDULE), "{type: cubic, start: 0.0, end: 0.6}"),
    prune_epochs=(Number(0, integer=True), 500), qat_epochs=(Number(1, integer=True), 120),
    qat_lr=(POSITIVE, 0.0002), distill=(Section(DISTILL), "{enabled: true, alpha: 0.7}"),
    weight_bits=(PerLayer(Number(2, 8, integer=True)), 8), act_bits=(Number(8, 16, integer=True), 8),
    model_file=(Text(), "model.sentei"), ema=(Nullable(Number(0, 1, high_open=True)), 0.999),
    mask_every=(Number(1, integer=True), 4))

AUGMENT = {"scale": (Pair(POSITIVE, ordered=True, what="[min zoom, max zoom]"), "[0.8, 1.6]"),
           "flip": (Choice((True, False)), True), "brightness": (Number(0, 1), 0.25),
           "contrast": (Number(0, 1), 0.25), "saturation": (Number(0, 1), 0.25),
           "crop": (Pair(Number(8, integer=True), what="[height, width]"), "[240, 320]")}

DATA = {"root": (Text(nullable=True), "/data/camvid"), "train_split": (Text(), "train"),
        "val_split": (Text(), "val"), "synthetic_frames": (Number(1, integer=True), 24),
        "augment": (Section(AUGMENT), "{scale: [0.8, 1.6], flip: true}")}

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

    from sentei.host.format import read_regular_file

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

        try:  # the schedule's own rules (a oneshot takes only start; cubic needs start < end)
            make_schedule(comp.get("schedule"))
        except SenteiError as exc:
            raise SenteiError(f"{where}: compress.schedule: {exc}") from None
        if comp.get("scheme") == "nm" and not int(comp.get("n", 2)) < int(comp.get("m", 4)):
            raise SenteiError(f"{where}: compress n {comp.get('n', 2)}, m {comp.get('m', 4)}: N:M needs N < M, "
                              f"e.g. n: 2, m: 4")


def _check_names(cfg: dict, section: str, where: str) -> None:
    """The names a run writes into its model file, refused before the run, not after it
    (the model file's rules: sentei.host.format.check_name)."""
    from sentei.errors import ModelFormatError
    from sentei.host.format import CLASS_NAME_PATTERN, CLASS_NAME_RULE, check_name

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
