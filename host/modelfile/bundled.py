"""Bundled models: the trained models that ship inside the package.

``host/bundled/models.json`` lists them::

    {"default": "<name>",
     "models": {"<name>": {"file": "<file beside models.json>",
                           "kind": "model-file" | "torch-checkpoint",
                           "description": "...", "metrics": {...}}}}

A ``model-file`` is a ``.sentei`` file (runs on every engine); a ``torch-checkpoint`` (the
dense teacher) runs only with ``--backend torch`` and needs the ``train`` extra. Every
command's ``--model`` takes a path or one of these names; without ``--model`` the default.
A model file's entry may name, under ``"checkpoint"``, the bundled quantization-aware
checkpoint it was exported from: where a command wants a checkpoint (``--backend torch``),
the model file's name (or the default) stands for that checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

from sentei.errors import SenteiError

BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
MANIFEST = BUNDLED / "models.json"


def manifest(path: Path | None = None) -> dict:
    """The parsed ``models.json`` (``path``, default the package's; an empty registry when none is bundled)."""
    path = MANIFEST if path is None else Path(path)
    if not path.exists():
        return {"default": None, "models": {}}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def bundled_models() -> dict[str, dict]:
    """Name -> entry (with ``path`` filled in) for every bundled model."""
    entries = {}
    for name, entry in manifest().get("models", {}).items():
        entries[name] = dict(entry, path=str(BUNDLED / entry["file"]))
    return entries


def default_model_name() -> str | None:
    return manifest().get("default")


def file_kind(path: Path) -> str:
    """``model-file`` or ``torch-checkpoint``, from the file's first bytes: the model file's magic,
    or torch.save's zip archive; the name where they say neither (a folder, an empty or
    unreadable file, anything else -- the reader then says what is wrong)."""
    from sentei.host.modelfile.schema import MAGIC

    head = b""
    try:
        if path.is_file():  # a FIFO would block here until a writer came, a device answer forever
            with open(path, "rb") as fh:
                head = fh.read(len(MAGIC))
    except OSError:
        pass
    if head == MAGIC:
        return "model-file"
    if head[:4] == b"PK\x03\x04":  # torch.save's archive (a bare pickle could be anything: the name decides)
        return "torch-checkpoint"
    return "torch-checkpoint" if path.suffix in (".pt", ".pth") else "model-file"


def resolve(name_or_path: str | Path | None, kind: str | None = None) -> tuple[Path, str]:
    """``(path, kind)`` of a bundled name or a file path; ``None`` means the default model."""
    models = bundled_models()
    if name_or_path is None:
        name_or_path = default_model_name()
        if name_or_path is None:
            raise SenteiError("no trained model is bundled with this install; pass --model PATH "
                              "(a .sentei file from `sentei export`)")
    key = str(name_or_path)
    if key in models:
        entry = models[key]
        path, found_kind = Path(entry["path"]), entry["kind"]
    else:
        path = Path(key)
        if not path.exists():
            known = ", ".join(sorted(models)) or "none bundled"
            raise SenteiError(f"model not found: {key} is neither a file nor a bundled model "
                              f"(bundled: {known}; `sentei models` lists them)")
        found_kind = file_kind(path)
    if kind == "torch-checkpoint" and found_kind == "model-file" and models.get(key, {}).get("checkpoint") in models:
        linked = models[models[key]["checkpoint"]]  # the QAT checkpoint this model file was exported from
        path, found_kind = Path(linked["path"]), linked["kind"]
    if kind is not None and found_kind != kind:
        if found_kind == "torch-checkpoint":
            raise SenteiError(f"{key} is a PyTorch checkpoint: it runs only with --backend torch "
                              f"(or export it: sentei export)")
        checkpoints = ", ".join(n for n, e in sorted(models.items()) if e["kind"] == "torch-checkpoint")
        raise SenteiError(f"{key} is a model file, not a PyTorch checkpoint: --backend torch runs a .pt "
                          f"checkpoint{f' or a bundled one ({checkpoints})' if checkpoints else ''}; "
                          f"run the model file with --backend emu")
    return path, found_kind


def resolve_model(name_or_path: str | Path | None = None) -> Path:
    """Path of a model file (``.sentei``) given a bundled name or a path."""
    return resolve(name_or_path, kind="model-file")[0]


def load_model(name_or_path=None):
    """Load and validate a model file given a bundled name, a path, or None (the default)."""
    from sentei.host.modelfile import schema

    if hasattr(name_or_path, "layers"):
        return name_or_path
    return schema.load(resolve_model(name_or_path))


def model_file(arg):
    """The file ``--model`` names (a path or a bundled name; None: the default), or None when it
    names none: an output must not replace the model it reads (``sentei.output_paths.check_output``'s ``inputs``)."""
    try:
        return resolve(arg)[0]
    except SenteiError:  # reported in its place, by the command's own loading
        return None
