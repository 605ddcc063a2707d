"""The clock-level simulation of the generated pipeline: it sees stalls, derives FIFO depths that
remove them, and agrees with the performance model within 5 % where the depths are derived."""
import json

import pytest

from sentei import cli
from sentei.errors import SenteiError
from sentei.host.modelfile.schema import save
from sentei.overlay import codegen, perf, simulate
from sentei.overlay.report import perf_report
from tests.overlay.csim_models import STARVED_LANES, odd, starved, tiny, wide


def facts_for(model, plans):
    return codegen.network_facts(model, plans, fifo_depths="rule")


def test_the_simulator_sees_a_fifo_that_is_too_small():
    """Not true by construction: the same pipeline with the geometry's rule depths stalls (the
    layer after a 1x1 layer fills its FIFO while its window generator waits for rows) and runs
    far slower than its slowest stage; with the derived depths it runs at the model's interval."""
    model = wide()
    plans = perf.allocate(model, "zcu104", 200)
    facts = facts_for(model, plans)
    interval = perf.pipeline_interval(model, plans)
    stalled = simulate.run(facts, 3)
    assert stalled["interval_cycles"] > 1.5 * interval
    assert any(f["blocked"] for f in stalled["fifos"].values())
    depths, report = simulate.derive_fifo_depths(facts, interval)
    assert abs(report["interval_cycles"] / interval - 1) < 0.01
    assert simulate.run(facts, 3, depths=depths)["interval_cycles"] == report["interval_cycles"]
    # the depths are the smallest found: one step shallower on a FIFO that was deepened is slower again
    grown = [name for name, d in depths.items() if d > simulate.rule_depths(facts)[name]]
    assert grown
    shallower = dict(depths, **{name: simulate.MIN_DEPTH for name in grown})
    assert simulate.run(facts, 3, depths=shallower)["interval_cycles"] > report["interval_cycles"]


@pytest.mark.parametrize("make, lanes", [(tiny, None), (odd, None), (wide, None), (starved, STARVED_LANES),
                                         (tiny, ["s8w3p4", "s8w2p2", "s16w4p2", "s16p2", "d4w8"]),
                                         (odd, ["s6w1p2", "s4w3p4", "s10", "s5p3", "s5"]),
                                         (wide, ["s4p2", "s8w1p2", "s3p2", "d3w3"]),
                                         (odd, ["s6w1p8", "s4w3p6", "s10p5", "s5p5", "s5"]),
                                         (odd, ["s6w1p2", "s4w3p4r", "s10", "s5p3r", "s5"]),
                                         (wide, ["s4p2r", "s8w1p2", "s3p2r", "d3w3"])])
@pytest.mark.parametrize("board", perf.known_boards())
def test_model_and_simulation_agree_within_five_percent(make, lanes, board):
    model = make()
    report = perf_report(model, board, perf.load_board(board).default_clock_mhz, lanes=lanes, simulate=True)
    sim = report["simulated"]
    assert abs(sim["error_vs_model"]) < 0.05, (report["lanes"], sim["interval_cycles"],
                                               report["pipeline"]["interval_cycles"])
    # frames overlap: three frames in one start take far less than three latencies
    done = sim["frame_done_cycles"]
    assert len(done) == 3 and done[2] - done[0] < 2 * done[0]
    # the resource model prices the FIFOs at the derived depths
    assert report["kind"] == "modeled and simulated"


@pytest.mark.slow
@pytest.mark.parametrize("make, lanes", [(tiny, ["d3w1", 5, "s7w4", 6, "d4w8"]), (odd, [4, 5, 3, 4, 2]),
                                         (starved, STARVED_LANES),
                                         (odd, ["s6w1p3", "s4w3p2", "s10p5", "s5p5", "s5p5"]),
                                         (tiny, ["s2p2", "s4w1p4", "s8p3", "s4p4", "d11"]),
                                         (odd, ["d4w1r", "d5w3r", "d10w6", "d3w5r", "d2w2"])])
def test_the_simulated_engines_run_the_c_simulation_s_mac_iterations(make, lanes):
    """The simulator's engine state machines are its own code, not the HLS loops: their MAC
    iterations per frame must be the C-simulation's count, layer by layer, for both engines,
    partial folds and pixels as long as their window load."""
    from sentei.host.modelfile.schema import weight_blob
    from sentei.host.modelfile.synthetic import random_frame
    from sentei.overlay.csim import CsimAccelerator

    model = make()
    facts = facts_for(model, lanes)
    report = simulate.run(facts, 2)
    acc = CsimAccelerator(model, lanes=lanes)
    assert acc.load_weights(weight_blob(model)) == 0
    status, _ = acc.run_frames([random_frame(s, model.input.height, model.input.width) for s in (1, 2)])
    assert status == 0
    engines = [stats["macs"] for name, stats in report["processes"].items() if name.endswith(tuple("0123456789"))
               and ("sparse_conv" in name or "dense_conv" in name)]
    assert engines == acc.iterations() and all(engines)


@pytest.mark.parametrize("make, board", [(wide, "zcu104"), (odd, "kv260"), (tiny, "zcu104")])
def test_every_deepened_fifo_is_needed(make, board):
    """Doubling every FIFO whose producer waited also grows ones whose waiting costs nothing (on
    the wide model 6 of the 8 it grew); each FIFO the derivation leaves deeper than it started
    must be needed: put back at its starting depth, the pipeline misses the interval."""
    model = make()
    plans = perf.allocate(model, board, None)
    facts = facts_for(model, plans)
    interval = perf.pipeline_interval(model, plans)
    depths, report = simulate.derive_fifo_depths(facts, interval)
    assert report["interval_cycles"] <= interval * 1.005
    start = simulate.rule_depths(facts)
    for name in (n for n in depths if depths[n] > start[n]):
        back = simulate.run(facts, 3, depths=dict(depths, **{name: start[name]}))
        assert back["interval_cycles"] > interval * 1.005, name


def test_derived_depths_are_never_below_the_rule_depths_the_allocator_priced():
    """A FIFO the pipeline fills less than its rule depth keeps that depth: the allocator priced
    it there (a pixel FIFO cut from 65 to 61 words would move from BRAM to LUTRAM)."""
    model = tiny()
    plans = perf.allocate(model, "zcu104", 200)
    facts = facts_for(model, plans)
    interval = perf.pipeline_interval(model, plans)
    rule = simulate.rule_depths(facts)
    unbounded = simulate.run(facts, 2, pace=interval, depths={n: simulate.UNBOUNDED for n in rule})
    under = [n for n in rule if unbounded["fifos"][n]["max"] + simulate.FIFO_MARGIN < rule[n]]
    assert len(under) >= 3  # e.g. a chunk FIFO of 64 whose largest occupancy is 12
    depths, _ = simulate.derive_fifo_depths(facts, interval)
    assert all(depths[n] >= rule[n] for n in rule), {n: (depths[n], rule[n]) for n in rule if depths[n] < rule[n]}


def test_codegen_writes_the_derived_depths():
    model = tiny()
    plans = perf.allocate(model, "zcu104", 200)
    facts = codegen.network_facts(model, plans)
    assert facts.fifo_source == "simulated"
    depths, _ = simulate.derive_fifo_depths(facts_for(model, plans), perf.pipeline_interval(model, plans))
    assert facts.depths() == depths
    text = codegen.render(facts)["network.h"]
    for name, depth in depths.items():
        assert f"#pragma HLS STREAM variable = {name} depth = {depth}  // derived by the clock-level simulation" in text
    # a FIFO depth is a compile-time fact: other depths, another bitstream
    assert facts.signature() != facts_for(model, plans).signature() or facts.depths() == facts_for(model, plans).depths()


def test_a_pipeline_that_does_not_finish_is_a_one_line_error_not_a_hang():
    facts = facts_for(tiny(), None)
    assert simulate.clock_bound(facts, 2) > simulate.run(facts, 2)["frame_done"][-1]
    with pytest.raises(SenteiError, match=r"did not finish 2 frame\(s\) in 50 clocks: deadlock \(still running: "):
        simulate.run(facts, 2, max_clocks=50)


def test_a_frame_count_below_one_is_refused():
    with pytest.raises(SenteiError, match="simulate at least one frame"):
        simulate.run(facts_for(tiny(), None), 0)


def _bundled_model_files() -> list[str]:
    from sentei.host.modelfile import bundled

    return sorted(n for n, e in bundled.bundled_models().items() if e["kind"] == "model-file")


@pytest.mark.slow
@pytest.mark.parametrize("name", _bundled_model_files())
@pytest.mark.parametrize("board", perf.known_boards())
def test_bundled_models_agree_on_every_board_they_fit(name, board):
    from sentei.host.modelfile import bundled

    model = bundled.load_model(name)
    perf.allocate(model, board)  # every bundled model fits every board (PYNQ-Z2: dilated rows in DDR)
    report = perf_report(model, board, perf.load_board(board).default_clock_mhz, simulate=True, frames=2)
    assert abs(report["simulated"]["error_vs_model"]) < 0.05
    assert report["resources"]["within_ceilings"]


def test_cli_simulate(tmp_path, capsys):
    path = save(tiny(), tmp_path / "m.sentei")
    out = tmp_path / "perf.json"
    assert cli.main(["perf", "--model", str(path), "--board", "kv260", "--simulate", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "simulated clock by clock (3 frames in one start, FIFO depths derived)" in text
    report = json.loads(out.read_text())
    assert report["simulated"]["interval_cycles"] > 0 and report["simulated"]["fifo_depths"]["words"] >= 2
    with pytest.raises(SystemExit) as done:
        cli.main(["perf", "--model", str(path), "--simulate", "--frames", "1"])
    assert done.value.code == 2 and "--frames: 1 must be an integer of at least 2" in capsys.readouterr().err
