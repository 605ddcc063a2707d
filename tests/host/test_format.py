"""The model file: round trip, the weight blob layout, and the validator refusing each corruption."""
import json
import struct
import zlib

import numpy as np
import pytest

from sentei.errors import ModelFormatError
from sentei.host.modelfile import schema as F
from sentei.host.modelfile.synthetic import LayerSpec, random_model

from .conftest import patch_header


@pytest.fixture
def model():
    return random_model(seed=3, height=20, width=28)


def test_round_trip_is_identical(model, tmp_path):
    path = F.save(model, tmp_path / "m.sentei")
    back = F.load(path)
    assert F.to_bytes(back) == path.read_bytes()
    assert back.header() == model.header()
    for a, b in zip(model.layers, back.layers):
        for key in F.LAYER_ARRAYS:
            x, y = getattr(a, key), getattr(b, key)
            assert (x is None and y is None) or (np.array_equal(x, y) and y.dtype == F.LAYER_ARRAYS[key])


def test_file_layout_is_the_documented_one(model):
    data = F.to_bytes(model)
    assert data[:8] == b"SENTEI\x1a\n"
    version, hlen = struct.unpack_from("<II", data, 8)
    assert version == 1
    header = json.loads(data[16:16 + hlen])
    base = (16 + hlen + 63) // 64 * 64
    entry = header["arrays"]["layers.0.values"]
    raw = data[base + entry["offset"]: base + entry["offset"] + entry["nbytes"]]
    assert np.array_equal(np.frombuffer(raw, np.int8).reshape(entry["shape"]), model.layers[0].values)
    assert zlib.crc32(raw) == entry["crc32"]
    assert len(data) % 64 == 0


def test_save_is_atomic_and_leaves_no_temp_file(model, tmp_path):
    F.save(model, tmp_path / "m.sentei")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sentei"]


def test_pack_dense_pads_unbalanced_filters_with_explicit_zeros():
    w = np.zeros((3, 2, 1, 1), dtype=np.int32)
    w[0, 0] = 5
    w[1, :] = [[[-3]], [[7]]]
    values, indices = F.pack_dense(w)
    assert values.shape == (3, 2)  # K = the largest count (filter 1 has 2)
    assert values.tolist() == [[5, 0], [-3, 7], [0, 0]]
    assert indices.tolist() == [[0, 1], [0, 1], [0, 1]]


def test_dense_weights_inverts_packing(model):
    layer = model.layers[1]
    values, indices = F.pack_dense(layer.dense_weights(), layer.k_nonzero)
    assert np.array_equal(values, layer.values) and np.array_equal(indices, layer.indices)


def test_weight_blob_words(model):
    blob = F.weight_blob(model)
    assert blob.dtype == np.uint32
    assert blob[0] == 0x544E4553 and blob[0].tobytes() == b"SENT"
    assert blob[1] == len(model.layers)
    assert blob[2:5].view(np.int32).tolist() == list(model.input.mul)
    assert blob[5:8].view(np.int32).tolist() == list(model.input.add)
    assert blob[8] == model.input.shift
    offsets = blob[9:9 + len(model.layers)].tolist()
    assert offsets == F.blob_offsets(model)
    for off, layer in zip(offsets, model.layers):
        c, k = layer.out_channels, layer.k_nonzero
        assert np.array_equal(blob[off:off + c].view(np.int32), layer.bias)
        entries = blob[off + 3 * c: off + 3 * c + c * k].reshape(c, k)
        assert np.array_equal((entries & 0xFF).astype(np.uint8).view(np.int8), layer.values)
        assert np.array_equal(entries >> 8, layer.indices)
    last = model.layers[-1]
    assert blob.size == offsets[-1] + 3 * last.out_channels + last.out_channels * last.k_nonzero
    assert np.all(blob[offsets[-1] + last.out_channels: offsets[-1] + 2 * last.out_channels] == 1)  # logits mult


def test_describe_counts(model):
    facts = F.describe(model)
    layer = model.layers[0]
    row = facts["layers"][0]
    c, h, w = model.shapes()[1]
    assert row["macs_dense"] == c * h * w * 27 and row["macs_executed"] == c * h * w * layer.k_nonzero
    assert row["weight_bytes_dense"] == c * 27  # 8-bit
    assert row["index_bits"] == 5  # 27 positions
    assert row["nnz_min"] == row["nnz_max"] == layer.k_nonzero


# --------------------------------------------------------------------------------------
# the validator: every kind of corruption, each with the field named


def _layer(i, **changes):
    def mutate(h):
        h["layers"][i].update(changes)
    return mutate


@pytest.mark.parametrize("mutate, field", [
    (lambda h: h.update(format="other"), "format"),
    (lambda h: h.update(num_classes=12), "class_names"),
    (lambda h: h["input"].update(shift=40), "input.shift"),
    (lambda h: h["input"].update(mul=[1, 2]), "input.mul"),
    (lambda h: h["output"].update(scale=-1.0), "output.scale"),
    (lambda h: h["output"].pop("upsample"), "output.upsample"),
    (_layer(0, kernel=5), "kernel"),
    (_layer(0, stride=3), "stride"),
    (_layer(0, weight_bits=9), "weight_bits"),
    (_layer(0, act="sigmoid"), "act"),
    (_layer(1, in_channels=7), "in_channels"),
    (_layer(0, k_nonzero=3), "k_nonzero"),
    (_layer(0, type="pool"), "type"),
    (lambda h: h["arrays"]["layers.0.bias"].update(crc32=1), "crc32"),
    (lambda h: h["arrays"]["layers.0.bias"].update(dtype="<f4"), "dtype"),
    (lambda h: h["arrays"].pop("layers.1.indices"), "layers.1.indices"),
])
def test_header_corruptions_are_named(model, mutate, field):
    bad = patch_header(F.to_bytes(model), mutate)
    with pytest.raises(ModelFormatError, match=field.replace(".", r"\.").replace("[", r"\[")):
        F.from_bytes(bad)


def test_truncated_and_padded_files(model):
    data = F.to_bytes(model)
    for cut in (0, 7, 15, 100, len(data) - 64, len(data) - 1):
        with pytest.raises(ModelFormatError):
            F.from_bytes(data[:cut])
    with pytest.raises(ModelFormatError, match="file length"):
        F.from_bytes(data + b"\0" * 64)


def test_wrong_magic_and_version(model):
    data = F.to_bytes(model)
    with pytest.raises(ModelFormatError, match="magic"):
        F.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ModelFormatError, match="version 2"):
        F.from_bytes(data[:8] + struct.pack("<I", 2) + data[12:])


def test_not_json_header(model):
    data = bytearray(F.to_bytes(model))
    data[16] = 0xFF
    with pytest.raises(ModelFormatError, match="JSON"):
        F.from_bytes(bytes(data))


def test_unequal_k_is_refused(model):
    layer = model.layers[1]
    layer.indices = layer.indices[:, :-1]
    with pytest.raises(ModelFormatError, match=r"indices: shape .* \(K must be equal for every filter\)"):
        F.validate(model)


def test_index_out_of_range_is_refused(model):
    model.layers[0].indices[2, -1] = 27
    with pytest.raises(ModelFormatError, match=r"layers\[0\] \(conv1\)\.indices: position 27 out of range"):
        F.validate(model)


def test_repeated_index_is_refused(model):
    idx = model.layers[0].indices
    idx[1, 1] = idx[1, 0]
    with pytest.raises(ModelFormatError, match="filter 1 has repeated or unsorted positions"):
        F.validate(model)


def test_value_outside_weight_bits_is_refused():
    model = random_model(seed=1, specs=(LayerSpec(4, weight_bits=4),))
    model.layers[0].values[0, 0] = 8  # 4-bit range is [-8, 7]
    with pytest.raises(ModelFormatError, match=r"values: .* exceed 4-bit range \[-8, 7\]"):
        F.validate(model)


def test_accumulator_overflow_is_refused(model):
    model.layers[0].bias[0] = 2**31 - 1
    with pytest.raises(ModelFormatError, match="overflow the 32-bit accumulator"):
        F.validate(model)


def test_shapes_that_do_not_chain_are_refused():
    model = random_model(seed=0, height=4, width=4, specs=(LayerSpec(4, stride=2, padding=0),
                                                           LayerSpec(4, padding=0)))
    with pytest.raises(ModelFormatError, match="output size .* is empty"):
        F.validate(model)


def test_requant_ranges_and_logits_position(model):
    model.layers[0].mult[0] = -1
    with pytest.raises(ModelFormatError, match="mult"):
        F.validate(model)
    model.layers[0].mult[0] = 1
    model.layers[0].shift[0] = 63
    with pytest.raises(ModelFormatError, match="shift"):
        F.validate(model)
    model.layers[0].shift[0] = 1
    model.layers[0].act = "logits"
    with pytest.raises(ModelFormatError, match="exactly the last layer"):
        F.validate(model)


def test_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "frame.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelFormatError, match=r"frame\.png: magic"):
        F.load(path)
    with pytest.raises(ModelFormatError, match="directory"):
        F.load(tmp_path)


def test_written_files_get_a_normal_mode(model, tmp_path):
    path = F.save(model, tmp_path / "m.sentei")
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    path.chmod(0o640)
    F.save(model, path)
    assert path.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode


def test_writer_refuses_what_the_reader_would(model, tmp_path):
    """validate() (shared by save and load) caps the channels like the reader does."""
    layer = model.layers[0]
    layer.out_channels = 5000
    with pytest.raises(ModelFormatError, match=r"out_channels: 5000 is outside \[1, 4096\]"):
        F.save(model, tmp_path / "m.sentei")
    assert not (tmp_path / "m.sentei").exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: setattr(m.input, "mul", (2**31, 1, 1)), r"input.mul: \[2147483648, 1, 1\] must be 32-bit signed"),
    (lambda m: setattr(m.input, "add", (0, -2**31 - 1, 0)), r"input.add: .* must be 32-bit signed"),
    (lambda m: setattr(m.input, "height", 9000), r"input: 9000x32 is outside 1..8192"),
    (lambda m: setattr(m, "output_scale", float("inf")), r"output.scale: inf must be a positive finite number"),
], ids=["mul", "add", "height", "scale"])
def test_what_the_reader_refuses_the_writer_refuses_too(change, message, tmp_path):
    """A model that saves also loads: the int32 input constants (which the weight blob would wrap),
    the frame size and a finite output scale are checked on save as on load."""
    model = random_model(0, 24, 32)
    change(model)
    with pytest.raises(ModelFormatError, match=message):
        F.save(model, tmp_path / "m.sentei")
    assert not (tmp_path / "m.sentei").exists()


def test_a_logits_layer_may_say_any_out_bits(tmp_path):
    """out_bits is ignored for logits (always int32): a writer that records 32 there (the QAT
    network's IntLayer does) writes a file that loads."""
    model = random_model(0, 24, 32)
    model.layers[-1].out_bits = 32
    F.save(model, tmp_path / "m.sentei")
    assert F.load(tmp_path / "m.sentei").layers[-1].out_bits == 32


@pytest.mark.parametrize("scheme", ["pattern", "smallworld"])
def test_the_balanced_structured_schemes_are_named_in_the_file(model, tmp_path, scheme):
    """pattern and smallworld (issue 30) are filter-wise balanced: the file says which made a layer;
    the K per filter is what the accelerator reads."""
    assert scheme in F.SCHEMES
    model.layers[1].scheme = scheme
    back = F.load(F.save(model, tmp_path / "m.sentei"))
    assert back.layers[1].scheme == scheme and back.layers[1].k_nonzero == model.layers[1].k_nonzero
    assert F.describe(back)["layers"][1]["scheme"] == scheme
