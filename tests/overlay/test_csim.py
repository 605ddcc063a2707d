"""C-simulation of the HLS sources: bit-exact against the reference engine, iterations = formula.

Every build is cached (``$SENTEI_CACHE/csim`` or ``~/.cache/sentei/csim``); a cold build of
one network takes 5-10 s on 2 cores, which is why most tests here are marked slow.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sentei.errors import SenteiError
from sentei.host.modelfile import reference
from sentei.host.modelfile.schema import save
from sentei.host.modelfile.synthetic import TINY, LayerSpec, random_frame, random_model
from sentei.overlay import csim, perf, registers, toolchain
from tests.overlay.csim_models import STARVED_LANES, odd, starved, tiny, wide


def assert_exact(report):
    assert report.errors == 0, [str(m) for m in report.mismatches]
    assert report.bit_exact
    assert "leftover data" not in report.output  # every stream drained: no RTL hang lurking
    assert report.iterations == [n * report.frames for n in report.expected_iterations]


def test_tiny_model_is_bit_exact_and_skips_zeros():
    report = csim.run_csim(tiny(), 2)
    assert_exact(report)
    # the MAC loop runs K times per fold, not Cin*k*k: the sparse layers execute fewer iterations
    assert all(it < dense for it, dense in zip(report.expected_iterations[:4], report.dense_iterations[:4]))
    assert report.iterations[4] == report.dense_iterations[4] * 2  # the dense classifier skips nothing


@pytest.mark.slow
@pytest.mark.parametrize("make, lanes", [
    (odd, None),
    (odd, [1, 2, 10, 1, 5]),
    (wide, None),
    (tiny, [1, 2, 16, 4, 11]),
    (starved, STARVED_LANES),
    # lanes that do not divide Cout: the last fold has idle lanes (6 = 4 + 2, 12 = 3 * 5 - 3, ...)
    (odd, [4, 5, 3, 4, 2]),
    (tiny, [3, 5, 7, 6, 4]),
    # the dense engine (PE lanes x a whole chunk a clock), on sparse and unbalanced filters too,
    # with partial folds and each chunk width
    (tiny, ["d1", "d3w2", "d5w4", "d16w8", "d4w8"]),
    (odd, ["d4w1", "d5w3", "d10w6", "d3w5", "d2w2"]),
    (wide, ["d4w3", "d3w2", "s2", "d3w3"]),
    (wide, ["s3", "d8w1", "d6w8", "d2w2"]),
    # Q output pixels a lane: packed pairs of 8-bit products (WP486), odd Q (a pair and one),
    # 1x1 layers, 16-bit activations (unpacked), a group as long as its window load (wide conv2
    # at w1: L = 8 > NF*K = 2); on dilated layers pixels M apart in blocks of M*Q (tiny conv2:
    # M = 2, blocks of 8 and 4; odd conv2, stride 2 dilation 3: M = 3, blocks of 6 or 12 that
    # overhang its 10-pixel rows), or adjacent ("a")
    (tiny, ["s8w3p4", "s8w2p2", "s16w4p2", "s16p2", "d4w8"]),
    (tiny, ["s2p2", "s4w1p4", "s8p3", "s4p4", "d11"]),
    (tiny, ["s3", "s4w1p4a", "s5p2", "s6p2", "d4w8"]),
    (odd, ["s6w1p3", "s4w3p2", "s10p5", "s5p5", "s5p5"]),
    (odd, ["s6w1p2", "s4w3p4", "s10", "s5p3", "s5"]),
    # the allocator's larger groups (up to 8 pixels a lane): 6, 7 and 8 pixels, groups that
    # overhang the row (odd conv1: 3 blocks of 8 on 21 pixels; odd conv2: M = 3, one block of
    # 18 on 10), a BRAM copy of 10 columns (tiny conv1, p8b)
    (tiny, ["s4p8b", "s4w1p6", "s8p7", "s4p8", "d11"]),
    (odd, ["s6w1p8", "s4w3p6", "s10p5", "s5p5", "s5"]),
    (wide, ["s4p8", "s8w1p2", "s3p7", "d3w3"]),
    # window copies in BRAM words of k*Wc taps ("b"): another layout of the same window
    (tiny, ["s8p2b", "s4w1p2", 16, "s4b", "d4w8"]),
    (odd, ["s6w1p2b", "s4w3p4b", "s10", "s5p3", "s5"]),
    (wide, ["s4p2", "s8w1p2", "s3p2", "d3w3"]),
    # rows in DDR ("r", row_memory.hpp): a ring of (k-1)*d+1 rows per layer, each window's k rows
    # read back; stride 2 and dilation 3 with padding (odd conv2), 4- and 6-bit activations (odd),
    # 16-bit ones (wide conv3: four a 64-bit word), both engines, a BRAM window copy (tiny conv2)
    (odd, ["s6w1p2", "s4w3p4r", "s10", "s5p3r", "s5"]),
    (odd, ["d4w1r", "d5w3r", "d10w6", "d3w5r", "d2w2"]),
    (tiny, ["s8p2b", "s4w1p2br", "s8r", 16, "d4w8"]),
    (wide, ["s4p2r", "s8w1p2", "s3p2r", "d3w3"]),
    # one window shared by the lanes ("h", shared_window.hpp): B banks of t = ci*k + ky read
    # through a crossbar, each filter's weights in schedule order; B not a power of two (5, 7,
    # 9, ...), lanes that do not divide Cout, unbalanced filters and stride 2 with dilation 3
    # (odd), 16-bit activations (wide), groups of up to 8 pixels, rows in DDR, a k = 1 layer
    (tiny, ["s4p2h", "s4h", "s8p2h", "s4", "s2"]),
    (tiny, ["s4p8h", "s4w1p6h", "s8p7h", "s4p4h", "d11"]),
    (odd, ["s3p2h", "s4p3h", "s5h", "s2h", "s5"]),
    (odd, ["s3p2hr", "s4p2ahr", "s5h", "s2hr", "s5"]),
    (wide, ["s4p2h", "s2h", "s6", "s3"]),
    # the dense engine's lane pairs sharing each activation in one multiplier ("x", products.hpp):
    # 8-bit (tiny, an odd lane left alone: d5x), 4- and 2-bit weights on 6- and 4-bit inputs
    # (odd), with rows in DDR
    (tiny, ["d4w3x", "s4w1p2", "s8p2", 16, "d5w8x"]),
    (odd, ["d4w1xr", "d5w3x", "d10w6x", "d3w5xr", "d2w2x"]),
])
def test_corner_models_are_bit_exact(make, lanes):
    model = make()
    report = csim.run_csim(model, 2, lanes=lanes)
    assert_exact(report)
    if lanes is not None:
        plans = [perf.as_plan(p) for p in lanes]
        assert report.lanes == [p.lanes for p in plans] and report.engines == [p.engine for p in plans]
        for n, plan in enumerate(plans):  # the MAC loop's count: NF * K (sparse) or NF * L (dense) per pixel
            g = perf.layer_geometry(model, n, plan)
            _, ho, wo = model.shapes()[n + 1]
            steps = model.layers[n].k_nonzero if plan.engine == "sparse" else g["chunks"]
            groups = ho * perf.group_layout(wo, plan.pixels, g["spacing"])[1]
            assert report.expected_iterations[n] == groups * -(-model.layers[n].out_channels // plan.lanes) * steps


def test_builds_are_keyed_by_the_xilinx_headers_content_not_their_path(tmp_path, monkeypatch):
    """Two virtual environments with the same hls4ml share C-simulation builds (CI's numpy-2
    stage starts from the first stage's): the key hashes the headers, not where they lie."""
    include = toolchain.hls_include_dir()
    first = csim.build(tiny())
    copy = tmp_path / "elsewhere" / "ap_types"
    shutil.copytree(include, copy)
    assert csim.include_digest(copy) == csim.include_digest(include)
    monkeypatch.setattr(csim, "hls_include_dir", lambda: copy)
    again = csim.build(tiny())
    assert again.key == first.key and again.compile_seconds == 0  # found, not compiled again
    (copy / "ap_int.h").write_bytes((copy / "ap_int.h").read_bytes() + b"\n// another release\n")
    csim.include_digest.cache_clear()
    assert csim.include_digest(copy) != csim.include_digest(include)


def test_frames_of_one_start_equal_single_starts():
    """FRAMES = 3 in one start (the frames overlap in the pipeline) gives each frame's logits
    exactly as three starts of one frame do, and as the reference engine; FRAMES = 0 is refused."""
    from sentei.host.modelfile.schema import weight_blob

    model = tiny()
    acc = csim.CsimAccelerator(model, lanes=["d3w1", 5, "s7w4", 6, "d4w8"])
    assert acc.load_weights(weight_blob(model)) == 0
    frames = [random_frame(seed, 24, 32) for seed in (4, 5, 6)]
    status, batch = acc.run_frames(frames, trace=True)
    assert status == 0 and batch.shape == (3,) + acc.logits_shape
    for n, frame in enumerate(frames):
        expected, stages = reference.run(model, frame, return_all=True)
        np.testing.assert_array_equal(batch[n], expected.transpose(1, 2, 0))
        np.testing.assert_array_equal(acc.stage(2, frame=n), stages[2].transpose(1, 2, 0))
    for n, frame in enumerate(frames):
        status, single = acc.run_frame(frame)
        assert status == 0
        np.testing.assert_array_equal(single, batch[n])
    assert acc.execute(registers.CMD_RUN_FRAME, None, None, None, 24, 32, frames=0) == registers.STATUS_BAD_FRAMES


def test_the_starved_model_runs_the_engine_at_its_window_load_rate():
    """The corner model for pixels as long as their window load (NF*K < L): its layers are in
    that regime and their outputs are not all zero, so a window written to the wrong slots or
    too late would show in the comparison above."""
    from sentei.overlay import codegen

    model = starved()
    facts = codegen.network_facts(model, STARVED_LANES)
    for layer in facts.layers[:2]:
        geometry = dict(layer.geometry)
        assert layer.folds * layer.k_nonzero < geometry["chunks"] == geometry["pixel_iterations"]
    _, stages = reference.run(model, random_frame(0, 10, 12), return_all=True)
    assert all(np.count_nonzero(stage) > 0.5 * stage.size for stage in stages[1:3])


@pytest.mark.slow
def test_every_stage_is_compared_and_a_wrong_value_is_located(tmp_path):
    """Corrupt one golden value: the testbench names its layer, channel and pixel."""
    model = tiny()
    b = csim.build(model)
    csim.write_vectors(model, [random_frame(3, 24, 32)], tmp_path)
    path = tmp_path / "stage_0_2.npy"  # output of layer 1 (conv2), [h, w, C]
    stage = np.load(path)
    stage[5, 7, 3] += 1
    np.save(path, stage)
    rep = csim.run_testbench(b, tmp_path, 1)
    assert rep["errors"] == 1
    m = rep["mismatches"][0]
    assert (m["stage"], m["channel"], m["y"], m["x"]) == (2, 3, 5, 7)
    assert m["expected"] == m["got"] + 1
    assert "conv2: channel 3 pixel (y=5, x=7)" in rep["output"]


@pytest.mark.slow
def test_camvid_sized_standin_is_bit_exact():
    """The CamVid network's shapes (conv5/6/7 at dilation 2/4/8) at 360x480 with ~90% filter-wise
    sparsity: minutes at most."""
    d = 0.1
    specs = (LayerSpec(32, stride=2, density=0.3), LayerSpec(64, stride=2, density=d), LayerSpec(64, density=d),
             LayerSpec(128, stride=2, density=d), LayerSpec(128, dilation=2, density=d),
             LayerSpec(128, dilation=4, density=d), LayerSpec(128, dilation=8, density=d))
    model = random_model(seed=11, height=360, width=480, specs=specs, classifier_density=0.5)
    report = csim.run_csim(model, 1)
    assert_exact(report)
    assert report.run_seconds < 120


@pytest.mark.slow
def test_camvid_standin_with_the_zcu104_allocation_is_bit_exact():
    """The plans `sentei overlay codegen --board zcu104` compiles (lanes of 2-4 packed pixels on the
    dilated 128-channel layers, wide window chunks, shared requantizers, URAM line buffers): still
    bit-exact, counts = formula."""
    from tests.overlay.csim_models import camvid_standin

    model = camvid_standin(8)
    plans = perf.allocate(model, "zcu104", 200)
    assert max(p.lanes * p.pixels for p in plans) >= 32 and any(p.pixels > 1 for p in plans)
    report = csim.run_csim(model, 1, board="zcu104", clock_mhz=200)
    assert report.lanes == [p.lanes for p in plans]
    assert_exact(report)


@pytest.mark.slow
def test_camvid_standin_with_the_pynqz2_allocation_keeps_rows_in_ddr_and_is_bit_exact():
    """On PYNQ-Z2 the allocator keeps the d = 8 layer's rows in DDR (the BRAM18 they free is what
    lets the network fit; the d = 4 layer's too before the shared windows left it room), with a
    window shared by its lanes: the row memories and the banks still compute the reference exactly."""
    from tests.overlay.csim_models import camvid_standin

    model = camvid_standin(8)
    plans = perf.allocate(model, "pynqz2")
    assert plans[6].ddr_rows and plans[6].shared
    report = csim.run_csim(model, 2, board="pynqz2")
    assert_exact(report)


# ---------------------------------------------------------------------------------------
def test_a_shared_window_loads_only_weights_in_schedule_order():
    """A layer with one window for all lanes (plan h) takes each filter's weights in the order
    where no two lanes read one bank in a step (sentei.host.modelfile.schedule); the model file's
    own order fails the load, and the driver, which lays them out, runs like the reference."""
    from sentei.host.modelfile.schedule import scheduled_blob
    from sentei.host.modelfile.schema import weight_blob
    from sentei.host.runtime.emulated_overlay import EmulatedOverlay
    from sentei.host.runtime.segmenter import Segmenter

    model = tiny()
    acc = csim.CsimAccelerator(model, lanes=["s4p2h", "s4h", "s8p2h", "s4", "s2"])
    shared = acc.facts.shared_windows()
    assert shared == [{"layer": n, "lanes": p, "banks": perf.shared_banks(model, n, p, 1)}
                      for n, p in ((0, 4), (1, 4), (2, 8))]
    plain = weight_blob(model)
    assert acc.load_weights(plain) == registers.STATUS_BAD_LAYOUT  # two lanes in one bank in some step
    assert acc.load_weights(scheduled_blob(model, plain, shared)) == registers.STATUS_OK
    frame = random_frame(6, 24, 32)
    status, logits = acc.run_frame(frame)
    assert status == registers.STATUS_OK
    np.testing.assert_array_equal(logits, reference.run(model, frame).transpose(1, 2, 0))
    overlay = EmulatedOverlay(model, hardware=acc)  # the driver reads the shared windows from the build
    assert overlay.shared_windows == shared
    with Segmenter(model, overlay=overlay) as seg:
        np.testing.assert_array_equal(seg.logits(frame), reference.run(model, frame))


# the ctypes library and the command protocol


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture()
def acc(model):
    return csim.CsimAccelerator(model)


def test_library_runs_frames_like_the_reference(acc, model):
    from sentei.host.modelfile.schema import weight_blob

    assert acc.load_weights(weight_blob(model)) == 0
    for seed in (1, 2):
        frame = random_frame(seed, 24, 32)
        status, logits = acc.run_frame(frame, trace=True)
        assert status == 0
        np.testing.assert_array_equal(logits, reference.run(model, frame).transpose(1, 2, 0))
        _, acts = reference.run(model, frame, return_all=True)
        np.testing.assert_array_equal(acc.stage(2), acts[2].transpose(1, 2, 0))
        assert acc.iterations() == acc.expected_iterations()


def test_new_weights_of_the_same_shape_run_on_the_same_build(acc, model):
    from sentei.host.modelfile.schema import weight_blob

    retrained = tiny(seed=9)
    assert csim.build(retrained).key == acc.build.key
    assert acc.load_weights(weight_blob(retrained)) == 0
    frame = random_frame(4, 24, 32)
    status, logits = acc.run_frame(frame)
    assert status == 0
    np.testing.assert_array_equal(logits, reference.run(retrained, frame).transpose(1, 2, 0))
    assert not np.array_equal(logits, reference.run(model, frame).transpose(1, 2, 0))


def test_run_before_load_and_independent_instances(acc, model):
    from sentei.host.modelfile.schema import weight_blob
    from sentei.overlay import registers

    status, logits = acc.run_frame(random_frame(0, 24, 32))
    assert status == registers.STATUS_NO_WEIGHTS and not logits.any()
    assert acc.iterations() == [0] * 5
    assert acc.run_frame(random_frame(0, 20, 32))[0] == registers.STATUS_BAD_SIZE  # the size is checked first
    assert acc.load_weights(weight_blob(model)) == 0
    other = csim.CsimAccelerator(model)  # a second accelerator: nothing loaded there
    assert other.run_frame(random_frame(0, 24, 32))[0] == registers.STATUS_NO_WEIGHTS
    assert acc.run_frame(random_frame(0, 24, 32))[0] == registers.STATUS_OK


def test_load_errors(acc, model):
    from sentei.host.modelfile.schema import weight_blob
    from sentei.overlay import registers as r

    good = weight_blob(model)
    assert acc.load_weights(good) == r.STATUS_OK

    bad = good.copy()
    bad[0] ^= 1
    assert acc.load_weights(bad) == r.STATUS_BAD_MAGIC
    # a blob rejected by its header changes nothing: the loaded weights still run
    assert acc.run_frame(random_frame(0, 24, 32))[0] == r.STATUS_OK

    bad = good.copy()
    bad[1] += 1  # layer count
    assert acc.load_weights(bad) == r.STATUS_BAD_LAYOUT

    bad = good.copy()
    bad[10] += 1  # section offset of layer 1
    assert acc.load_weights(bad) == r.STATUS_BAD_LAYOUT

    c0, off0 = model.layers[0].out_channels, int(good[9])
    bad = good.copy()
    bad[off0 + 3 * c0] = (27 << 8) | (bad[off0 + 3 * c0] & 0xFF)  # index 27 >= Cin*k*k = 27
    assert acc.load_weights(bad) == r.STATUS_BAD_LAYOUT
    # this one failed while copying: the on-chip weights are gone until a load succeeds
    assert acc.run_frame(random_frame(0, 24, 32))[0] == r.STATUS_NO_WEIGHTS

    off2, c2 = int(good[11]), model.layers[2].out_channels  # conv3 has 4-bit weights
    bad = good.copy()
    bad[off2 + 3 * c2] = (bad[off2 + 3 * c2] & ~np.uint32(0xFF)) | np.uint32(8)  # +8 does not fit 4 bits
    assert acc.load_weights(bad) == r.STATUS_BAD_LAYOUT
    for word, value in ((off2 + c2, 1 << 31), (off2 + 2 * c2, 63)):  # a multiplier >= 2^31, a shift > 62
        bad = good.copy()
        bad[word] = value
        assert acc.load_weights(bad) == r.STATUS_BAD_LAYOUT

    # a blob of another network: another K in the first layer moves every offset
    other = random_model(seed=0, specs=(LayerSpec(8, stride=2, density=0.6),) + TINY[1:])
    blob = weight_blob(other)
    assert acc.execute(r.CMD_LOAD_WEIGHTS, weights=blob) == r.STATUS_BAD_LAYOUT  # the hardware's own check
    assert acc.load_weights(blob) == r.STATUS_BAD_LAYOUT  # length differs: caught before the start

    assert acc.load_weights(good) == r.STATUS_OK
    assert acc.run_frame(random_frame(0, 24, 32))[0] == r.STATUS_OK


def test_run_errors(acc, model):
    from sentei.host.modelfile.schema import weight_blob
    from sentei.overlay import registers as r

    assert acc.load_weights(weight_blob(model)) == r.STATUS_OK
    status, logits = acc.run_frame(random_frame(0, 24, 30))
    assert status == r.STATUS_BAD_SIZE and not logits.any()
    assert acc.execute(r.CMD_RUN_FRAME, height=24, width=33) == r.STATUS_BAD_SIZE
    assert acc.execute(7) == r.STATUS_BAD_COMMAND
    assert acc.execute(0) == r.STATUS_BAD_COMMAND
    assert acc.run_frame(random_frame(0, 24, 32))[0] == r.STATUS_OK  # still loaded
    with pytest.raises(SenteiError, match="uint8 RGB"):
        acc.run_frame(np.zeros((24, 32), np.uint8))
    with pytest.raises(SenteiError, match="1-D uint32"):
        acc.load_weights(weight_blob(model).astype(np.int64))


def test_execute_writes_the_logits_buffer_in_place(acc, model):
    from sentei.host.modelfile.schema import weight_blob
    from sentei.overlay import registers as r

    frame = random_frame(6, 24, 32)
    assert acc.execute(r.CMD_LOAD_WEIGHTS, weights=weight_blob(model)) == r.STATUS_OK
    out = np.full(acc.logit_words, -1, dtype=np.int32)
    words = csim.frame_to_words(frame, acc.frame_words)
    assert acc.execute(r.CMD_RUN_FRAME, words, None, out, 24, 32) == r.STATUS_OK
    np.testing.assert_array_equal(out.reshape(acc.logits_shape), reference.run(model, frame).transpose(1, 2, 0))


def test_closed_accelerator_refuses_commands(model):
    from sentei.host.modelfile.schema import weight_blob

    with csim.CsimAccelerator(model) as acc:
        assert acc.load_weights(weight_blob(model)) == 0
    with pytest.raises(SenteiError, match="closed"):
        acc.run_frame(random_frame(0, 24, 32))


# ---------------------------------------------------------------------------------------
# toolchain errors and the command line


def test_missing_hls4ml_says_how_to_install(monkeypatch):
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SenteiError, match=r"pip install 'sentei\[dev\]'"):
        csim.hls_include_dir()


def test_missing_compiler_says_what_to_install(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-sentei")
    with pytest.raises(SenteiError, match="no-such-compiler-sentei.*not on PATH"):
        csim.find_compiler()


def test_cli_csim_on_a_model_file(tmp_path, capsys):
    from sentei.cli import main

    path = save(tiny(), tmp_path / "tiny.sentei")
    out = tmp_path / "report.json"
    assert main(["overlay", "csim", "--model", str(path), "--frames", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "result: bit-exact" in text
    rep = json.loads(out.read_text())
    assert rep["bit_exact"] and rep["iterations_ok"] and rep["iterations"] == rep["expected_iterations"]


def test_cli_csim_bounds_the_frames_before_building_any(capsys):
    from sentei.cli import main

    with pytest.raises(SystemExit) as done:
        main(["overlay", "csim", "--frames", "100000000000"])
    assert done.value.code == 2 and "--frames: 100000000000 must be an integer from 1 to 64" in capsys.readouterr().err


def test_cli_codegen_rejects_bad_lanes(tmp_path, capsys):
    from sentei.cli import main

    path = save(tiny(), tmp_path / "tiny.sentei")
    assert main(["overlay", "codegen", "--model", str(path), "--lanes", "9,8,8,8,11", "--out",
                 str(tmp_path / "g")]) == 2
    assert "9 lanes for 8 filters" in capsys.readouterr().err
    assert main(["overlay", "codegen", "--model", str(path), "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "network.h").is_file()


# ---------------------------------------------------------------------------------------
# the shipped model on a real CamVid frame


CAMVID = Path(os.environ.get("SENTEI_CAMVID", Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"))


@pytest.mark.camvid
@pytest.mark.slow
@pytest.mark.parametrize("name, board", [(None, None), (None, "pynqz2"), ("sentei-design-pynqz2", "pynqz2"),
                                         ("sentei-design-zcu104", "zcu104")])
def test_bundled_model_on_a_camvid_frame(name, board):
    """The default model (lanes by the divisor rule, and PYNQ-Z2's plan: its dilated layers'
    rows in DDR) and the models made for PYNQ-Z2 and ZCU104 with the allocator's plan for their board."""
    from sentei.host.modelfile import bundled
    from sentei.host.data.preprocess import load_image, prepare_frame

    images = sorted((CAMVID / "val").glob("*.png")) + sorted((CAMVID / "val").glob("*.jpg"))
    if not images:
        pytest.skip(f"no CamVid frames under {CAMVID}/val")
    if bundled.default_model_name() is None:
        pytest.skip("no trained model is bundled yet")
    model = bundled.load_model(name)
    frame = prepare_frame(load_image(images[0]), model.input.height, model.input.width)
    report = csim.run_csim(model, [frame], board=board)
    assert_exact(report)



def test_requantization_and_input_edges_on_the_same_build(acc):
    """Run-time constants at their limits: shift 0..62, mult 0..2^31-1, input shift 0 and 31."""
    import copy

    from sentei.host.modelfile.schema import validate, weight_blob

    rng = np.random.default_rng(5)
    edge = copy.deepcopy(tiny(seed=3))
    for layer in edge.layers[:-1]:
        c = layer.out_channels
        layer.shift = rng.choice([0, 1, 2, 30, 31, 32, 33, 61, 62], size=c).astype(np.uint8)
        layer.mult = rng.choice([0, 1, 3, 2**20 + 1, 2**30, 2**31 - 1], size=c).astype(np.int32)
    # saturating first layer: shift 0 with mult 1 clamps almost everything
    edge.layers[0].mult[:] = 1
    edge.layers[0].shift[:] = 0
    for shift, mul, add in ((0, (1, -1, 2), (-128, 100, -300)), (31, (2**31 - 1, 2**30, -2**31), (2**30, -5, 0))):
        edge.input.shift, edge.input.mul, edge.input.add = shift, mul, add
        validate(edge)
        assert acc.load_weights(weight_blob(edge)) == 0
        for seed in (0, 1):
            frame = random_frame(seed, 24, 32)
            status, logits = acc.run_frame(frame, trace=True)
            assert status == 0
            _, acts = reference.run(edge, frame, return_all=True)
            for s in range(len(acts) - 1):
                np.testing.assert_array_equal(acc.stage(s), acts[s].transpose(1, 2, 0), err_msg=f"stage {s}")
            np.testing.assert_array_equal(logits, acts[-1].transpose(1, 2, 0))


def _sums_at_their_bound(model):
    """Every partial sum at perf.sum_bits's bound: every input -2^(bits-1) (the input quantizer's
    mul 0, add -2^(bits-1)), every weight -2^(weight_bits-1), every relu layer saturated at its
    largest output and every linear one at its most negative by a bias of +-2^30 (added after the
    sum), so each layer sums K products of -2^(W-1) x its input's extreme; the logits layer's bias
    0 shows the sum itself."""
    import copy

    from sentei.host.modelfile.schema import validate

    edge = copy.deepcopy(model)
    lo = -(1 << (edge.input.bits - 1))
    edge.input.shift, edge.input.mul, edge.input.add = 0, (0, 0, 0), (lo, lo, lo)
    for layer in edge.layers:
        layer.values[:] = -(1 << (layer.weight_bits - 1))
        if layer.act == "logits":
            layer.bias[:] = 0
        else:
            layer.bias[:] = (1 << 30) if layer.act == "relu" else -(1 << 30)
            layer.mult[:] = 1
            layer.shift[:] = 0
    validate(edge)
    return edge


@pytest.mark.slow
@pytest.mark.parametrize("make, lanes", [(tiny, ["s4p8b", "s4w1p6", "s8p7", "s4p8", "d11"]),
                                         (tiny, ["d4w3x", "s4w1p2", "s8p2", 16, "d11x"]),
                                         (odd, ["d4w1r", "s4w3p4", "d10w6", "s5p3", "s5"]),
                                         (odd, ["d5w1xr", "s4w3p4", "d10w6x", "s5p3", "d2w2x"])])
def test_running_sums_are_exact_at_their_bound(make, lanes):
    """sum_t is perf.sum_bits wide, not 32: with every partial sum at its largest magnitude
    (K products of -2^(W-1) x the input's extreme) C-simulation still equals the reference,
    both engines, packed and single products; one bit narrower wraps."""
    model = _sums_at_their_bound(make())
    _, acts = reference.run(model, random_frame(0, model.input.height, model.input.width), return_all=True)
    last = model.layers[-1]
    lo, hi = model.input_range(len(model.layers) - 1)
    bound = last.k_nonzero * (1 << (last.weight_bits - 1)) * max(-lo, hi)
    assert np.abs(acts[-1]).max() == bound  # the logits of an interior pixel: the sum at its bound
    assert perf.sum_bits(model, len(model.layers) - 1) == bound.bit_length() + 1 < 32
    assert_exact(csim.run_csim(model, 1, lanes=lanes))


@pytest.mark.slow
def test_two_networks_in_one_process_keep_their_own_state():
    from sentei.host.modelfile.schema import weight_blob

    a, b = tiny(), odd()
    with csim.CsimAccelerator(a) as acc_a, csim.CsimAccelerator(b) as acc_b:
        assert acc_a.load_weights(weight_blob(a)) == 0
        assert acc_b.load_weights(weight_blob(b)) == 0
        fa, fb = random_frame(8, 24, 32), random_frame(9, 19, 23)
        sa, la = acc_a.run_frame(fa)
        sb, lb = acc_b.run_frame(fb)
        assert (sa, sb) == (0, 0)
        np.testing.assert_array_equal(la, reference.run(a, fa).transpose(1, 2, 0))
        np.testing.assert_array_equal(lb, reference.run(b, fb).transpose(1, 2, 0))
        assert acc_a.iterations() == acc_a.expected_iterations()
        assert acc_b.iterations() == acc_b.expected_iterations()
        assert acc_a.blob_words != acc_b.blob_words
