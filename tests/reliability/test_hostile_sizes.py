"""Sizes a file claims, bounded before anything is allocated, and hostile structure answered in
one line (issue 26, "memory and time bounded by what the input really is" and "one line and
exit 2"): model headers, configs, bench reports, label maps and images."""
from __future__ import annotations

import os
import resource
import time

import numpy as np
import pytest
from PIL import Image

from sentei.errors import ModelFormatError, SenteiError
from sentei.host.modelfile import schema as F
from sentei.host.modelfile.synthetic import LayerSpec, random_model

from .conftest import assert_one_line_error, patch_header, run_main, tiny_model, unvalidated_bytes


def _refused_fast(capsys, tmp_path, data: bytes, *fragments):
    path = tmp_path / "hostile.sentei"
    path.write_bytes(data)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    status, _, err = run_main(["segment", tmp_path / "none.png", "--model", path, "--out", tmp_path / "o",
                               "--backend", "reference"], capsys)
    elapsed = time.perf_counter() - t0
    assert_one_line_error(status, err, *fragments)
    assert elapsed < 10, f"{elapsed:.1f} s"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_small_file_claiming_huge_feature_maps(tmp_path, capsys):
    def huge(h):
        h["input"].update(height=F.MAX_INPUT_SIDE, width=F.MAX_INPUT_SIDE)
    _refused_fast(capsys, tmp_path, patch_header(F.to_bytes(tiny_model()), huge),
                  "feature map of", f"limit {F.MAX_MAP_ELEMENTS}")


def test_small_file_claiming_huge_dense_weights(tmp_path, capsys):
    wide = (LayerSpec(4096, kernel=1, density=1 / 3), LayerSpec(4096, kernel=3, density=1 / 36864))
    model = random_model(seed=0, height=8, width=8, specs=wide)
    data = unvalidated_bytes(model)
    assert len(data) < 1_000_000
    _refused_fast(capsys, tmp_path, data, "dense weights", f"limit {F.MAX_DENSE_WEIGHTS}")


def test_feature_map_limit_is_a_bound_not_an_off_by_one():
    model = tiny_model()
    largest, (h, w) = 0, (model.input.height, model.input.width)
    for layer in model.layers:  # the padded input and the output of each layer
        largest = max(largest, layer.in_channels * (h + 2 * layer.padding) * (w + 2 * layer.padding))
        h, w = layer.out_size(h, w)
        largest = max(largest, layer.out_channels * h * w)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "MAX_MAP_ELEMENTS", largest)
        F.validate(model)
        mp.setattr(F, "MAX_MAP_ELEMENTS", largest - 1)
        with pytest.raises(ModelFormatError, match="feature map"):
            F.validate(model)


def test_array_shape_whose_product_overflows(tmp_path, capsys):
    def overflow(h):
        h["arrays"]["layers.0.values"].update(shape=[2**24] * 4)
    _refused_fast(capsys, tmp_path, patch_header(F.to_bytes(tiny_model()), overflow), "nbytes")


@pytest.mark.parametrize("scale", [1e30, 2.0**41, 2.0**-41])
def test_output_scale_bounded(scale):
    model = tiny_model()
    model.output_scale = scale
    with pytest.raises(ModelFormatError, match=r"output.scale: .* \[2\^-40, 2\^40\]"):
        F.validate(model)
    model.output_scale = 2.0**40
    F.validate(model)


def _with_header_text(text: bytes) -> bytes:
    import struct
    return F.MAGIC + struct.pack("<II", F.VERSION, len(text)) + text


@pytest.mark.parametrize("text, fragment", [
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    (b'{"format": ' + b"9" * 6000 + b"}", "integer too long"),
], ids=["deep", "huge-int"])
def test_header_structure_one_line(tmp_path, capsys, text, fragment):
    path = tmp_path / "m.sentei"
    path.write_bytes(_with_header_text(text))
    status, _, err = run_main(["info", "--model", path], capsys)
    assert_one_line_error(status, err, fragment)


def test_lone_surrogate_in_a_name(tmp_path, capsys):
    data = patch_header(F.to_bytes(tiny_model()), lambda h: h["layers"][0].update(name="conv\ud800"))
    path = tmp_path / "m.sentei"
    path.write_bytes(data)
    status, _, err = run_main(["info", "--model", path], capsys)
    assert_one_line_error(status, err, "layers[0].name")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_model_from_a_device_or_fifo_refused_at_once(tmp_path, capsys, special):
    if special == "fifo":
        special = tmp_path / "fifo"
        os.mkfifo(special)
    elif not os.path.exists(special):
        pytest.skip("no /dev/zero")
    t0 = time.perf_counter()
    status, _, err = run_main(["info", "--model", special], capsys)
    assert_one_line_error(status, err, "not a regular file")
    assert time.perf_counter() - t0 < 5


def test_model_file_over_the_size_limit(tmp_path, monkeypatch):
    path = F.save(tiny_model(), tmp_path / "m.sentei")
    monkeypatch.setattr(F, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(SenteiError, match="larger than a model file may be"):
        F.load(path)


# --- configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "an alias"),
    ("model: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    ("model: {x: " + "9" * 6000 + "}\n", "a number too long"),
    ("model: {num_classes: 11}\nmetadata: {owner: x}\n", "unknown top-level key 'metadata'"),
], ids=["alias-bomb", "deep", "huge-int", "unknown-top-level"])
def test_config_structure_one_line(tmp_path, capsys, text, fragment):
    pytest.importorskip("yaml")
    pytest.importorskip("torch")
    config = tmp_path / "c.yaml"
    config.write_text(text)
    status, _, err = run_main(["train", "--config", config, "--synthetic", "--out", tmp_path / "run"], capsys)
    assert_one_line_error(status, err, fragment)
    assert not (tmp_path / "run").exists()


# --- bench reports, label maps, images -----------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ('{"schema": ' + "9" * 6000 + "}", "number too long"),
], ids=["deep", "huge-int"])
def test_bench_report_structure_one_line(tmp_path, capsys, text, fragment):
    from sentei.host.bench.report import load_report

    report = tmp_path / "r.json"
    report.write_text(text)
    with pytest.raises(SenteiError, match=fragment):
        load_report(report)


def test_label_map_bomb_refused_before_decoding(tmp_path):
    from sentei.host.data import camvid

    from .conftest import png_header_only

    path = tmp_path / "label.png"
    path.write_bytes(png_header_only(20_000, 20_000))
    with pytest.raises(SenteiError, match="too large"):
        camvid.read_label(path)


def test_float_labels_refused_not_truncated(tmp_path):
    from sentei.host.data import camvid

    path = tmp_path / "label.tif"
    Image.fromarray(np.full((4, 4), 2.7, np.float32)).save(path)
    with pytest.raises(SenteiError, match="float32 are not class numbers"):
        camvid.read_label(path)


def test_32_bit_image_with_8_bit_values_is_not_black(tmp_path):
    from sentei.host.data import preprocess

    path = tmp_path / "i32.tif"
    Image.fromarray(np.full((4, 4), 200, np.int32)).save(path)
    assert Image.open(path).mode == "I"
    assert preprocess.load_image(path).max() == 200
    assert preprocess.to_rgb8(np.full((2, 2), 40000, np.int32)).max() == 40000 >> 8  # 16-bit values: >> 8


def test_bench_report_labels_stay_text_in_markdown():
    from sentei.host.bench.report import md_text

    got = md_text("a | b\n<img src=x> [link](y) *x* \x1b[31m")
    assert "\n" not in got and "\x1b" not in got and "\\|" in got and "\\<img" in got and "\\[link\\]" in got


def test_bad_option_after_a_subcommand_points_to_its_help(capsys):
    status, _, err = run_main(["info", "--bogus"], capsys)
    assert_one_line_error(status, err, "unrecognized arguments: --bogus", "see `sentei info --help`")
