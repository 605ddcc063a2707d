"""training/results.py: the hardware columns of the results tables (sentei perf's figures per row)."""
import pytest

from sentei.host.modelfile.synthetic import LayerSpec, random_model
from sentei.overlay import perf
from sentei.overlay.report import perf_report
from sentei.training import results


def _model():
    specs = (LayerSpec(8, stride=2, density=0.5), LayerSpec(16, density=0.2), LayerSpec(16, dilation=2, density=0.2),
             LayerSpec(4, kernel=1))
    return random_model(seed=3, height=24, width=32, specs=specs)


def test_hardware_is_what_sentei_perf_reports_and_scales_with_the_frame():
    model = _model()
    h = results.hardware(model, "zcu104")
    assert h["fits"] and h["size"] == [24, 32] and h["clock_mhz"] == 200
    assert h["frames_per_s"] == perf_report(model, "zcu104", 200.0)["frames_per_s"]
    assert h["plans"] == [p.label() for p in perf.resolve_plans(model, perf.allocate(model, "zcu104"))]
    assert all(0 < h["resources"][k]["used"] <= h["resources"][k]["limit"] for k in ("dsp", "lut"))
    big = results.hardware(model, "zcu104", (48, 64))  # the same K, four times the pixels
    assert big["size"] == [48, 64]
    assert 2.5 < h["frames_per_s"] / big["frames_per_s"] < 5.0


def test_hardware_says_why_a_model_does_not_fit():
    big = random_model(seed=0, height=4, width=4, specs=tuple(LayerSpec(4, kernel=1) for _ in range(40)))
    h = results.hardware(big, "pynqz2")
    assert not h["fits"] and "DSP48 at its cheapest" in h["why"]
    with pytest.raises(perf.DoesNotFit) as exc:
        perf.allocate(big, "pynqz2")
    assert h["needs"] == {"dsp": exc.value.used["dsp"]} and exc.value.used["dsp"] > exc.value.limits["dsp"]
    row = {"run": "big", "scheme": "filterwise", "miou": 0.5, "weight_bytes": 1,
           "all_layers": [layer.name for layer in big.layers], "k": {layer.name: 1 for layer in big.layers},
           "hardware": [h]}
    assert f"| does not fit: needs {exc.value.used['dsp']:,} DSP48 |" in results.hardware_markdown([row], None)


def test_hardware_markdown_puts_k_and_each_boards_figures_in_a_row():
    model = _model()
    rows = []
    for run, size in (("a", None), ("b", (48, 64))):
        rows.append({"run": run, "scheme": "filterwise", "miou": 0.5, "weight_bytes": 1234,
                     "all_layers": [layer.name for layer in model.layers],
                     "k": {layer.name: layer.k_nonzero for layer in model.layers},
                     "hardware": [results.hardware(model, "zcu104", size)]})
    text = results.hardware_markdown(rows, 0.6).splitlines()
    assert len(text) == 4 and "zcu104 @ 200 MHz: frames/s" in text[0]  # two sizes: each cell says its own
    assert " at 24x32 (" in text[2] and " at 48x64 (" in text[3]
    same = results.hardware_markdown(rows[:1], None).splitlines()
    assert "zcu104 @ 200 MHz, 24x32: frames/s" in same[0] and " at 24x32" not in same[2]
    k = ", ".join(str(layer.k_nonzero) for layer in model.layers)
    assert text[2].startswith(f"| a | filterwise | {k} | 50.00 | -10.00 | 1,234 |")
    assert f"| {rows[0]['hardware'][0]['frames_per_s']:.1f} at 24x32 (" in text[2]
    rows[1]["hardware"] = []
    with pytest.raises(ValueError, match="same boards"):
        results.hardware_markdown(rows, None)


def test_main_refuses_an_unknown_board_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        results.main(["RUN", "--data", "D", "--board", "zcu9000"])
    assert exc.value.code == 2 and "unknown board 'zcu9000'" in capsys.readouterr().err
