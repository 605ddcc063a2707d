"""``sentei demo``: overlays of the bundled samples, equal to the reference engine's, and the report."""

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.runtime import demo
from sentei.host.modelfile import schema, reference, synthetic
from sentei.host.data import preprocess, visualize

from .conftest import live_cli


@pytest.fixture(scope="module")
def model():
    return synthetic.random_model(seed=41, height=36, width=48)


def test_samples_are_bundled():
    samples = demo.sample_frames()
    assert len(samples) >= 3
    for path in samples:
        frame = preprocess.load_image(path)
        assert frame.shape == (360, 480, 3)
    assert (demo.SAMPLES / "README.md").read_text().count("Brostow") == 1


def test_demo_writes_overlays_equal_to_the_reference(model, tmp_path):
    lines = []
    result = demo.run_demo(tmp_path, backend="reference", model=model, echo=lines.append)
    samples = demo.sample_frames()
    assert [name for name, *_ in result.frames] == [p.name for p in samples]
    assert result.backend == "reference" and result.mean_fps > 0
    for path in samples:
        frame = preprocess.load_image(path)
        logits = reference.run(model, preprocess.prepare_frame(frame, 36, 48))
        labels = reference.labels_from_logits(model, logits, 360, 480)
        overlay = preprocess.load_image(tmp_path / f"{path.stem}_overlay.png")
        assert np.array_equal(overlay, visualize.blend(frame, labels, model.class_colors, 0.5))
        colours = preprocess.load_image(tmp_path / f"{path.stem}_labels.png")
        assert np.array_equal(colours, visualize.colorize(labels, model.class_colors))
    frame_lines = [line for line in lines if "ms end to end" in line]
    assert len(frame_lines) == len(samples)
    assert "ran in emulation" in lines[-1]
    assert "mean" in lines[-2] and "FPS" in lines[-2]


def test_demo_command(model, tmp_path, capsys):
    path = schema.save(model, tmp_path / "m.sentei")
    image = tmp_path / "frame.png"
    visualize.save_png(synthetic.random_frame(3, 30, 40), image)
    assert live_cli(["demo", "--model", str(path), "--backend", "reference", "--out", str(tmp_path / "out"),
                 "--image", str(image)]) == 0
    assert (tmp_path / "out" / "frame_overlay.png").is_file()
    out = capsys.readouterr().out
    assert "frame.png:" in out and "1 frames" in out


def test_demo_without_a_bundled_model_fails_in_one_line(monkeypatch, tmp_path):
    from sentei.host.modelfile import bundled

    monkeypatch.setattr(bundled, "MANIFEST", tmp_path / "models.json")
    with pytest.raises(SenteiError, match="no trained model is bundled") as err:
        live_cli(["demo", "--out", str(tmp_path / "out")])
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_alpha(model, tmp_path, capsys):
    """Refused while the command line is parsed (the shared --alpha of sentei.host.options), before any work."""
    with pytest.raises(SystemExit) as exc:
        live_cli(["demo", "--alpha", "2", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "argument --alpha: 2 must be a number in [0, 1], e.g. 0.5" in capsys.readouterr().err
