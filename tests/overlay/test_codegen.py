"""The code generator: the generated network configuration states the model's compile-time facts."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.modelfile.schema import blob_offsets, weight_blob
from sentei.overlay import codegen, perf, registers
from tests.overlay.csim_models import camvid_standin, odd, tiny

HLS = Path(codegen.__file__).resolve().parent / "hls"


def config_fields(header: str, index: int) -> dict:
    body = re.search(rf"struct layer{index}_config : conv_config_default \{{(.*?)\n\}};", header, re.S).group(1)
    fields = {m[0]: int(m[1]) for m in re.findall(r"static const (?:unsigned|int|long long) (\w+) = (-?\d+)", body)}
    fields.update({m[1]: m[0] for m in re.findall(r"typedef (ap_u?int<\d+>) (\w+);", body)})
    return fields


def test_dense_lane_pairs_are_stated_per_layer():
    facts = codegen.network_facts(odd(), ["d4w1xr", "d5w3x", "d10w6", "d3w5r", "d2w2x"])
    header = codegen.render(facts)["network_config.h"]

    def packed(n):
        body = re.search(rf"struct layer{n}_config : conv_config_default \{{(.*?)\n\}};", header, re.S).group(1)
        return re.search(r"static const bool packed_products = (true|false);", body).group(1) == "true"

    assert [packed(n) for n in range(5)] == [True, True, False, False, True]


def test_config_states_every_layer_fact():
    model = odd()
    facts = codegen.network_facts(model)
    files = codegen.render(facts)
    header = files["network_config.h"]
    shapes = model.shapes()
    offsets = blob_offsets(model)
    in_type = "ap_int<6>"
    for n, layer in enumerate(model.layers):
        f = config_fields(header, n)
        assert (f["cin"], f["cout"], f["kernel"], f["stride"], f["dilation"], f["padding"]) == (
            layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.dilation, layer.padding)
        assert (f["in_height"], f["in_width"]) == shapes[n][1:]
        assert (f["out_height"], f["out_width"]) == shapes[n + 1][1:]
        assert f["k_nonzero"] == layer.k_nonzero
        assert f["folds"] * f["lanes"] == layer.out_channels
        assert f["blob_offset"] == offsets[n]
        assert f["weight_bits"] == layer.weight_bits
        assert f["in_t"] == in_type
        assert layer.in_channels % f["chunk_channels"] == 0
        columns = len(perf.group_offsets(layer.kernel, layer.stride, layer.dilation, f["pixels"], f["spacing"]))
        assert f["chunks"] == columns * layer.in_channels // f["chunk_channels"]
        assert 2 ** f["bank_bits"] >= layer.kernel * f["chunk_channels"] and 2 ** f["col_bits"] >= layer.kernel
        if facts.layers[n].engine == "sparse":  # a slot is a channel word of a column
            assert 2 ** f["slot_bits"] >= layer.in_channels // f["chunk_channels"]
        else:  # a slot is a chunk of the window
            assert 2 ** f["slot_bits"] >= f["chunks"]
        assert f["pixel_iterations"] == max(f["folds"] * f["k_nonzero"], f["chunks"])
        assert f["requant_units"] * f["requant_span"] >= f["lanes"] and f["requant_span"] <= f["k_nonzero"]
        assert f["sum_t"] == f"ap_int<{perf.sum_bits(model, n)}>" and perf.sum_bits(model, n) < 32
        in_type = f["out_t"]
    # relu 4-bit after linear 6-bit etc.: the types follow the activation and width
    assert config_fields(header, 0)["out_t"] == "ap_int<6>"
    assert config_fields(header, 1)["out_t"] == "ap_uint<8>"
    assert config_fields(header, 3)["out_t"] == "ap_int<4>"
    assert config_fields(header, 4)["out_t"] == "ap_int<32>"
    assert (config_fields(header, 3)["out_min"], config_fields(header, 3)["out_max"]) == (-8, 7)
    assert f"#define SENTEI_BLOB_WORDS {weight_blob(model).size}\n" in header
    assert "#define SENTEI_FRAME_WORDS 328 " in header  # ceil(19*23*3/4)


def test_default_lanes_are_largest_divisor_up_to_8():
    model = odd()  # Cout 6, 12, 10, 10, 5
    assert [p.lanes for p in codegen.default_lanes(model)] == [6, 6, 5, 5, 5]
    assert [p.lanes for p in codegen.default_lanes(tiny())] == [8, 8, 8, 8, 1]
    assert {p.engine for p in codegen.default_lanes(tiny())} == {"sparse"}


def test_iterations_follow_k_not_fan_in():
    model = tiny()
    facts = codegen.network_facts(model, lanes=[2, 4, 8, 16, 11])
    doc = json.loads(codegen.render(facts)["network.json"])
    for f, layer, (_, ho, wo) in zip(doc["layers"], model.layers, model.shapes()[1:]):
        assert f["iterations"] == ho * wo * (layer.out_channels // f["lanes"]) * layer.k_nonzero
    assert [f["lanes"] for f in doc["layers"]] == [2, 4, 8, 16, 11]


def test_explicit_plans_are_checked_per_layer():
    model = tiny()
    facts = codegen.network_facts(model, lanes=[3, 5, "d7w4", 8, 11])  # lanes need not divide Cout
    assert [f.folds for f in facts.layers] == [-(-layer.out_channels // p) for layer, p in
                                               zip(model.layers, [3, 5, 7, 8, 11])]
    assert facts.layers[0].folds * 3 > model.layers[0].out_channels  # a last fold with idle lanes
    assert [f.engine for f in facts.layers] == ["sparse", "sparse", "dense", "sparse", "sparse"]
    with pytest.raises(SenteiError, match="9 lanes for 8 filters"):
        codegen.network_facts(tiny(), lanes=[9, 8, 8, 8, 11])
    with pytest.raises(SenteiError, match="chunk width 3 must divide Cin = 8"):
        codegen.network_facts(tiny(), lanes=[8, "d8w3", 8, 8, 11])
    with pytest.raises(SenteiError, match="2 lane counts given for 5 layers"):
        codegen.network_facts(tiny(), lanes=[8, 8])
    with pytest.raises(SenteiError, match="expected LANES"):
        codegen.network_facts(tiny(), lanes=["x8", 8, 8, 8, 11])


def test_board_lanes_come_from_the_performance_model():
    from sentei.overlay import perf

    model = tiny()
    board = perf.known_boards()[0]
    lanes = codegen.choose_lanes(model, board=board)
    assert lanes == list(perf.allocate(model, board, None))
    facts = codegen.network_facts(model, board=board)
    assert [(f.engine, f.lanes) for f in facts.layers] == [(p.engine, p.lanes) for p in lanes]


def test_each_sparse_engine_binds_its_window_copies_as_planned():
    """A sparse layer's window copies are declared by its generated engine process: one LUTRAM
    word of k*Wc taps per group column where it is at most 64 words deep, else a LUTRAM bank per
    tap, or (plan suffix b) one BRAM word of k*Wc taps per group column."""
    model = tiny()
    facts = codegen.network_facts(model, ["s8p2b", "s4w1p2", 16, "s4b", "d4w8"], fifo_depths="rule")
    text = codegen.render(facts)["network.h"]

    def engine(n):
        body = text.split(f"inline void layer{n}_engine(")[1].split("\n}\n")[0]
        return [ln.split("//")[0].strip() for ln in body.splitlines() if ln.strip().startswith("#pragma HLS")]

    bram = "#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = bram"
    lutram = "#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = lutram"
    assert bram in engine(0) and "#pragma HLS ARRAY_RESHAPE variable = win dim = 3 complete" in engine(0)
    # conv1: Cin 8, Wc 1: 2 x 8 words a column, its taps one word
    assert lutram in engine(1) and "#pragma HLS ARRAY_RESHAPE variable = win dim = 3 complete" in engine(1)
    assert lutram in engine(2) and bram in engine(3)
    # a column of 2 x 128 words (Cin 128, Wc 1) is four LUTRAM blocks deep: a bank per tap
    deep = codegen.network_facts(camvid_standin(8), ["d4w3", "d4w8", 8, 8, 8, "s8w1p2", 8, "d1w8"], fifo_depths="rule")
    body = codegen.render(deep)["network.h"].split("inline void layer5_engine(")[1].split("\n}\n")[0]
    assert "#pragma HLS ARRAY_PARTITION variable = win dim = 3 complete" in body and "impl = lutram" in body
    assert "layer4_engine" not in text  # the dense engine keeps its one broadcast window inside
    assert f"layer0_engine(win0, act1, w0, q0, frames);" in text
    # where the window copies live is a compile-time fact: another bitstream
    other = codegen.network_facts(model, ["s8p2", "s4w1p2", 16, "s4b", "d4w8"], fifo_depths="rule")
    assert other.signature() != facts.signature()


def test_a_shared_window_is_one_lutram_memory_a_bank_and_column():
    """Plan h: the engine declares one window (shared_window_t), partitioned into a memory per
    bank and column, in LUTRAM; its banks are a compile-time fact (another bitstream) that
    network.json hands the driver (shared_windows)."""
    model = tiny()
    facts = codegen.network_facts(model, ["s4p2h", "s4h", 16, "s4", "d4w8"], fifo_depths="rule")
    files = codegen.render(facts)
    body = files["network.h"].split("inline void layer0_engine(")[1].split("\n}\n")[0]
    pragmas = [ln.split("//")[0].strip() for ln in body.splitlines() if ln.strip().startswith("#pragma HLS")]
    assert "shared_window_t<layer0_config> win;" in body
    assert pragmas[1:] == ["#pragma HLS ARRAY_PARTITION variable = win dim = 1 complete",
                           "#pragma HLS ARRAY_PARTITION variable = win dim = 2 complete",
                           "#pragma HLS BIND_STORAGE variable = win type = ram_s2p impl = lutram"]
    banks = perf.shared_banks(model, 0, 4, 1)
    config = files["network_config.h"].split("struct layer0_config")[1].split("};")[0]
    assert "static const bool shared_window = true;" in config
    assert f"static const unsigned window_banks = {banks};" in config
    assert f"static const unsigned bank_slots = {-(-3 * 3 // banks)};" in config
    assert "window_copies_t" not in body and "static const bool shared_window = false;" in \
        files["network_config.h"].split("struct layer2_config")[1].split("};")[0]
    assert json.loads(files["network.json"])["shared_windows"] == [
        {"layer": 0, "lanes": 4, "banks": banks}, {"layer": 1, "lanes": 4, "banks": perf.shared_banks(model, 1, 4, 1)}]
    plain = codegen.network_facts(model, ["s4p2", "s4h", 16, "s4", "d4w8"], fifo_depths="rule")
    assert plain.signature() != facts.signature()


def test_same_shapes_other_weights_generate_the_same_files():
    a, b = tiny(seed=0), tiny(seed=7)
    assert not np.array_equal(a.layers[0].values, b.layers[0].values)
    ra, rb = codegen.render(codegen.network_facts(a)), codegen.render(codegen.network_facts(b))
    assert ra["network_config.h"] == rb["network_config.h"] and ra["network.h"] == rb["network.h"]
    same_k = odd(seed=1), odd(seed=2)  # other weights, the same K in every layer
    assert not np.array_equal(same_k[0].layers[0].values, same_k[1].layers[0].values)
    assert codegen.network_facts(same_k[0]).signature() == codegen.network_facts(same_k[1]).signature()
    assert codegen.network_facts(a).signature() != codegen.network_facts(odd()).signature()


def test_network_wires_one_block_per_layer():
    text = codegen.render(codegen.network_facts(tiny(), lanes=[8, "d8w4", 8, 8, "d1w8"]))["network.h"]
    # tiny: three 3x3 layers (row buffers), two 1x1 (pointwise windows); two dense engines
    assert text.count("line_buffer<layer") == 3 and text.count("pointwise_window<layer") == 2
    assert text.count("sparse_conv<layer") == 3 and text.count("dense_conv<layer") == 2
    assert all(f"layer{n}_window(act{n}, win{n}, frames);" in text for n in range(5))
    assert text.count("load_conv_weights<layer") == 3 and text.count("load_dense_weights<layer") == 2
    assert "write_logits<layer4_config>(act5, logits, frames);" in text
    assert "#pragma HLS DATAFLOW" in text
    # canonical dataflow: the region reads no global; the weights arrive as arguments
    region = text[text.index("inline void pipeline("):text.index("inline void run(")]
    assert "layer0_weights" not in region and "w0[8][" in region
    assert "pipeline(frame, logits, iq, frames, layer0_weights, layer0_quant," in text


def test_rows_in_ddr_get_a_port_each_and_a_region_of_one_buffer():
    """odd conv2 (d = 3, six 6-bit channels) and conv4 (ten 6-bit channels: 10 a word) keep their
    rows in DDR: each a rows_through_memory process before its window, its own m_axi port after
    `status`, its region of one row buffer (64-byte aligned) in network.json; without 'r' none."""
    model = odd()
    facts = codegen.network_facts(model, ["s6w1p2", "s4w3p4r", "s10", "s5p3r", "s5"], fifo_depths="rule")
    files = codegen.render(facts)
    net, config = files["network.h"], files["network_config.h"]
    for n in (1, 3):
        assert f"rows_through_memory<layer{n}_config>(act{n}, rows{n}, fetch{n}, frames);" in net
        assert f"layer{n}_window(fetch{n}, win{n}, frames);" in net
        assert f"line_buffer<rows_config<layer{n}_config> >" in net
    assert "rows_through_memory<layer0_config>" not in net and "layer0_window(act0, win0, frames);" in net
    words = [perf.layer_geometry(model, n, p)["row_words"] for n, p in ((1, "s4w3p4r"), (3, "s5p3r"))]
    (_, h1, w1), (_, h3, w3) = model.shapes()[1], model.shapes()[3]
    assert words == [(7 + 2) * w1 * 1, (3 + 1) * w3 * 1]  # (k-1)*d+1+s rows of W pixels, a 64-bit word a pixel (10 channels)
    first = -(-words[0] // 8) * 8
    ports = json.loads(files["network.json"])["row_ports"]
    assert ports == [{"argument": "rows1", "layer": "conv2", "offset_bytes": 0, "bytes": 8 * words[0]},
                     {"argument": "rows3", "layer": "conv4", "offset_bytes": 8 * first, "bytes": 8 * words[1]}]
    assert json.loads(files["network.json"])["row_buffer_bytes"] == 8 * (first + words[1])
    assert "sentei::row_word_t* rows1" in config and ", (buffer) + 0" in config and f", (buffer) + {first}" in config
    assert "port = rows3 offset = slave bundle = gmem_rows3 depth = %d" % words[1] in config
    plain = codegen.render(codegen.network_facts(model, ["s6w1p2", "s4w3p4", "s10", "s5p3", "s5"], fifo_depths="rule"))
    assert "#define SENTEI_ROW_PARAMS\n" in plain["network_config.h"] and "rows_through_memory<" not in plain["network.h"]
    assert json.loads(plain["network.json"])["row_ports"] == []
    assert facts.signature() != codegen.network_facts(model, ["s6w1p2", "s4w3p4", "s10", "s5p3", "s5"],
                                                      fifo_depths="rule").signature()


def test_generate_writes_into_the_given_folder(tmp_path):
    facts, paths = codegen.generate(tiny(), tmp_path / "gen")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["network.h", "network.json", "network_config.h"]
    assert json.loads(paths["network.json"].read_text())["blob_words"] == facts.blob_words


def test_generate_refuses_the_package_sources():
    """network.h written into overlay/hls (or any source folder) would pass for the hand-written HLS."""
    hls = Path(codegen.__file__).resolve().parent / "hls"
    before = sorted(p.name for p in hls.iterdir())
    with pytest.raises(SenteiError, match=r"inside the package's sources .*build/hls/<model name>"):
        codegen.generate(tiny(), hls / "gen")
    overlay = Path(codegen.__file__).resolve().parent
    for folder in (overlay.parent / "host", overlay, overlay / "tb" / "x"):
        with pytest.raises(SenteiError, match="inside the package's sources"):
            codegen.check_out_dir(folder)
    assert sorted(p.name for p in hls.iterdir()) == before
    codegen.check_out_dir(overlay / "build" / "zcu104" / "gen")  # the Makefile's own output folder


def test_top_header_agrees_with_register_module():
    text = (HLS / "sentei_top.hpp").read_text()
    consts = {m[0]: int(m[1], 0) for m in re.findall(r"static const \w+ (\w+) = (0x[0-9A-Fa-f]+|\d+)u?;", text)}
    names = [n for n in dir(registers) if n.startswith(("CMD_", "STATUS_")) and n != "STATUS_TEXT"
             and n not in ("STATUS_CTRL",)]
    assert names, "registers.py lost its command and status constants"
    for name in names:
        assert consts[name] == getattr(registers, name), name
    assert consts["BLOB_MAGIC"] == 0x544E4553


def test_every_pragma_has_a_reason():
    sources = list(HLS.glob("*.hpp")) + list(HLS.glob("*.cpp"))
    templates = [codegen.NETWORK_HEADER.template, codegen.LAYER_STREAMS.template, codegen.FETCH_STREAM.template,
                 *(t.template for t in codegen.LAYER_WINDOW.values()),
                 *(t.template for t in codegen.LAYER_ENGINE.values())]
    lines = [ln for src in sources for ln in src.read_text().splitlines()]
    lines += [ln for t in templates for ln in t.splitlines()]
    pragmas = [ln for ln in lines if ln.strip().startswith("#pragma HLS")]
    assert len(pragmas) > 20
    bare = [ln for ln in pragmas if "//" not in ln]
    assert not bare, bare


def test_clock_without_board_is_refused(tmp_path, capsys):
    from sentei import cli

    for sub in ("codegen", "csim"):
        assert cli.main(["overlay", sub, "--clock-mhz", "200", "--out" if sub == "codegen" else "--frames",
                         str(tmp_path / "g") if sub == "codegen" else "1"]) == 2
        assert "--clock-mhz 200 needs --board" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
