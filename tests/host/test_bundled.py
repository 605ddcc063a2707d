"""The bundled models say what they are: every ``models.json`` entry names a file that is
there and of its kind, and the figures it publishes (README, ``sentei models``) are the
model file's own and its details JSON's -- so a re-bundled model cannot leave a stale
number behind."""
import json

import pytest

from sentei.host.modelfile import schema as fmt
from sentei.host.modelfile import bundled

MODELS = bundled.bundled_models()
pytestmark = pytest.mark.skipif(not MODELS, reason="no model is bundled")


def details(entry) -> dict:
    name = entry.get("metrics", {}).get("details")
    return json.loads((bundled.BUNDLED / name).read_text()) if name else {}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_entry_names_a_file_of_its_kind(name):
    entry = MODELS[name]
    path = bundled.BUNDLED / entry["file"]
    assert path.is_file(), f"{name}: {entry['file']} is not bundled"
    assert bundled.file_kind(path) == entry["kind"]
    if "checkpoint" in entry:
        assert MODELS[entry["checkpoint"]]["kind"] == "torch-checkpoint"
    for key in ("config", "log", "qat_checkpoint"):  # what its details JSON points at
        if key in details(entry):
            assert (bundled.BUNDLED / details(entry)[key]).is_file(), f"{name}: {key} missing"


def model_files():
    return sorted(n for n, e in MODELS.items() if e["kind"] == "model-file")


@pytest.mark.parametrize("name", model_files())
def test_published_figures_are_the_model_files(name):
    entry, info = MODELS[name], details(MODELS[name])
    d = fmt.describe(fmt.load(bundled.BUNDLED / entry["file"]))
    pruned = [layer for layer in d["layers"] if layer["scheme"] != "dense"]
    metrics = entry["metrics"]
    assert metrics["total_sparsity"] == pytest.approx(d["totals"]["sparsity"])
    assert metrics["weight_bytes"] == d["totals"]["weight_bytes_packed"]
    assert metrics["pruned_layer_sparsity_min"] == pytest.approx(min(layer["sparsity"] for layer in pruned))
    assert metrics["val_miou"] == info["eval"]["miou"] and info["eval"]["backend"] == metrics["backend"] == "emu"
    assert d["metadata"]["val"]["miou"] == pytest.approx(metrics["val_miou"], abs=5e-4)  # the run's own figure
    teacher = MODELS[info["teacher"]]
    assert metrics["val_miou_teacher"] == teacher["metrics"]["val_miou"]
    if "miou_below_teacher_val" in info:  # the default's claim against the issue's target
        gap = 100 * (metrics["val_miou_teacher"] - metrics["val_miou"])
        assert info["miou_below_teacher_val"] == round(gap, 2)
        assert info["target_met"] == (gap <= info["target_below_teacher_val"])


def test_default_is_the_issues_model():
    """Filter-wise, >= 90 % zeros with exactly K nonzeros in every filter of every pruned layer,
    8-bit weights and activations, distilled from the bundled teacher."""
    name = bundled.default_model_name()
    entry = MODELS[name]
    assert entry["kind"] == "model-file"
    d = fmt.describe(fmt.load(bundled.BUNDLED / entry["file"]))
    pruned = [layer for layer in d["layers"] if layer["scheme"] != "dense"]
    assert pruned and {layer["scheme"] for layer in pruned} == {"filterwise"}
    for layer in pruned:
        assert layer["sparsity"] >= 0.9 and layer["nnz_min"] == layer["nnz_max"] == layer["k_nonzero"], layer["name"]
    assert {layer["weight_bits"] for layer in d["layers"]} == {8}
    assert {layer["out_bits"] for layer in d["layers"][:-1]} == {8}
    compress = d["metadata"]["config"]["compress"]
    assert compress["distill"]["enabled"] and details(entry)["teacher"] == "teacher"
    assert MODELS["teacher"]["kind"] == "torch-checkpoint"


def test_readme_quotes_the_bundled_figures():
    """The README's table of shipped models quotes each bundled model's val mIoU as it stands."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The shipped model", 1)[1].split("\n## ", 1)[0]
    for name, entry in MODELS.items():
        if entry["kind"] == "model-file" or name == "teacher":
            row = next((line for line in section.splitlines() if line.startswith(f"| `{name}`")), None)
            assert row is not None, f"README lists no {name}"
            assert f"{100 * entry['metrics']['val_miou']:.2f}" in row, f"README's {name} figure is stale"
